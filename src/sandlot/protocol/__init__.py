"""Message definitions shared by the control plane and the agent.

- contract.py and wire.py: the host <-> sandbox protocol (paths, agent.json, operations; frames).
  Stdlib only: they are copied into every sandbox, where this package's __init__ is an empty file.
- process.proto and filesystem.proto: E2B's envd protocol (package, field names and numbers as
  E2B's), with the google.protobuf messages (`*_pb2`) and Connect stubs (`*_connect`) generated from
  them by scripts/gen-protos.sh. Edit the .proto files, never the generated modules.

Nothing is imported here: each side imports the modules it uses.
"""
