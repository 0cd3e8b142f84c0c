"""The OpenAPI 3.1 document of sandlot's REST API, served at /openapi.json.

Generated from the app's routes at request time: each route that is not sandbox traffic becomes
an operation, with its path parameters and its security from the access rule it declared
(auth.py); request bodies come from the pydantic models api.py validates them with. What the code
cannot say (summaries, answers) is in OPERATIONS, keyed by (method, path); a test checks that it
and the routes name the same operations. Sandbox traffic (envd's /files, /envs, Connect
services, the code interpreter) is E2B's in-sandbox API, defined by protocol/*.proto and E2B's
envd spec, and is left out. Over 400 lines: OPERATIONS is a table, one entry per route.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from .api import CreateIn, PauseIn, TimeoutIn
from .network_api import NetworkUpdateIn
from .packages_api import InstallIn, UninstallIn
from .auth import Access, access_of
from .codebases import CodebaseIn
from .sessions import ExecIn, SessionIn
from .workspaces import PermissionsIn

_ERROR = {"$ref": "#/components/responses/Error"}
_SANDBOX = {"$ref": "#/components/schemas/Sandbox"}
_DETAIL = {"$ref": "#/components/schemas/SandboxDetail"}
_PACKAGES = {"type": "array", "items": {"$ref": "#/components/schemas/Package"}}
_SESSION = {"$ref": "#/components/schemas/Session"}
_CODEBASE = {"$ref": "#/components/schemas/Codebase"}
_PERMISSIONS = {"$ref": "#/components/schemas/Permissions"}
_MODELS = {"NewSandbox": CreateIn, "Timeout": TimeoutIn, "Pause": PauseIn, "InstallPackages": InstallIn,
           "UninstallPackages": UninstallIn, "NewSession": SessionIn, "SessionExec": ExecIn,
           "SetPermissions": PermissionsIn, "NewCodebase": CodebaseIn, "NetworkUpdate": NetworkUpdateIn}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[str, Any], body: str | None = None, body_schema: dict | None = None,
        **extra: Any) -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": {**ok, "default": _ERROR}, **extra}
    if body or body_schema:
        op["requestBody"] = {"required": False, "content": {"application/json": {
            "schema": body_schema or {"$ref": f"#/components/schemas/{body}"}}}}
    return op


_NO_CONTENT = {"204": {"description": "Done"}}
_PREVIEW = {"type": "object", "properties": {"port": {"type": "integer"}, "url": {"type": "string"},
                                             "expiresAt": {"type": "integer", "description": "unix seconds"}}}
_QUERY_LIST = [
    {"name": "state", "in": "query", "schema": {"type": "string"}, "description": "running, paused or both (comma-separated)"},
    {"name": "metadata", "in": "query", "schema": {"type": "string"}, "description": "k=v pairs joined by &, URL-encoded"},
    {"name": "template", "in": "query", "schema": {"type": "string"}},
    {"name": "startedAfter", "in": "query", "schema": {"type": "string", "format": "date-time"}},
    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 100}},
    {"name": "order", "in": "query", "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"}},
    {"name": "nextToken", "in": "query", "schema": {"type": "string"}, "description": "X-Next-Token of the previous page"},
]
_LISTED = _json({"type": "array", "items": _DETAIL})
_LISTED["headers"] = {"X-Next-Token": {"schema": {"type": "string"}, "description": "present when more pages follow"}}
_CREATE = _op("Create a sandbox (from SANDLOT_DEFAULT_TEMPLATE when templateID is left out)",
              {"201": _json(_SANDBOX, "Created")}, body="NewSandbox")
_LIST = _op("List sandboxes", {"200": _LISTED}, parameters=_QUERY_LIST)
_CONNECT = _op("Make sure a sandbox runs (resuming it if paused) and extend its timeout",
               {"200": _json(_SANDBOX, "Running"), "201": _json(_SANDBOX, "Resumed")}, body="Timeout")

_INT_PARAM = {"type": "integer"}
_STR_PARAM = {"type": "string"}
_PATH_PARAM = [{"name": "path", "in": "query", "schema": {"type": "string", "default": "/"},
                "description": "a path inside the codebase"}]
_BYTES = {"type": "string", "contentEncoding": "binary"}


def _binary(media: str, description: str = "OK") -> dict:
    return {"description": description, "content": {media: {"schema": _BYTES}}}


def _upload(summary: str, media: str) -> dict:
    op = _op(summary, {"200": _json(_CODEBASE)}, parameters=_PATH_PARAM)
    op["requestBody"] = {"required": True, "content": {media: {"schema": _BYTES}}}
    return op


_SESSIONS = "/sandboxes/{sandbox_id}/sessions"
_ONE_CODEBASE = "/codebases/{codebase_id}"


def _object(**properties: Any) -> dict:
    return {"type": "object", "properties": properties}


def _body(schema: dict) -> dict:
    return {"requestBody": {"required": False, "content": {"application/json": {"schema": schema}}}}


# snapshots and fork (snapshots.py, transfer.py; docs/e2b.md §2.12)
_SNAPSHOT = _object(snapshotID=_STR_PARAM, names={"type": "array", "items": _STR_PARAM})
_SNAPSHOT_OPERATIONS: dict[tuple[str, str], dict] = {
    ("post", "/sandboxes/{sandbox_id}/snapshots"): _op(
        "Snapshot a sandbox's files, env vars and metadata (processes are not kept: mode filesystem)",
        {"201": _json({**_SNAPSHOT, "properties": {**_SNAPSHOT["properties"], "mode": {"const": "filesystem"}}},
                      "Created")},
        **_body(_object(name=_STR_PARAM, memory={"type": "boolean"},
                        warm={"type": "boolean", "description": "keep a pool of sandboxes from it (sandlot's)"}))),
    ("get", "/snapshots"): _op("The team's snapshots, newest first", {"200": {
        **_json({"type": "array", "items": _SNAPSHOT}),
        "headers": {"X-Next-Token": {"schema": _STR_PARAM, "description": "present when more pages follow"}}}},
        parameters=[{"name": "sandboxID", "in": "query", "schema": _STR_PARAM},
                    {"name": "name", "in": "query", "schema": _STR_PARAM},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                    {"name": "nextToken", "in": "query", "schema": _STR_PARAM}]),
    ("post", "/sandboxes/{sandbox_id}/fork"): _op(
        "New sandboxes on the sandbox's files at this instant (not its processes)",
        {"201": _json({"type": "array", "items": _object(sandbox=_SANDBOX, mode={"const": "filesystem"},
                                                         error={"$ref": "#/components/schemas/Error"})})},
        **_body(_object(count={"type": "integer", "minimum": 1, "maximum": 20}, timeout=_INT_PARAM))),
    ("post", "/snapshots/{snapshot_id}/export"): _op(
        "Export a snapshot to the server's storage (SANDLOT_STORAGE)", {"200": _json(_object(
            snapshotID=_STR_PARAM, exportID={**_STR_PARAM, "description": "what an import takes"},
            location=_STR_PARAM, layers=_INT_PARAM, uploaded=_INT_PARAM))}),
    ("post", "/snapshots/import"): _op(
        "Import an exported snapshot from the server's storage", {"201": _json(_SNAPSHOT, "Imported")},
        **_body({**_object(snapshotID=_STR_PARAM, name=_STR_PARAM), "required": ["snapshotID"]})),
}
# volumes (volumes.py): the control plane (API key) and the content API (the volume's token)
_VOLUME = _object(volumeID=_STR_PARAM, name=_STR_PARAM, token=_STR_PARAM)
_VOLUME_PATH = [{"name": "path", "in": "query", "required": True, "schema": _STR_PARAM}]
_VOLUME_ENTRY = _json({"type": "object"})
_VOLUME_OPERATIONS: dict[tuple[str, str], dict] = {
    ("post", "/volumes"): _op("Create a volume (an ext4 image; its size is its quota)",
                              {"201": _json(_VOLUME, "Created")},
                              **_body(_object(name=_STR_PARAM, sizeMB={"type": "integer", "minimum": 16}))),
    ("get", "/volumes"): _op("The team's volumes", {"200": _json({"type": "array", "items": _VOLUME})}),
    ("get", "/volumes/{volume_id}"): _op("A volume (by id or name), with its token", {"200": _json(_VOLUME)}),
    ("delete", "/volumes/{volume_id}"): _op("Delete a volume no sandbox mounts", {
        **_NO_CONTENT, "409": {"description": "Mounted in a sandbox"}}),
    ("get", "/volumecontent/{volume_id}/path"): _op("Stat a path", {"200": _VOLUME_ENTRY}, parameters=_VOLUME_PATH),
    ("patch", "/volumecontent/{volume_id}/path"): _op(
        "Change a path's owner or mode", {"200": _VOLUME_ENTRY}, parameters=_VOLUME_PATH,
        **_body(_object(uid=_INT_PARAM, gid=_INT_PARAM, mode=_INT_PARAM))),
    ("delete", "/volumecontent/{volume_id}/path"): _op("Remove a path", _NO_CONTENT, parameters=_VOLUME_PATH),
    ("get", "/volumecontent/{volume_id}/dir"): _op("List a directory", {"200": _json({"type": "array"})},
                                                   parameters=[*_VOLUME_PATH, {"name": "depth", "in": "query",
                                                                               "schema": _INT_PARAM}]),
    ("post", "/volumecontent/{volume_id}/dir"): _op("Make a directory", {"201": _VOLUME_ENTRY},
                                                    parameters=_VOLUME_PATH),
    ("get", "/volumecontent/{volume_id}/file"): _op("Read a file", {"200": {
        "description": "OK", "content": {"application/octet-stream": {"schema": {"type": "string"}}}}},
        parameters=_VOLUME_PATH),
    ("put", "/volumecontent/{volume_id}/file"): _op("Write a file (the body is its content)", {"201": _VOLUME_ENTRY},
                                                    parameters=_VOLUME_PATH),
}
# templates built from recipes (template_routes.py; docs/e2b.md §2.13)
_STRS = {"type": "array", "items": _STR_PARAM}
_BUILD_LOG = _object(timestamp=_STR_PARAM, level={"enum": ["debug", "info", "warn", "error"]}, message=_STR_PARAM,
                     step=_STR_PARAM)
_TEMPLATE_OPERATIONS: dict[tuple[str, str], dict] = {
    ("post", "/v3/templates"): _op(
        "Start a template build: the template (made if new) and a build id", {"202": _json(_object(
            templateID=_STR_PARAM, buildID=_STR_PARAM, names=_STRS, tags=_STRS, aliases=_STRS,
            public={"const": False}), "Accepted")},
        **_body({**_object(name={**_STR_PARAM, "description": "name or name:tag"}, tags=_STRS,
                           cpuCount=_INT_PARAM, memoryMB=_INT_PARAM), "required": ["name"]})),
    ("get", "/templates"): _op("The team's templates built from recipes", {"200": _json({"type": "array", "items": _object(
        templateID=_STR_PARAM, buildID=_STR_PARAM, names=_STRS, buildStatus=_STR_PARAM, tags=_STRS)})}),
    ("get", "/templates/{template_id}/files/{hash}"): _op(
        "Whether a step's files are uploaded, else where to PUT their tarball",
        {"201": _json(_object(present={"type": "boolean"}, url=_STR_PARAM))}),
    ("put", "/templates/{template_id}/files/{hash}/upload"): _op(
        "Upload a step's files (the URL the files route gave: signed, for an hour)", {"200": {"description": "Stored"}},
        parameters=[{"name": "expires", "in": "query", "required": True, "schema": _INT_PARAM},
                    {"name": "signature", "in": "query", "required": True, "schema": _STR_PARAM}]),
    ("post", "/v2/templates/{template_id}/builds/{build_id}"): _op(
        "Run a build: its base and steps (E2B's TemplateBuildStartV2)", {"202": {"description": "Started"}},
        **_body(_object(fromImage=_STR_PARAM, fromTemplate=_STR_PARAM, force={"type": "boolean"},
                        startCmd=_STR_PARAM, readyCmd=_STR_PARAM, steps={"type": "array", "items": _object(
                            type={"enum": ["RUN", "COPY", "ENV", "WORKDIR", "USER"]}, args=_STRS,
                            filesHash=_STR_PARAM, force={"type": "boolean"})}))),
    ("get", "/templates/{template_id}/builds/{build_id}/status"): _op(
        "A build's status and its log from logsOffset (100 entries at most)", {"200": _json(_object(
            templateID=_STR_PARAM, buildID=_STR_PARAM, status={"enum": ["waiting", "building", "ready", "error"]},
            logEntries={"type": "array", "items": _BUILD_LOG}, logs=_STRS,
            reason=_object(message=_STR_PARAM, step=_STR_PARAM, logEntries={"type": "array", "items": _BUILD_LOG})))},
        parameters=[{"name": "logsOffset", "in": "query", "schema": _INT_PARAM},
                    {"name": "limit", "in": "query", "schema": _INT_PARAM}]),
    ("get", "/templates/aliases/{alias}"): _op("The team's template of that name",
                                               {"200": _json(_object(templateID=_STR_PARAM, public={"const": False}))}),
    ("post", "/templates/tags"): _op("Tag the build a name:tag names", {"201": _json(_object(
        buildID=_STR_PARAM, tags=_STRS), "Tagged")}, **_body(_object(target=_STR_PARAM, tags=_STRS))),
    ("delete", "/templates/tags"): _op("Remove tags of a template", _NO_CONTENT,
                                       **_body(_object(name=_STR_PARAM, tags=_STRS))),
    ("get", "/templates/{template_id}/tags"): _op("A template's tags", {"200": _json({"type": "array", "items": _object(
        tag=_STR_PARAM, buildID=_STR_PARAM, createdAt=_STR_PARAM)})}),
    ("delete", "/templates/{template_id}"): _op(
        "Delete a template built from a recipe, or a snapshot (by id or name; E2B's delete_snapshot)", _NO_CONTENT),
}

OPERATIONS: dict[tuple[str, str], dict] = {
    ("get", "/health"): _op("Health of the API (E2B's route); sandbox traffic gets the sandbox's envd health",
                            {"200": {"description": "Serving", "content": {"text/plain": {"schema": {"type": "string"}}}},
                             "503": {"description": "Starting or stopping"}}),
    ("get", "/_sandlot/health"): _op("Liveness with sandbox counts", {"200": _json({
        "type": "object", "properties": {"status": {"const": "ok"}, "running": {"type": "integer"},
                                         "paused": {"type": "integer"}}})}),
    ("get", "/openapi.json"): _op("This document", {"200": _json({"type": "object"})}),
    ("get", "/ca.pem"): _op("The certificate of the CA that signed this server's TLS certificate (SANDLOT_TLS=local-ca)",
                            {"200": {"description": "PEM", "content": {"application/x-pem-file": {"schema": {
                                "type": "string"}}}}, "404": {"description": "TLS is off or uses a given certificate"}}),
    ("get", "/.well-known/openid-configuration"): _op(
        "OIDC discovery of the sandboxes' workload identity tokens (E2B's iam): issuer and JWKS address",
        {"200": _json({"type": "object"})}),
    ("get", "/.well-known/jwks.json"): _op("The public keys that verify the sandboxes' workload identity tokens",
                                           {"200": _json({"type": "object"})}),
    ("get", "/metrics"): _op("Prometheus metrics (text exposition format)", {"200": {
        "description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}}),
    ("post", "/sandboxes"): _CREATE,
    ("post", "/v2/sandboxes"): _CREATE,
    ("get", "/sandboxes"): _LIST,
    ("get", "/v2/sandboxes"): _LIST,
    ("get", "/sandboxes/{sandbox_id}"): _op("A sandbox's details", {"200": _json(_DETAIL)}),
    ("delete", "/sandboxes/{sandbox_id}"): _op("Kill a sandbox", _NO_CONTENT),
    ("post", "/sandboxes/{sandbox_id}/timeout"): _op("Set a sandbox's timeout from now", _NO_CONTENT, body="Timeout"),
    ("post", "/sandboxes/{sandbox_id}/connect"): _CONNECT,
    ("post", "/v2/sandboxes/{sandbox_id}/connect"): _CONNECT,
    ("post", "/sandboxes/{sandbox_id}/pause"): _op(
        "Pause a sandbox: its processes freeze in memory, or (memory: false) only its files are kept", {
            **_NO_CONTENT, "409": {"description": "Already paused"}}, body="Pause"),
    ("post", "/sandboxes/{sandbox_id}/resume"): _op("Resume a paused sandbox", {"201": _json(_SANDBOX, "Resumed")},
                                                    body="Timeout"),
    ("get", "/sandboxes/{sandbox_id}/metrics"): _op("A sandbox's resource samples (every 5 s, the last hour)", {
        "200": _json({"type": "array", "items": {"$ref": "#/components/schemas/SandboxMetric"}})}, parameters=[
        {"name": "start", "in": "query", "schema": {"type": "number"}, "description": "unix seconds"},
        {"name": "end", "in": "query", "schema": {"type": "number"}, "description": "unix seconds"}]),
    ("put", "/sandboxes/{sandbox_id}/network"): _op(
        "Replace a sandbox's egress configuration live (E2B's update_network; omitted fields are cleared)",
        _NO_CONTENT, body="NetworkUpdate"),
    ("post", "/sandboxes/{sandbox_id}/ports/{port}/expose"): _op(
        "A signed, expiring preview URL to a port of the sandbox, valid even where its traffic is private",
        {"201": _json(_PREVIEW, "Exposed")}, body_schema={"type": "object", "properties": {
            "ttl": {"type": "integer", "minimum": 1, "maximum": 604800, "default": 3600}}}),
    ("delete", "/sandboxes/{sandbox_id}/ports/{port}/expose"): _op("Revoke a port's preview URL", _NO_CONTENT),
    ("get", "/sandboxes/{sandbox_id}/ports"): _op("The ports with a live preview URL",
                                                  {"200": _json({"type": "array", "items": _PREVIEW})}),
    ("post", "/sandboxes/{sandbox_id}/ports/{port}/wait"): _op(
        "Answer once something in the sandbox accepts connections on the port (504 at the timeout)",
        _NO_CONTENT, body_schema={"type": "object", "properties": {
            "timeout": {"type": "number", "minimum": 0, "maximum": 3600, "default": 30}}}),
    ("get", "/sandboxes/{sandbox_id}/packages"): _op("Python packages installed in a sandbox", {"200": _json(_PACKAGES)}),
    ("post", "/sandboxes/{sandbox_id}/packages"): _op(
        "Install Python packages (wheels fetched on the host, installed offline inside)",
        {"200": _json({"type": "object", "properties": {"installed": _PACKAGES}})}, body="InstallPackages"),
    ("get", "/sandboxes/{sandbox_id}/logs"): _op(
        "A sandbox's log (lifecycle events, processes started), E2B's v1 shape", {"200": _json({
            "type": "object", "properties": {"logs": {"type": "array"}, "logEntries": {"type": "array"}}})},
        parameters=[{"name": "start", "in": "query", "schema": _INT_PARAM, "description": "unix milliseconds"},
                    {"name": "limit", "in": "query", "schema": _INT_PARAM}]),
    ("get", "/v2/sandboxes/{sandbox_id}/logs"): _op(
        "A sandbox's log, E2B's v2 shape", {"200": _json({"type": "object", "properties": {"logs": {"type": "array"}}})},
        parameters=[{"name": "cursor", "in": "query", "schema": _INT_PARAM, "description": "unix milliseconds"},
                    {"name": "limit", "in": "query", "schema": _INT_PARAM},
                    {"name": "direction", "in": "query", "schema": {"enum": ["forward", "backward"]}},
                    {"name": "level", "in": "query", "schema": {"enum": ["debug", "info", "warn", "error"]}},
                    {"name": "search", "in": "query", "schema": {"type": "string"}}]),
    ("post", "/sandboxes/{sandbox_id}/packages/uninstall"): _op(
        "Uninstall Python packages", {"200": _json({"type": "object", "properties": {"uninstalled": _PACKAGES}})},
        body="UninstallPackages"),
    **_SNAPSHOT_OPERATIONS,
    **_VOLUME_OPERATIONS,
    **_TEMPLATE_OPERATIONS,
    ("get", "/audit"): _op(
        "The audit trail, newest first: the caller's team's rows (every team's for an admin key)",
        {"200": _json({"type": "object", "required": ["entries", "next"], "properties": {
            "entries": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}},
            "next": {"type": ["string", "null"], "description": "the cursor of the next page"}}})},
        parameters=[{"name": name, "in": "query", "schema": _STR_PARAM, "description": text} for name, text in (
            ("team", "a team name or id (admin keys)"), ("key", "an API key id"), ("sandbox", "a sandbox id"),
            ("action", "exact, or a prefix ending in '.' or '*'"),
            ("outcome", "ok, denied, not_found, refused, failed, abandoned"),
            ("since", "unix seconds or RFC 3339"), ("until", "unix seconds or RFC 3339"),
            ("limit", "1-1000, default 100"), ("cursor", "`next` of the previous page"))]),
    # sessions (sessions.py): stateful shells in a running sandbox
    ("post", _SESSIONS): _op("Start a session: a shell that keeps its state between commands",
                             {"201": _json(_SESSION, "Started")}, body="NewSession"),
    ("get", _SESSIONS): _op("A sandbox's sessions", {"200": _json({"type": "array", "items": _SESSION})}),
    ("get", _SESSIONS + "/{session_id}"): _op("A session (cwd is its shell's current one)", {"200": _json(_SESSION)}),
    ("delete", _SESSIONS + "/{session_id}"): _op("End a session: its shell and what it started are killed",
                                                 _NO_CONTENT),
    ("post", _SESSIONS + "/{session_id}/exec"): _op(
        "Run a command in the session's shell (after its earlier ones); with stream: true, NDJSON lines",
        {"200": {"description": "The command's result, or its NDJSON stream", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SessionResult"}},
            "application/x-ndjson": {"schema": {"type": "string"}}}}}, body="SessionExec"),
    # a sandbox's workspace (workspaces.py)
    ("get", "/sandboxes/{sandbox_id}/permissions"): _op("The workspace's path permissions", {
        "200": _json(_PERMISSIONS)}),
    ("put", "/sandboxes/{sandbox_id}/permissions"): _op(
        "Replace the workspace's path permissions (they decide every open from now on)",
        {"200": _json(_PERMISSIONS)}, body="SetPermissions"),
    ("post", "/sandboxes/{sandbox_id}/workspace/commit"): _op(
        "Write the sandbox's workspace changes to its codebase (its next version)", {"200": _json(_CODEBASE)}),
    ("post", "/sandboxes/{sandbox_id}/workspace/discard"): _op(
        "Drop the sandbox's workspace changes", {"200": _json({"type": "object"})}),
    # codebases (codebases.py): the caller's team's
    ("post", "/codebases"): _op("Create an empty codebase", {"201": _json(_CODEBASE, "Created")}, body="NewCodebase"),
    ("get", "/codebases"): _op("The team's codebases, oldest first", {"200": _json({"type": "array",
                                                                                   "items": _CODEBASE})}),
    ("get", _ONE_CODEBASE): _op("A codebase", {"200": _json(_CODEBASE)}),
    ("delete", _ONE_CODEBASE): _op("Delete a codebase (409 while running sandboxes mount it)", _NO_CONTENT),
    ("put", _ONE_CODEBASE + "/files"): _upload("Write one file (parents made): the body is its bytes",
                                               "application/octet-stream"),
    ("get", _ONE_CODEBASE + "/files"): _op("A file's bytes", {"200": _binary("application/octet-stream")},
                                           parameters=_PATH_PARAM),
    ("post", _ONE_CODEBASE + "/tar"): _upload("Unpack a tar stream (gzip allowed) below path", "application/x-tar"),
    ("get", _ONE_CODEBASE + "/tar"): _op("A directory of the codebase as a tar stream",
                                         {"200": _binary("application/x-tar")}, parameters=_PATH_PARAM),
    ("get", _ONE_CODEBASE + "/list"): _op("Every entry below path, sorted", {"200": _json({
        "type": "array", "items": {"type": "object", "required": ["path", "type", "size", "mode", "mtime"],
                                   "properties": {"path": _STR_PARAM, "type": {"enum": ["file", "dir", "symlink"]},
                                                  "size": _INT_PARAM, "mode": _INT_PARAM,
                                                  "mtime": {"type": "number"}}}})}, parameters=_PATH_PARAM),
}

_STRING = {"type": "string"}
_INT = {"type": "integer"}
_SANDBOX_FIELDS = {"templateID": _STRING, "sandboxID": _STRING, "clientID": _STRING, "alias": _STRING,
                   "envdVersion": _STRING, "envdAccessToken": {"type": ["string", "null"]},
                   "domain": {"type": ["string", "null"]}}
SCHEMAS: dict[str, dict] = {
    "Error": {"type": "object", "required": ["code", "message"],
              "properties": {"code": _INT, "message": _STRING}},
    "Sandbox": {"type": "object", "required": ["templateID", "sandboxID", "clientID", "envdVersion"],
                "properties": {**_SANDBOX_FIELDS, "trafficAccessToken": {"type": ["string", "null"]}}},
    "SandboxDetail": {
        "type": "object",
        "required": ["templateID", "sandboxID", "clientID", "startedAt", "endAt", "envdVersion", "cpuCount",
                     "memoryMB", "diskSizeMB", "state"],
        "properties": {**_SANDBOX_FIELDS, "startedAt": {"type": "string", "format": "date-time"},
                       "endAt": {"type": "string", "format": "date-time"}, "cpuCount": _INT, "memoryMB": _INT,
                       "diskSizeMB": _INT, "state": {"enum": ["running", "paused"]},
                       "metadata": {"type": "object", "additionalProperties": _STRING},
                       "allowInternetAccess": {"type": ["boolean", "null"]},
                       "lifecycle": {"type": "object", "properties": {
                           "autoResume": {"type": "boolean"}, "onTimeout": {"enum": ["kill", "pause"]}}}}},
    "SandboxMetric": {
        "type": "object",
        "required": ["timestamp", "timestampUnix", "cpuCount", "cpuUsedPct", "memUsed", "memTotal", "memCache",
                     "diskUsed", "diskTotal"],
        "properties": {"timestamp": {"type": "string", "format": "date-time"}, "timestampUnix": _INT,
                       "cpuCount": _INT, "cpuUsedPct": {"type": "number"}, "memUsed": _INT, "memTotal": _INT,
                       "memCache": _INT, "diskUsed": _INT, "diskTotal": _INT}},
    "Package": {"type": "object", "required": ["name", "version"], "properties": {"name": _STRING, "version": _STRING}},
    "Session": {
        "type": "object", "required": ["sessionID", "user", "pid", "cwd", "envs", "createdAt", "busy"],
        "properties": {"sessionID": _STRING, "user": _STRING, "pid": _INT, "cwd": {"type": ["string", "null"]},
                       "envs": {"type": "object", "additionalProperties": _STRING},
                       "createdAt": {"type": "string", "format": "date-time"}, "busy": {"type": "boolean"}}},
    "SessionResult": {
        "type": "object",
        "required": ["stdout", "stderr", "exitCode", "timedOut", "interrupted", "shellExited", "truncated"],
        "properties": {"stdout": _STRING, "stderr": _STRING, "exitCode": _INT, "timedOut": {"type": "boolean"},
                       "interrupted": {"type": "boolean"}, "shellExited": {"type": "boolean"},
                       "truncated": {"type": "boolean"}}},
    "Codebase": {
        "type": "object", "required": ["codebaseID", "name", "team", "createdAt", "version", "files", "size"],
        "properties": {"codebaseID": _STRING, "name": _STRING, "team": _STRING,
                       "createdAt": {"type": "string", "format": "date-time"}, "version": _INT, "files": _INT,
                       "size": _INT}},
    "Permissions": {
        "type": "object", "required": ["path", "codebase", "permissions"],
        "properties": {"path": _STRING, "codebase": {"type": ["string", "null"]}, "permissions": {
            "type": "array", "items": {"type": "object", "required": ["pattern", "permission"], "properties": {
                "pattern": _STRING, "permission": {"enum": ["none", "view", "read", "write"]},
                "type": {"enum": ["glob", "directory", "file"]}, "priority": _INT}}}}},
    "AuditEntry": {
        "type": "object", "required": ["id", "time", "team", "key", "sandbox", "action", "outcome", "status", "detail"],
        "properties": {"id": _INT, "time": {"type": "string", "format": "date-time"},
                       "team": {"type": ["string", "null"]}, "key": {"type": ["string", "null"]},
                       "sandbox": {"type": ["string", "null"]}, "action": _STRING, "outcome": _STRING,
                       "status": {"type": ["integer", "null"]}, "detail": {"type": "object"},
                       "foreignTeam": {"type": ["string", "null"], "description": "admin keys only"}}},
}


def document(routes: list[BaseRoute]) -> dict:
    """The OpenAPI document of `routes` (an app's top-level routes)."""
    paths: dict[str, dict] = {}
    schemas = dict(SCHEMAS)
    for name, model in _MODELS.items():
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[name] = schema
    for route in routes:
        access = access_of(route)
        if access is Access.SANDBOX or not isinstance(route, Route) or not route.include_in_schema:
            continue
        path = route.path  # no converters: parameters are plain strings
        for method in sorted(route.methods or ["GET"]):
            if method == "HEAD":
                continue
            op = dict(OPERATIONS.get((method.lower(), path)) or {"summary": _summary(route), "responses": {
                "default": _ERROR}})
            op["operationId"] = f"{method.lower()}{path.replace('/', '_').replace('{', '').replace('}', '')}"
            op["security"] = [{"ApiKey": []}, {"Bearer": []}] if access in (Access.API_KEY, Access.ADMIN) else \
                [{"VolumeToken": []}] if access is Access.VOLUME else []  # UPLOAD: its URL's signature
            params = [{"name": p, "in": "path", "required": True, "schema": _STRING} for p in route.param_convertors]
            if params or "parameters" in op:
                op["parameters"] = [*params, *op.get("parameters", [])]
            paths.setdefault(path, {})[method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "sandlot", "version": version("sandlot"),
                 "description": "sandlot's REST API: E2B's control plane plus sandlot's own routes. Errors are "
                                "JSON {code, message}. Sandbox traffic (envd, code interpreter) is E2B's."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "responses": {"Error": _json({"$ref": "#/components/schemas/Error"}, "Error")},
            "securitySchemes": {"ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                                "Bearer": {"type": "http", "scheme": "bearer"},
                                "VolumeToken": {"type": "http", "scheme": "bearer",
                                                "description": "a volume's own token (GET /volumes/{id})"}},
        },
    }


async def endpoint(request: Request) -> JSONResponse:
    """The OpenAPI document of this server's REST API."""
    return JSONResponse(document(request.app.routes))


def _summary(route: Route) -> str:
    doc = (route.endpoint.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else route.path
