"""The envd front door: E2B's in-sandbox API (Connect RPC + HTTP) served by the control plane.

Every request is routed to a sandbox (routing.py), checked against its access token (auth.py) and
translated one to one into agent operations; nothing here touches sandbox files itself. The control
plane mounts `envd_routes(lookup)` next to its REST API: the paths are disjoint (docs/e2b.md §1.2).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route

from ...protocol.filesystem_connect import FilesystemASGIApplication
from ...protocol.process_connect import ProcessASGIApplication
from . import auth, code
from .files_http import Uploads, download, envs, health
from .filesystem import FilesystemService
from .process import ProcessService
from .routing import SandboxGate, SandboxHandle, SandboxLookup
from .rpc import CODECS
from .watchers import Watchers

__all__ = ["DEFAULT_MAX_UPLOAD_BYTES", "SandboxHandle", "SandboxLookup", "envd_app", "envd_routes"]

DEFAULT_MAX_UPLOAD_BYTES = 1024**3


def envd_routes(lookup: SandboxLookup, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> list[BaseRoute]:
    """Routes for /health, /envs, /files, /process.Process/*, /filesystem.Filesystem/* and the code
    interpreter's /execute and /contexts."""
    watchers = Watchers()

    def gate(policy: auth.Policy) -> list[Middleware]:
        return [Middleware(SandboxGate, lookup=lookup, policy=policy)]

    files_gate = gate(auth.require_token_or_signature)
    rpc_gate = gate(auth.require_token)
    code_gate = gate(auth.require_token_or_traffic_token)
    return [
        Route("/health", code.health_by_port(health), methods=["GET"], middleware=gate(auth.allow_all)),
        Route("/envs", envs, methods=["GET"], middleware=rpc_gate),
        Route("/files", download, methods=["GET"], middleware=files_gate),
        Route("/files", Uploads(watchers, max_upload_bytes).post, methods=["POST"], middleware=files_gate),
        *(Mount(app.path, app, middleware=rpc_gate)
          for app in (ProcessASGIApplication(ProcessService(), codecs=CODECS),
                      FilesystemASGIApplication(FilesystemService(watchers), codecs=CODECS))),
        Route("/execute", code.execute, methods=["POST"], middleware=code_gate),
        Route("/contexts", code.create_context, methods=["POST"], middleware=code_gate),
        Route("/contexts", code.list_contexts, methods=["GET"], middleware=code_gate),
        Route("/contexts/{context_id}/restart", code.restart_context, methods=["POST"], middleware=code_gate),
        Route("/contexts/{context_id}", code.remove_context, methods=["DELETE"], middleware=code_gate),
    ]


def envd_app(lookup: SandboxLookup, *, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> Starlette:
    """envd on its own: for tests, or to serve sandbox traffic on a port of its own."""
    return Starlette(routes=envd_routes(lookup, max_upload_bytes=max_upload_bytes))
