"""Snapshots and fork, with E2B's routes and payloads (docs/e2b.md §2.12).

    POST   /sandboxes/{id}/snapshots  {"name"?, "memory"?} -> 201 {"snapshotID", "names", "mode"}
    GET    /snapshots?sandboxID=&name=&limit=&nextToken=  -> 200 [{"snapshotID", "names"}], X-Next-Token
    DELETE /templates/{snapshot id or name}                -> 204 | 404 (the SDK's delete_snapshot;
                                                              routed by template_routes.py)
    POST   /sandboxes/{id}/fork       {"timeout"?, "count"?} -> 201 [{"sandbox"} | {"error"}]
    create with templateID = a snapshot's id or name (optionally ":default")

A snapshot is the sandbox's stack (its built template and layers) plus its writable layer,
committed as a layer while the sandbox is frozen, and its metadata and env vars; a sandbox made
from it gets them under its own. The namespace tier keeps files, not processes: a snapshot asked
with `memory: true` (E2B's default) is taken as a filesystem snapshot, and the response says
`"mode": "filesystem"` (a field E2B's SDK ignores); a fork's children boot fresh on the parent's
files. A snapshot can be kept warm (`"warm": true`, sandlot's extension): a pool as for templates.

Teams (auth.py, teams.py): a snapshot belongs to the team of the sandbox it was taken from (or of
the key that imported it). Its name is unique within that team; taking one with a name in use
replaces its content, as E2B assigns a new build to the existing template. Another team never sees
it: lists are the caller's team's, a name resolves within the caller's team, and an id of another
team's snapshot is answered as an unknown one (404 on its routes through `team_of`, which app.py
registers for `{template_id}` and `{snapshot_id}`; a create naming it gets the unknown-template
error).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import string
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from ..shared_db import SharedDb
from ..layers import LayerStore
from ..runtimes.policy import Limits, SecurityPolicy
from ..templates import TemplateStore
from ..templates.spec import Template
from .auth import caller
from .bodies import page_limit, read_json_object
from .config import Config
from .lifecycle import Lifecycle
from .live import CreateRequest, LiveSandbox, Sandboxes, check_timeout
from .pools import Pools
from .request_info import note
from .sandbox_networks import egress_of
from .sandbox_views import sandbox_json

SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,           -- teams.py
    name TEXT,                    -- unique within its team
    sandbox_id TEXT NOT NULL,     -- the sandbox it was taken from
    stack TEXT NOT NULL,          -- {"template", "layers", "envs"}
    metadata TEXT NOT NULL,
    envs TEXT NOT NULL,
    warm INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    UNIQUE (team, name)
);
"""
FORK_TIMEOUT = 15  # E2B's default lifetime of a fork's children (SandboxForkRequest)
MAX_FORKS = 20  # as the SDK checks
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_TAGS = ("default", "latest")
_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class Snapshot:
    id: str
    team: str
    name: str | None
    sandbox_id: str
    stack: dict
    metadata: dict
    envs: dict
    warm: bool
    created_at: float

    @property
    def holder(self) -> str:
        return f"snapshot:{self.id}"

    def json(self) -> dict:
        names = [f"{self.name}:default"] if self.name else []
        return {"snapshotID": names[0] if names else self.id, "names": names}


def _split(ref: str) -> str:
    """A snapshot reference without its namespace and tag ("team/name:default" -> "name")."""
    ref = ref.rsplit("/", 1)[-1]
    name, _, tag = ref.partition(":")
    if tag and tag not in _TAGS:
        raise E.NotFound(f"snapshot \"{ref}\" not found")
    return name


