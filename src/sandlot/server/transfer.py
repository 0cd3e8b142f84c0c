"""Snapshots exported to the server's storage (storage/: a directory or an S3 bucket) and imported
from it, so another sandlot host can start sandboxes from them (sandlot's own routes):

    POST /snapshots/{id or name}/export  -> 200 {"snapshotID", "exportID", "location", "layers", "uploaded"}
    POST /snapshots/import {"snapshotID": an exportID, "name"?} -> 201 {"snapshotID", "names"}

In storage:
    snapshots/<id>/manifest.json   {"format": 1, "id", "team", "name", "stack", "metadata", "template"}
    layers/<hex digest>.tar.gz     each layer once (layers/archive.py), shared by every export

Layers already in storage are not uploaded again, layers already on the importing host are not
downloaded; every downloaded layer is checked against its digest. The importing host builds the
stack's template itself (from the same recipe; the exporter's template fingerprint is compared
and a difference logged).

Teams: an export is of the caller's team's snapshot (app.py checks `{snapshot_id}`); an import
becomes a snapshot of the caller's team. The storage is the server's, shared by its teams: what
names an export is its snapshot id (82 random bits, shown only to its team), and the id of another
team's snapshot on this server is answered as missing from storage.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from ..hostfs import remove_tree
from ..layers import LayerStore, archive
from ..storage import make_backend
from .auth import caller
from .bodies import read_json_object
from .request_info import note
from .snapshots import Snapshot, Snapshots

log = logging.getLogger("sandlot.transfer")
FORMAT = 1
_ID = re.compile(r"^snap[a-z0-9]{16}$")


def _layer_key(digest: str) -> str:
    return f"layers/{digest.split(':', 1)[1]}.tar.gz"


class Transfer:
    def __init__(self, snapshots: Snapshots, layers: LayerStore, location: str):
        self.snapshots = snapshots
        self.layers = layers
        self.backend = make_backend(location)
        self.scratch = layers.root  # same file system as the layers, root-only

    def _tmp(self, suffix: str) -> Path:
        return self.scratch / f".transfer-{secrets.token_hex(6)}{suffix}"

    def export(self, snap: Snapshot) -> dict:
        uploaded = 0
        for digest in snap.stack["layers"]:
            key = _layer_key(digest)
            if self.backend.exists(key):
                continue
            tmp = self._tmp(".tar.gz")
            try:
                archive.write(self.layers.path(digest), tmp)
                self.backend.put(key, tmp)
                uploaded += 1
            finally:
                tmp.unlink(missing_ok=True)
        template = self.snapshots.templates.manifest(snap.stack["template"]) or {}
        manifest = {"format": FORMAT, "id": snap.id, "team": snap.team, "name": snap.name, "stack": snap.stack,
                    "metadata": snap.metadata, "template": {"name": snap.stack["template"],
                                                             "recipe": template.get("recipe")},
                    "exported_at": time.time()}
        tmp = self._tmp(".json")
        try:
            tmp.write_text(json.dumps(manifest))
            self.backend.put(f"snapshots/{snap.id}/manifest.json", tmp)  # last: complete exports only
        finally:
            tmp.unlink(missing_ok=True)
        return {"snapshotID": snap.json()["snapshotID"], "exportID": snap.id, "location": self.backend.location,
                "layers": len(snap.stack["layers"]), "uploaded": uploaded}

    def import_(self, snapshot_id: str, name: str | None, team: str) -> Snapshot:
        if not _ID.match(snapshot_id):
            raise E.InvalidArgument("not a snapshot id")
        key = f"snapshots/{snapshot_id}/manifest.json"
        tmp = self._tmp(".json")
        try:
            self.backend.get(key, tmp)
            manifest = json.loads(tmp.read_text())
        except ValueError:
            raise E.InvalidArgument(f"the manifest of {snapshot_id} is not valid JSON") from None
        finally:
            tmp.unlink(missing_ok=True)
        here = self.snapshots.by_id(snapshot_id)
        if here is not None and here.team != team:  # another team's, exported from this server
            raise E.NotFound(f"{key} is not in {self.backend.location}")  # as if it were not there
        if manifest.get("format") != FORMAT:
            raise E.InvalidArgument(f"snapshot {snapshot_id} was exported in an unknown format")
        stack = manifest["stack"]
        templates = self.snapshots.templates
        here = (templates.manifest(stack["template"]) or {}).get("recipe")
        if here and here != manifest["template"].get("recipe"):
            log.warning("snapshot %s was taken on a %s template built from another recipe than this "
                        "host's: its layers apply to this host's build", snapshot_id, stack["template"])
        holder = f"import:{secrets.token_hex(6)}"
        try:
            for digest in stack["layers"]:
                if self.layers.exists(digest):
                    self.layers.hold(holder, [digest])
                    continue
                self._fetch(digest, holder)
            return self.snapshots.add(stack, manifest.get("metadata", {}), name or manifest.get("name"),
                                      source=f"import of {snapshot_id}", team=team)
        finally:  # the snapshot holds its layers now; a refused one goes
            self.layers.release(holder)
            self.layers.gc()

    def _fetch(self, digest: str, holder: str) -> None:
        packed, tree = self._tmp(".tar.gz"), self._tmp("")
        try:
            self.backend.get(_layer_key(digest), packed)
            archive.extract(packed, tree)
            got = self.layers.commit(tree, holder, made_from=f"import from {self.backend.location}")
            if got != digest:
                raise E.InvalidArgument(f"layer {digest} from {self.backend.location} does not match its "
                                        f"digest (got {got}): refused")
        finally:
            packed.unlink(missing_ok=True)
            remove_tree(tree)


def _transfer(request: Request) -> Transfer:
    return request.app.state.transfer


async def export_snapshot(request: Request) -> Response:
    transfer = _transfer(request)
    snap = transfer.snapshots.get(request.path_params["snapshot_id"], caller(request).team)
    note(snapshot=snap.id)
    return JSONResponse(await asyncio.to_thread(transfer.export, snap))


async def import_snapshot(request: Request) -> Response:
    data = await read_json_object(request)
    if not isinstance(data.get("snapshotID"), str) or not isinstance(data.get("name", ""), (str, type(None))):
        raise E.InvalidArgument("give the snapshotID to import (and optionally a name)")
    transfer = _transfer(request)
    note(snapshot=data["snapshotID"])
    snap = await asyncio.to_thread(transfer.import_, data["snapshotID"], data.get("name"), caller(request).team)
    return JSONResponse(snap.json(), status_code=201)


def routes() -> list[Route]:
    return [
        Route("/snapshots/import", import_snapshot, methods=["POST"]),
        Route("/snapshots/{snapshot_id}/export", export_snapshot, methods=["POST"]),
    ]
