"""Templates built from recipes, through E2B's template build API (docs/templates.md): a Dockerfile
built on the server (each step in a sandbox, cached), the team's templates listed and deleted.

    build = await AsyncTemplate.build("my-env", dockerfile="Dockerfile", context=".")
    sbx = await AsyncSandbox.create("my-env")        # or "my-env:TAG"
    [t.name for t in await AsyncTemplate.list()]
    await AsyncTemplate.delete("my-env")              # False if unknown

The official e2b SDK's `Template()` builder talks to the same routes.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from .. import _exceptions as E
from ._config import ConnectionConfig
from ._dockerfile import parse as parse_dockerfile
from ._http import Transport
from ._snapshots import _call

POLL_S = 0.2
CHUNK = 1 << 20


@dataclass(frozen=True)
class TemplateLogEntry:
    """One line of a build's log."""

    timestamp: str
    level: str  # debug | info | warn | error
    message: str
    step: str  # the step's number, "base" or "finalize"


@dataclass(frozen=True)
class TemplateBuildInfo:
    """A finished build."""

    template_id: str
    build_id: str
    name: str
    tags: list[str]
    steps: int  # in the recipe (what a progress display counts)


@dataclass(frozen=True)
class TemplateInfo:
    """One of the team's templates."""

    template_id: str
    name: str
    build_id: str
    status: str  # of its default build: ready | building | waiting | error
    tags: list[str] = field(default_factory=list)
    updated_at: str | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TemplateInfo:
        return cls(d["templateID"], (d.get("names") or [d["templateID"]])[0], d.get("buildID", ""),
                   d.get("buildStatus", ""), list(d.get("tags") or []), d.get("updatedAt"))


class AsyncTemplate:
    """Templates of the API key's team built from recipes (classmethods only)."""

    @classmethod
    async def build(cls, name: str, dockerfile: str | Path = "Dockerfile", context: str | Path | None = None,
                    tags: builtins.list[str] | None = None, skip_cache: bool = False,
                    on_log: Callable[[TemplateLogEntry], None] | None = None, api_url: str | None = None,
                    api_key: str | None = None, request_timeout: float | None = None, *,
                    ca_file: str | os.PathLike[str] | None = None) -> TemplateBuildInfo:
        """Build `name` (or `name:tag`) from a Dockerfile (a path, or its text when it has a
        newline); COPY sources are read from `context` (default: the Dockerfile's directory).
        Waits for the build; `on_log` gets its log lines. TemplateError if a step fails (the
        previous build of the name stays)."""
        text, folder = _dockerfile(dockerfile)
        ctx = Path(context) if context is not None else folder
        recipe = await asyncio.to_thread(parse_dockerfile, text, ctx)
        if skip_cache:
            recipe.spec["force"] = True
        transport = Transport(await ConnectionConfig.resolve(api_url, api_key, request_timeout, ca_file))
        try:
            started = (await transport.api("POST", "/v3/templates", request_timeout=request_timeout,
                                           json={"name": name, **({"tags": tags} if tags else {})})).json()
            tid, bid = started["templateID"], started["buildID"]
            for upload in recipe.uploads:
                link = (await transport.api("GET", f"/templates/{quote(tid, safe='')}/files/{upload.files_hash}",
                                            request_timeout=request_timeout)).json()
                if not link.get("present") and link.get("url"):
                    await _put(transport, link["url"], await asyncio.to_thread(upload.open, ctx), request_timeout)
            await transport.api("POST", f"/v2/templates/{quote(tid, safe='')}/builds/{bid}",
                                request_timeout=request_timeout, json=recipe.spec)
            await _wait(transport, tid, bid, on_log, request_timeout)
        finally:
            await transport.aclose()
        return TemplateBuildInfo(tid, bid, started["names"][0], list(started.get("tags") or []),
                                 len(recipe.spec["steps"]))

    @classmethod
    async def list(cls, api_url: str | None = None, api_key: str | None = None,
                   request_timeout: float | None = None, *,
                   ca_file: str | os.PathLike[str] | None = None) -> builtins.list[TemplateInfo]:
        """The team's templates built from recipes, by name."""
        return [TemplateInfo.from_json(d)
                for d in await _call("GET", "/templates", api_url, api_key, request_timeout, ca_file=ca_file)]

    @classmethod
    async def delete(cls, name: str, api_url: str | None = None, api_key: str | None = None,
                     request_timeout: float | None = None, *, ca_file: str | os.PathLike[str] | None = None) -> bool:
        """Delete a template (every tag; sandboxes made from it keep running). False if unknown."""
        try:
            await _call("DELETE", f"/templates/{quote(name, safe='')}", api_url, api_key, request_timeout,
                        ca_file=ca_file)
        except E.NotFound:
            return False
        return True


async def _put(transport: Transport, url: str, f: BinaryIO, request_timeout: float | None) -> None:
    """Stream the file to the signed upload URL (it carries its own credential), then close it."""
    async def chunks() -> AsyncIterator[bytes]:
        while data := await asyncio.to_thread(f.read, CHUNK):
            yield data

    try:
        size = os.fstat(f.fileno()).st_size
        await transport.request("PUT", url, content=chunks(), headers={"Content-Length": str(size)},
                                request_timeout=request_timeout)
    finally:
        f.close()


def _dockerfile(dockerfile: str | Path) -> tuple[str, Path]:
    if isinstance(dockerfile, str) and "\n" in dockerfile:
        return dockerfile, Path.cwd()
    path = Path(dockerfile)
    try:
        return path.read_text(), path.resolve().parent
    except OSError as e:
        raise E.InvalidArgument(f"cannot read the Dockerfile {path}: {e.strerror}") from None


async def _wait(transport: Transport, tid: str, bid: str, on_log: Callable[[TemplateLogEntry], None] | None,
                request_timeout: float | None) -> None:
    offset = 0
    while True:
        status = (await transport.api("GET", f"/templates/{quote(tid, safe='')}/builds/{bid}/status",
                                      params={"logsOffset": offset}, request_timeout=request_timeout)).json()
        entries = status.get("logEntries") or []
        offset += len(entries)
        for e in entries:
            if on_log is not None:
                on_log(TemplateLogEntry(e.get("timestamp", ""), e.get("level", "info"), e.get("message", ""),
                                        str(e.get("step", ""))))
        if entries:
            continue  # drain the log before looking at the status
        if status["status"] == "ready":
            return
        if status["status"] == "error":
            reason = status.get("reason") or {}
            raise E.TemplateError(reason.get("message") or "the template build failed", step=reason.get("step"))
        await asyncio.sleep(POLL_S)