class Snapshots:
    def __init__(self, sandboxes: Sandboxes, create_sandbox: Callable[[CreateRequest], Awaitable[LiveSandbox]],
                 config: Config, templates: TemplateStore, pools: Pools, lifecycle: Lifecycle, layers: LayerStore):
        """`create_sandbox`: the service's create (a fork's children)."""
        self.sandboxes, self.create_sandbox = sandboxes, create_sandbox
        self.config, self.templates, self.pools = config, templates, pools
        self.lifecycle = lifecycle
        self.layers = layers
        # its own connection (WAL: the store's is used on the event loop; templates are resolved
        # in threads), one thread at a time
        self._db = SharedDb(config.db_path, SCHEMA)
        self._sql = self._db.sql

    def close(self) -> None:
        self._db.close()

    # ---- the store ---------------------------------------------------------------------------

    def _rows(self, where: str = "", args: tuple = ()) -> list[Snapshot]:
        rows = self._sql(f"SELECT id, team, name, sandbox_id, stack, metadata, envs, warm, created_at "
                         f"FROM snapshots {where}", args)
        return [Snapshot(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), json.loads(r[6]), bool(r[7]),
                         r[8]) for r in rows]

    def find(self, ref: str, team: str) -> Snapshot | None:
        """The snapshot of `team` named or identified by `ref`, or None."""
        try:
            key = _split(ref)
        except E.NotFound:
            return None
        found = self._rows("WHERE team=? AND (id=? OR name=?)", (team, key, key))
        return found[0] if found else None

    def get(self, ref: str, team: str) -> Snapshot:
        snap = self.find(ref, team)
        if snap is None:
            raise E.NotFound(f"snapshot \"{ref}\" not found")
        return snap

    def by_id(self, snapshot_id: str) -> Snapshot | None:
        """Any team's snapshot by its id (the service's pools and creates, which api.py resolved)."""
        found = self._rows("WHERE id=?", (snapshot_id,))
        return found[0] if found else None

    def team_of(self, ref: str) -> str | None:
        """The team owning the snapshot whose id `ref` is (the routes' team check, auth.py); None
        for anything else: names are resolved within the caller's team by the handlers."""
        try:
            snap = self.by_id(_split(ref))
        except E.NotFound:
            return None
        return snap.team if snap else None

    def list(self, team: str, sandbox_id: str | None = None, name: str | None = None) -> list[Snapshot]:
        snaps = self._rows("WHERE team=? ORDER BY created_at DESC, id", (team,))
        if sandbox_id:
            snaps = [s for s in snaps if s.sandbox_id == sandbox_id]
        if name:
            key = _split(name) if ":" not in name or name.rsplit(":", 1)[1] in _TAGS else None
            snaps = [s for s in snaps if key is not None and key in (s.name, s.id)]
        return snaps

    # ---- taking and deleting -----------------------------------------------------------------

    def check_name(self, name: str | None) -> None:
        if name is None:
            return
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise E.InvalidArgument("a snapshot name is 1-128 letters, digits, '_', '.' or '-', "
                                    "starting with a letter or digit")
        if name in self.templates.list():
            raise E.InvalidArgument(f"\"{name}\" is a template's name: choose another for the snapshot")

    def _replaced(self, name: str | None, team: str) -> Snapshot | None:
        """The snapshot of `team` a new one of that name replaces, if any."""
        return self.find(name, team) if name is not None else None

    @staticmethod
    def _new_id() -> str:
        return "snap" + "".join(secrets.choice(_ALPHABET) for _ in range(16))

    def _save(self, snap: Snapshot) -> None:
        self._sql("INSERT OR REPLACE INTO snapshots VALUES (?,?,?,?,?,?,?,?,?)",
                  (snap.id, snap.team, snap.name, snap.sandbox_id, json.dumps(snap.stack), json.dumps(snap.metadata),
                   json.dumps(snap.envs), int(snap.warm), snap.created_at))

    def add(self, stack: dict, metadata: dict, name: str | None, source: str, team: str) -> Snapshot:
        """A snapshot of `team` of an existing stack (an import; in a thread): its layers held by it."""
        self.check_name(name)
        existing = self._replaced(name, team)
        snap = Snapshot(existing.id if existing else self._new_id(), team, name, source, stack, metadata,
                        stack.get("envs", {}), False, time.time())
        self.layers.hold(snap.holder, stack["layers"], replace=True)
        self._save(snap)
        return snap

    async def create(self, sandbox_id: str, name: str | None = None, warm: bool = False) -> Snapshot:
        """A snapshot of the sandbox, of the sandbox's team."""
        self.check_name(name)
        team = self.sandboxes.record(sandbox_id).team
        existing = self._replaced(name, team)
        snap_id = existing.id if existing else self._new_id()
        holder = f"snapshot:{snap_id}"
        async with self.lifecycle.lock(sandbox_id):
            live = self.sandboxes.known(sandbox_id)
            rec = live.record
            stack = {"template": rec.template, **rec.stack}
            paused = sandbox_id in self.sandboxes.paused
            if rec.pause_mode == "filesystem":  # its files are its layers already
                stack = await asyncio.to_thread(self.lifecycle.stacked, stack, None, holder)
            else:
                stack = await asyncio.to_thread(self._commit, sandbox_id, stack, holder, paused)
        # its env vars become the stack's: every sandbox from it (pooled ones too) starts with them
        stack["envs"] = {**stack.get("envs", {}), **rec.envs}
        snap = Snapshot(snap_id, team, name, sandbox_id, stack, dict(rec.metadata), stack["envs"], warm, time.time())
        self._save(snap)
        if existing:  # a new build under the same name: the old one's pooled sandboxes are stale
            await self.pools.drop(snap.id)
        await asyncio.to_thread(self.layers.gc)
        if warm:
            self.pools.refill(snap.id)
        return snap

    def _commit(self, sandbox_id: str, stack: dict, holder: str, frozen: bool) -> dict:
        top = self.lifecycle.commit_writable(sandbox_id, holder, frozen=frozen)
        return self.lifecycle.stacked(stack, top, holder)

    async def delete(self, ref: str, team: str) -> bool:
        snap = self.find(ref, team)
        if snap is None:
            return False
        self._sql("DELETE FROM snapshots WHERE id=?", (snap.id,))
        await self.pools.drop(snap.id)
        self.layers.release(snap.holder)
        await asyncio.to_thread(self.layers.gc)
        return True

    def warm_names(self) -> list[str]:
        return [s.id for s in self._rows("WHERE warm=1")]

    # ---- fork --------------------------------------------------------------------------------

    async def fork(self, sandbox_id: str, count: int, timeout: int) -> list[dict]:
        """`count` children on the parent's files at this instant: one commit, then each child
        succeeds or fails on its own (an entry per child: {"sandbox"} or {"error"})."""
        holder = f"fork:{secrets.token_hex(6)}"
        async with self.lifecycle.lock(sandbox_id):
            live = self.sandboxes.known(sandbox_id)
            rec = live.record
            if rec.workspace:
                raise E.Unsupported(f"sandbox \"{sandbox_id}\" has a workspace, which a fork would not copy")
            stack = {"template": rec.template, **rec.stack}
            if rec.pause_mode == "filesystem":
                stack = await asyncio.to_thread(self.lifecycle.stacked, stack, None, holder)
            else:
                stack = await asyncio.to_thread(self._commit, sandbox_id, stack, holder,
                                                sandbox_id in self.sandboxes.paused)
        try:
            template = await self.lifecycle.template_for(stack, rec.template)
            results = await asyncio.gather(*(self._child(rec, template, timeout) for _ in range(count)),
                                           return_exceptions=True)
        finally:  # the children hold their layers themselves
            self.layers.release(holder)
            await asyncio.to_thread(self.layers.gc)
        out = []
        for r in results:
            if isinstance(r, E.SandlotError):
                out.append({"error": {"code": r.status, "message": r.message}})
            elif isinstance(r, BaseException):
                out.append({"error": {"code": 500, "message": f"the fork failed: {type(r).__name__}"}})
            else:  # files, not processes (this tier cannot checkpoint): said where E2B's SDK ignores it
                out.append({"sandbox": sandbox_json(r, self.config.domain), "mode": "filesystem"})
        return out

    async def _child(self, parent, template: Template, timeout: int):
        # its network as the parent's (egress policy, ingress settings), not the parent's preview URLs
        ingress = {k: v for k, v in ((parent.network or {}).get("ingress") or {}).items() if k != "exposed"}
        req = CreateRequest(template=parent.template, timeout=timeout, metadata=dict(parent.metadata),
                            envs=dict(parent.envs), limits=Limits(**parent.limits),
                            secure=parent.access_token is not None, stack=template,
                            volume_mounts=list(parent.volume_mounts), team=parent.team,
                            security=SecurityPolicy.from_changes(parent.security),
                            egress=egress_of(parent), network=ingress)
        return await self.create_sandbox(req)

    # ---- create from a snapshot --------------------------------------------------------------

    def for_create(self, template_ref: str, team: str) -> Snapshot | None:
        """The snapshot of `team` a create's templateID names (by id, name or name:tag), if any. An
        id of another team's snapshot fails as an unknown template would."""
        snap = self.find(template_ref, team)
        if snap is None and self.team_of(template_ref) is not None:
            self.templates.describe(template_ref)  # NotFound, worded as for any unknown name
            raise E.NotFound(f"template \"{template_ref}\" not found")  # (a recipe named like an id)
        return snap

    def canonical(self, template_ref: str) -> str:
        """A snapshot's id for a pool the operator names by a snapshot's id or name (SANDLOT_POOL_
        TEMPLATES; a name several teams use stays as given); other names unchanged."""
        try:
            key = _split(template_ref)
        except E.NotFound:
            return template_ref
        found = self._rows("WHERE id=? OR name=?", (key, key))
        return found[0].id if len(found) == 1 else template_ref


