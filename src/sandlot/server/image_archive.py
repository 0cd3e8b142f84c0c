"""A `docker save` archive (Docker's format: manifest.json, a config, layer tars; OCI archives
that carry a manifest.json too) as one layer, the base of a template build.

Which archives: a file in <home>/images/ (`docker-archive:NAME.tar`, or its absolute path), put
there by the operator, or one uploaded like a COPY's files (`upload:<files hash>`, what
`sandlot template build` does for `FROM ./image.tar`). No other host path: an API key must not
read the server's files.

The host only reads the archive's JSON members. The layers are unpacked in a sandbox (from
`base`, which has python3 and tar), each streamed to its stdin in order, Docker's whiteouts
applied as they come (`.wh.NAME` removes NAME, `.wh..wh..opq` empties its directory of what
earlier layers put there), device nodes skipped (a sandbox cannot make them); the result is
committed as a layer and stacked over the empty `scratch` template. A second build from the same
file (path, size, mtime) reuses the layer while any template holds it.

What the image needs to be a sandlot sandbox: python3 (3.9 or newer) at /usr/bin/python3 for the
agent, and a `user` account for E2B's default user (a recipe can add it with `useradd`).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import TYPE_CHECKING

from .. import _exceptions as E
from ..runtimes.policy import SandboxSpec
from .agent_client import AgentClient
from .build_log import BUILD_LIMITS, BuildLog, build_sandbox
from .service import new_sandbox_id

if TYPE_CHECKING:
    from .custom_templates import CustomTemplates
    from .service import SandboxService

ROOT = "/.sandlot-image"
MAX_JSON = 1 << 20
MAX_MEMBERS = 10_000  # of an archive (its layers' files are not members): docker save writes a few per layer
MAX_OUTPUT = 64 << 10  # of an unpacker's output, the end kept for the log (its last 20 lines)
UNPACK = r"""
import os, shutil, sys, tarfile
root = sys.argv[1]
os.makedirs(root, exist_ok=True)
made = set()
skipped = 0

def gone(path):
    if os.path.islink(path) or not os.path.isdir(path):
        if os.path.lexists(path):
            os.unlink(path)
    else:
        shutil.rmtree(path)

with tarfile.open(fileobj=sys.stdin.buffer, mode="r|*") as tar:
    for member in tar:
        name = os.path.normpath(member.name.lstrip("/"))
        if name.startswith("..") or name == ".":
            continue
        parent, base = os.path.split(name)
        if base == ".wh..wh..opq":
            directory = os.path.join(root, parent)
            if os.path.isdir(directory):
                for entry in os.listdir(directory):
                    if os.path.join(parent, entry) not in made:
                        gone(os.path.join(directory, entry))
            continue
        if base.startswith(".wh."):
            gone(os.path.join(root, parent, base[4:]))
            continue
        if member.ischr() or member.isblk():
            skipped += 1
            continue
        target = os.path.join(root, name)
        if os.path.lexists(target) and not (member.isdir() and os.path.isdir(target)):
            gone(target)
        member.name = name
        tar.extract(member, root, set_attrs=True, numeric_owner=True)
        made.add(name)
print("unpacked %d entries%s" % (len(made), ", skipped %d device node(s)" % skipped if skipped else ""))
"""


def images_dir(home: Path) -> Path:
    return Path(home) / "images"


def archive_path(image: str, team: str, store: CustomTemplates) -> Path | None:
    """The archive a build's image names, or None if it names none (a registry image)."""
    if image.startswith("upload:"):
        path = store.files_path(team, image[len("upload:"):])
        if not path.is_file():
            raise E.NotFound(f"no uploaded archive of hash {image[7:]!r}")
        return path
    if image.startswith("docker-archive:"):
        name = image[len("docker-archive:"):]
    elif image.startswith("/") and image.endswith((".tar", ".tar.gz", ".tgz")):
        name = image
    else:
        return None
    folder = images_dir(store.files_root.parent).resolve()
    path = Path(os.path.realpath(folder / name))
    if folder not in path.parents:  # (the server's paths are not the caller's business)
        raise E.PermissionDenied("image archives are read from the server's images directory only "
                                 "(docker-archive:NAME.tar), or uploaded")
    if not path.is_file():
        raise E.NotFound(f"image archive {name!r} not found in the server's images directory")
    return path


def read_manifest(archive: Path) -> tuple[list[str], dict]:
    """(layer member names, bottom first; the image config) of a `docker save` archive."""
    try:
        with _open(archive) as tar:
            manifest = _json(tar, "manifest.json")
            if not isinstance(manifest, list) or len(manifest) != 1 or not isinstance(manifest[0], dict):
                raise E.InvalidArgument("the archive's manifest.json must describe exactly one image")
            layers, config = manifest[0].get("Layers"), manifest[0].get("Config")
            if not isinstance(layers, list) or not layers or not all(isinstance(x, str) for x in layers):
                raise E.InvalidArgument("the archive's manifest.json lists no layers")
            names = set(tar.getnames())
            missing = [x for x in layers if x not in names]
            if missing:
                raise E.InvalidArgument(f"the archive lacks its layer {missing[0]!r}")
            image_config = _json(tar, config) if isinstance(config, str) else {}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise E.InvalidArgument(f"not a docker save archive: {e}") from None
    return layers, image_config if isinstance(image_config, dict) else {}


