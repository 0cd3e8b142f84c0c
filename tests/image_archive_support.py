"""A `docker save` archive made by hand in Docker's format (manifest.json, a config, layer tars with
whiteouts), for the tests of templates built from image archives. Imports nothing from sandlot."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

# not needed to run python3 and a shell: keeps the archive small
SKIP = ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info", "var/cache", "var/lib/apt/lists",
        "usr/lib/python3/dist-packages/pip", "usr/share/perl", "usr/lib/x86_64-linux-gnu/perl", "usr/lib/git-core")


def _layer(fill) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        fill(tar)
    return buf.getvalue()


def _file(tar: tarfile.TarFile, name: str, data: bytes = b"", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def _dir(tar: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    tar.addfile(info)


def make_docker_save(path: Path, rootfs: Path) -> None:
    """A `docker save` archive of two layers: `rootfs`, then changes with whiteouts."""
    def bottom(tar):
        def keep(info):
            rel = info.name.removeprefix("./")
            return None if any(rel == s or rel.startswith(s + "/") for s in SKIP) else info
        for entry in sorted(rootfs.iterdir()):
            tar.add(entry, arcname=entry.name, filter=keep)
        _dir(tar, "opt/replaced")
        _file(tar, "opt/replaced/old.txt", b"old\n")

    def top(tar):
        _file(tar, "etc/.wh.motd")  # deletes /etc/motd
        _dir(tar, "opt/replaced")
        _file(tar, "opt/replaced/.wh..wh..opq")  # empties what the layer below put there
        _file(tar, "opt/replaced/new.txt", b"new\n")
        _dir(tar, "opt/image")
        _file(tar, "opt/image/hello.txt", b"hello from the image\n")

    layers = [_layer(bottom), _layer(top)]
    ids = [hashlib.sha256(data).hexdigest() for data in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                            "IMAGE_VAR=from-the-image"], "Cmd": ["bash"]},
                         "rootfs": {"type": "layers", "diff_ids": [f"sha256:{i}" for i in ids]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["sandlot-test:latest"],
                            "Layers": [f"{i}/layer.tar" for i in ids]}]).encode()
    with tarfile.open(path, "w") as tar:
        for i, data in zip(ids, layers):
            _file(tar, f"{i}/layer.tar", data)
        _file(tar, config_name, config)
        _file(tar, "manifest.json", manifest)