# ---- routes ----------------------------------------------------------------------------------

def _snapshots(request: Request) -> Snapshots:
    return request.app.state.snapshots


def _typed(data: dict, key: str, kind, default=None):
    value = data.get(key)
    if value is None:  # absent or null: the default
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise E.InvalidArgument(f"invalid {key}: expected {kind.__name__}")
    return value


async def create_snapshot(request: Request) -> Response:
    data = await read_json_object(request)
    snap = await _snapshots(request).create(request.path_params["sandbox_id"], _typed(data, "name", str),
                                            warm=bool(_typed(data, "warm", bool, False)))
    note(snapshot=snap.id, name=snap.name)
    # memory snapshots need a tier that can checkpoint: this one keeps the files
    return JSONResponse({**snap.json(), "mode": "filesystem"}, status_code=201)


async def list_snapshots(request: Request) -> Response:
    q = request.query_params
    limit = page_limit(q)
    snaps = _snapshots(request).list(caller(request).team, q.get("sandboxID"), q.get("name"))
    if token := q.get("nextToken"):
        try:
            created, sid = json.loads(base64.urlsafe_b64decode(token.encode()))
        except (ValueError, TypeError):
            raise E.InvalidArgument("nextToken is not valid") from None
        snaps = [s for s in snaps if (-s.created_at, s.id) > (-created, sid)]
    page, more = snaps[:limit], len(snaps) > limit
    headers = {}
    if more:
        headers["X-Next-Token"] = base64.urlsafe_b64encode(
            json.dumps([page[-1].created_at, page[-1].id]).encode()).decode()
    return JSONResponse([s.json() for s in page], headers=headers)


async def delete_snapshot(request: Request) -> Response:
    ref = request.path_params["template_id"]
    note(snapshot=ref)
    if not await _snapshots(request).delete(ref, caller(request).team):
        raise E.NotFound(f"template \"{ref}\" not found")
    return Response(status_code=204)


async def fork(request: Request) -> Response:
    data = await read_json_object(request)
    count = _typed(data, "count", int, 1)
    timeout = _typed(data, "timeout", int, FORK_TIMEOUT)
    if not 1 <= count <= MAX_FORKS:
        raise E.InvalidArgument(f"count must be between 1 and {MAX_FORKS}")
    check_timeout(timeout, request.app.state.config.max_timeout, minimum=1)
    results = await _snapshots(request).fork(request.path_params["sandbox_id"], count, timeout)
    note(count=count, children=[r["sandbox"]["sandboxID"] for r in results if "sandbox" in r])
    return JSONResponse(results, status_code=201)


def routes() -> list[Route]:
    return [
        Route("/sandboxes/{sandbox_id}/snapshots", create_snapshot, methods=["POST"]),
        Route("/snapshots", list_snapshots, methods=["GET"]),
        Route("/sandboxes/{sandbox_id}/fork", fork, methods=["POST"]),
    ]