def _open(archive: Path) -> tarfile.TarFile:
    """The archive with its member list read, at most MAX_MEMBERS of them. Each costs the server
    ~400 bytes: a gzip upload of 10 MB held 1.5 million empty ones, 600 MB of its memory (1 GiB of
    upload, ~60 GB)."""
    tar = tarfile.open(archive)
    try:
        for count, _ in enumerate(tar, 1):
            if count > MAX_MEMBERS:
                raise E.InvalidArgument(f"not a docker save archive: it has more than {MAX_MEMBERS} members")
    except BaseException:
        tar.close()
        raise
    return tar


def _json(tar: tarfile.TarFile, name: str):
    try:
        member = tar.getmember(name)
    except KeyError:
        raise E.InvalidArgument(f"not a docker save archive: it has no {name}") from None
    if not member.isfile() or member.size > MAX_JSON:
        raise E.InvalidArgument(f"the archive's {name} is not a small file")
    try:
        return json.loads(tar.extractfile(member).read())
    except ValueError as e:
        raise E.InvalidArgument(f"the archive's {name} is not JSON: {e}") from None


def image_envs(config: dict) -> dict[str, str]:
    env = (config.get("config") or {}).get("Env") or []
    return dict(e.split("=", 1) for e in env if isinstance(e, str) and "=" in e)


async def import_archive(service: SandboxService, store: CustomTemplates, archive: Path, team: str, holder: str,
                         out: BuildLog) -> tuple[str, dict[str, str]]:
    """The archive's files as a layer held by `holder`, and the image's env vars."""
    layers, config = await asyncio.to_thread(read_manifest, archive)
    st = archive.stat()
    key = json.dumps(["image", team, str(archive), st.st_size, st.st_mtime_ns])
    cached = store.cached(key)
    if cached is not None:
        out.add("CACHED (the archive was imported before)")
        store.layers.hold(holder, cached["layers"])
        return cached["layers"][0], cached["envs"]
    out.add(f"unpacking {len(layers)} layer(s) in a sandbox")
    base = await service.lifecycle.template_for({"template": "base", "layers": []}, "base", wait=True)
    spec = SandboxSpec(new_sandbox_id(), "template-build", BUILD_LIMITS)
    rt = await build_sandbox(service.runtime, spec, base)
    try:
        agent = AgentClient(str(rt.socket_path))
        for member in layers:
            await _unpack(agent, archive, member, out)
        digest = await asyncio.to_thread(_commit, service, store, rt.sandbox_id, holder, archive)
    finally:
        await asyncio.shield(asyncio.to_thread(service.runtime.kill, rt.sandbox_id))
    if digest is None:
        raise E.InvalidArgument("the image archive holds no files")
    envs = image_envs(config)
    store.remember(key, {"layers": [digest], "envs": envs})
    return digest, envs


def _commit(service: SandboxService, store: CustomTemplates, sandbox_id: str, holder: str,
            archive: Path) -> str | None:
    """The unpacked files as a layer. The unpacker ran the sandbox's python3, which a layer may have
    replaced: frozen first, the sandbox must still hold ROOT as the directory it was made, never a link
    the host would follow (to a host directory: its listing answered whether it exists or is empty)."""
    upper, uid_base = service.runtime.writable_layer(sandbox_id)
    service.runtime.freeze(sandbox_id, True)  # killed next: nothing changes the tree meanwhile
    tree = upper / ROOT.lstrip("/")
    try:
        is_dir = stat.S_ISDIR(os.lstat(tree).st_mode)
    except FileNotFoundError:
        is_dir = False
    if not is_dir:
        raise E.InvalidArgument(f"unpacking the image left no directory {ROOT}: its layers replaced the unpacker")
    return store.layers.commit(tree, holder, uid_base=uid_base, made_from=f"image archive {archive.name}")


async def _unpack(agent: AgentClient, archive: Path, member: str, out: BuildLog) -> None:
    """Stream one layer tar (gzip or not) to the unpacker's stdin in the sandbox."""
    events = agent.start("python3", ["-c", UNPACK, ROOT], user="root", cwd="/", stdin=True, tag=None)
    started = await events.__anext__()
    pid = started["start"]["pid"]

    async def feed():
        def chunks():
            with _open(archive) as tar:  # (an upload may have been replaced since its manifest was read)
                f = tar.extractfile(member)
                if f is None:
                    raise E.InvalidArgument(f"the archive's layer {member!r} is not a file")
                while data := f.read(1 << 20):
                    yield data

        async def read():
            it = chunks()
            while (data := await asyncio.to_thread(next, it, None)) is not None:
                yield data

        await agent.stream_input(read(), pid=pid)
        await agent.close_stdin(pid=pid)

    feeding = asyncio.create_task(feed())
    code, output = None, b""
    try:
        async for event in events:
            output = (output + event.get("stdout", b"") + event.get("stderr", b""))[-MAX_OUTPUT:]
            if end := event.get("end"):
                code = end.get("exit_code")
        await feeding
    finally:
        feeding.cancel()
    for line in output.decode(errors="replace").splitlines()[-20:]:
        out.add(line)
    if code != 0:
        raise E.InvalidArgument(f"unpacking the layer {member} failed (exit code {code})")
