"""Snapshots exported to the server's storage (storage/: a directory or an S3 bucket) and imported
from it, so another sandlot host can start sandboxes from them (sandlot's own routes):

    POST /snapshots/{id or name}/export  -> 200 {"snapshotID", "exportID", "location", "layers", "uploaded"}
    POST /snapshots/import {"snapshotID": an exportID, "name"?} -> 201 {"snapshotID", "names"}

In storage:
    snapshots/<id>/manifest.json   {"format": 1, "id", "team", "name", "stack", "metadata", "template"}
    layers/<hex digest>.tar.gz     each layer once (layers/archive.py), shared by every export

Layers already in storage are not uploaded again; every downloaded layer is checked against its
digest. The importing host builds the stack's template itself (from the same recipe; the
exporter's template fingerprint is compared and a difference logged).

The storage is semi-trusted: whoever can write it (another host sharing the directory or bucket,
whoever holds its credentials) writes manifests and archives. So a manifest is checked in shape
before anything is done with it (_parse: bounded size, a stack of at most MAX_STACK digests, a
template's name, objects of strings that can be answered), archives are extracted with bounds
(layers/archive.py), and a layer this host has already is reused only if the importing team holds
it (_reusable): a manifest may name any digest, other teams' private layers included.

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
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import _exceptions as E
from ..hostfs import remove_tree
from ..layers import MAX_STACK, LayerStore, archive
from ..storage import make_backend
from .auth import caller
from .bodies import read_json_object
from .request_info import note
from .snapshots import Snapshot, Snapshots

log = logging.getLogger("sandlot.transfer")
FORMAT = 1
_ID = re.compile(r"^snap[a-z0-9]{16}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_TEMPLATE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")  # a recipe's name (templates/recipes.py)
# A manifest is a stack, two names and the metadata and env vars of a sandbox (a create's JSON
# body: 4 MiB by default, SANDLOT_MAX_JSON_BYTES): read whole and parsed, so bounded
MAX_MANIFEST = 8 << 20

# Who may hold a layer (layers/store.py holders "<kind>:<id>"), by kind: the team each belongs to.
# Given by app.py; fork: and import: holders are a request's, for its duration: nobody's.
Owners = Mapping[str, Callable[[str], "str | None"]]


def _layer_key(digest: str) -> str:
    return f"layers/{digest.split(':', 1)[1]}.tar.gz"


class Transfer:
    def __init__(self, snapshots: Snapshots, layers: LayerStore, location: str, owners: Owners):
        self.snapshots = snapshots
        self.layers = layers
        self.backend = make_backend(location)
        self.owners = owners
        self.scratch = layers.root  # same file system as the layers, root-only

    def _tmp(self, suffix: str) -> Path:
        return self.scratch / f".transfer-{secrets.token_hex(6)}{suffix}"

    def _free(self) -> int:
        return shutil.disk_usage(self.scratch).free

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

    def import_(self, snapshot_id: str, name: str | None, team: str) -> tuple[Snapshot, bool]:
        """The export as a snapshot of `team`, and whether it replaced one of that name."""
        if not _ID.fullmatch(snapshot_id):
            raise E.InvalidArgument("not a snapshot id")
        key = f"snapshots/{snapshot_id}/manifest.json"
        here = self.snapshots.by_id(snapshot_id)
        if here is not None and here.team != team:  # another team's, exported from this server
            raise E.NotFound(f"{key} is not in {self.backend.location}")  # as if it were not there
        self.snapshots.check_name(name)  # before any download
        tmp = self._tmp(".json")
        try:
            self.backend.get(key, tmp, max_bytes=MAX_MANIFEST)
            raw = tmp.read_bytes()
        except E.ResourceExhausted:
            raise E.InvalidArgument(f"the manifest of {snapshot_id} is larger than {MAX_MANIFEST} bytes") from None
        finally:
            tmp.unlink(missing_ok=True)
        stack, metadata, exported_name, recipe = _parse(raw, snapshot_id)
        name = name or exported_name
        self.snapshots.check_name(name)
        ours = (self.snapshots.templates.manifest(stack["template"]) or {}).get("recipe")  # NotFound if unknown
        if ours and ours != recipe:
            log.warning("snapshot %s was taken on a %s template built from another recipe than this "
                        "host's: its layers apply to this host's build", snapshot_id, stack["template"])
        holder = f"import:{secrets.token_hex(6)}"
        try:
            for digest in stack["layers"]:
                if self._reusable(digest, team):
                    self.layers.hold(holder, [digest])
                else:
                    self._fetch(digest, holder)
            replaced = self.snapshots.find(name, team) is not None if name else False
            return self.snapshots.add(stack, metadata, name, source=f"import of {snapshot_id}", team=team), replaced
        finally:  # the snapshot holds its layers now; a refused one goes
            self.layers.release(holder)
            self.layers.gc()

    def _reusable(self, digest: str, team: str) -> bool:
        """Whether a layer this host has stands for the manifest's without a download. Only if the
        storage has its archive too (the export is complete wherever it is imported) and the
        importing team holds it already (a snapshot or template of its own): a manifest
        can name any digest, and one of another team's private layers (a leaked digest) would
        otherwise become the importer's snapshot. Any other layer is downloaded and checked
        against its digest, which proves the storage holds its content: a layer of this host is
        then shared, not copied twice. Re-importing a team's own export, and stacks over its
        earlier imports, stay free of downloads."""
        if not self.layers.exists(digest) or not self.backend.exists(_layer_key(digest)):
            return False
        return any(self._team_of(h) == team for h in self.layers.holders_of(digest))

    def _team_of(self, holder: str) -> str | None:
        kind, _, ident = holder.partition(":")
        owner = self.owners.get(kind)
        return owner(ident) if owner is not None else None

    def _fetch(self, digest: str, holder: str) -> None:
        packed, tree = self._tmp(".tar.gz"), self._tmp("")
        try:
            self.backend.get(_layer_key(digest), packed, max_bytes=self._free())
            # half of what is left: the commit copies the extracted tree once more
            archive.extract(packed, tree, max_bytes=self._free() // 2)
            got = self.layers.commit(tree, holder, made_from=f"import from {self.backend.location}")
            if got != digest:
                raise E.InvalidArgument(f"layer {digest} from {self.backend.location} does not match its "
                                        f"digest (got {got}): refused")
        finally:
            packed.unlink(missing_ok=True)
            remove_tree(tree)


def _parse(raw: bytes, snapshot_id: str) -> tuple[dict, dict, str | None, str | None]:
    """(stack, metadata, name, template recipe) of a manifest, each checked: a stack holds exactly
    its template, layers and env vars. Anything else is InvalidArgument, never a server error."""
    def bad(what: str) -> E.InvalidArgument:
        return E.InvalidArgument(f"the manifest of {snapshot_id} {what}: not an export of sandlot's")

    try:
        manifest = json.loads(raw)
    except ValueError:
        raise E.InvalidArgument(f"the manifest of {snapshot_id} is not valid JSON") from None
    except RecursionError:
        raise bad("is nested too deeply") from None
    if not isinstance(manifest, dict):
        raise bad("is not a JSON object")
    if manifest.get("format") != FORMAT:
        raise E.InvalidArgument(f"snapshot {snapshot_id} was exported in an unknown format")
    if manifest.get("id") != snapshot_id:  # a manifest copied from another export
        raise bad("is of another snapshot")
    stack = manifest.get("stack")
    if not isinstance(stack, dict):
        raise bad("has no stack")
    template, layers = stack.get("template"), stack.get("layers")
    if not isinstance(template, str) or not _TEMPLATE.fullmatch(template):
        raise bad("names no template")
    if not isinstance(layers, list) or len(layers) > MAX_STACK or \
            not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in layers):
        raise bad(f"has no list of at most {MAX_STACK} layer digests")
    envs = _strings(stack.get("envs"), "env vars", bad)
    if any(not k or "=" in k or "\0" in k + v for k, v in envs.items()):
        raise bad("has env vars no process can have")
    metadata = _strings(manifest.get("metadata"), "metadata", bad)
    name = manifest.get("name")
    if name is not None and not isinstance(name, str):
        raise bad("has a name that is not a string")
    described = manifest.get("template", {})
    recipe = described.get("recipe") if isinstance(described, dict) else None
    if not isinstance(described, dict) or not isinstance(recipe, (str, type(None))):
        raise bad("describes its template as no {name, recipe}")
    return {"template": template, "layers": list(layers), "envs": envs}, metadata, name, recipe


def _strings(value, what: str, bad) -> dict[str, str]:
    """Metadata or env vars: an object of strings that can be answered (UTF-8: no lone surrogates,
    which JSON can carry but no response can)."""
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise bad(f"has {what} that are not an object of strings")
    try:
        for k, v in value.items():
            k.encode(), v.encode()
    except UnicodeEncodeError:
        raise bad(f"has {what} that are not UTF-8") from None
    return value


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
    snap, replaced = await asyncio.to_thread(transfer.import_, data["snapshotID"], data.get("name"),
                                             caller(request).team)
    if replaced:  # as for a snapshot taken under a name in use: the old content's warm sandboxes go
        await transfer.snapshots.pools.drop(snap.id)
    return JSONResponse(snap.json(), status_code=201)


def routes() -> list[Route]:
    return [
        Route("/snapshots/import", import_snapshot, methods=["POST"]),
        Route("/snapshots/{snapshot_id}/export", export_snapshot, methods=["POST"]),
    ]
