"""E2B's envd protocol: `process.proto` and `filesystem.proto` (package, field names and numbers as
E2B's), with the google.protobuf messages (`*_pb2`) and Connect stubs (`*_connect`) generated from
them by scripts/gen-protos.sh. Edit the .proto files, never the generated modules."""
