"""A Dockerfile subset as a template build (docs/templates.md): the body E2B's template API takes
(TemplateBuildStartV2, what the official SDK's `Template` sends) and the files its COPYs upload.

    FROM  a sandlot template or snapshot, a template of your team, debian:<host release>,
          docker-archive:NAME.tar (in the server's images directory) or a local `docker save`
          archive path (./image.tar: uploaded)
    RUN   shell or exec form;  COPY [--chown=U[:G]] [--chmod=MODE] SRC... DEST (from the context)
    ENV   K=V ... or K V;  WORKDIR;  USER;  CMD (the start command, shell or exec form)
    LABEL, EXPOSE and comments are ignored; anything else (ADD, ARG, multi-stage...) is refused.

As Docker (and E2B's own Dockerfile parser), steps run as root in / unless USER / WORKDIR say
otherwise; when they do not, the template's final user and directory are E2B's (user, /home/user).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shlex
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .. import _exceptions as E

IGNORED = ("LABEL", "EXPOSE", "MAINTAINER", "STOPSIGNAL", "HEALTHCHECK")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz")


@dataclass
class Upload:
    """Files a COPY (or an archive FROM) uploads: the tar of `paths` (relative to the context) or,
    for an archive, the file itself; `files_hash` names it on the server."""

    files_hash: str
    paths: list[str] = field(default_factory=list)
    archive: Path | None = None

    def open(self, context: Path) -> BinaryIO:
        """What to upload, as a file (a temporary one for a COPY: deleted when closed)."""
        if self.archive is not None:
            return open(self.archive, "rb")
        packed = tempfile.TemporaryFile()
        try:
            with tarfile.open(fileobj=packed, mode="w:gz") as tar:
                for rel in self.paths:
                    tar.add(context / rel, arcname=rel, recursive=False)
            packed.seek(0)
        except BaseException:
            packed.close()
            raise
        return packed


@dataclass
class DockerfileBuild:
    spec: dict[str, Any]
    uploads: list[Upload]


def _lines(text: str) -> list[tuple[int, str]]:
    """Logical lines (continuations joined, comments dropped) with their first line number."""
    out, current, start = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if not current:
            start = number
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        out.append((start, current + stripped))
        current = ""
    if current:
        out.append((start, current))
    return out


def _exec_or_shell(rest: str) -> str:
    if rest.startswith("["):
        try:
            argv = json.loads(rest)
        except ValueError:
            argv = None
        if isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv):
            return shlex.join(argv)
    return rest


def _files_of(context: Path, src: str) -> list[str]:
    """Context-relative paths a COPY source names (a glob; a directory with all it holds)."""
    root = context.resolve()
    matches = sorted(glob.glob(str(root / src), recursive=False))
    if not matches:
        raise E.InvalidArgument(f"COPY {src}: nothing matches it in {context}")
    found: list[str] = []
    for match in matches:
        path = Path(match)
        if root != path.resolve() and root not in path.resolve().parents:
            raise E.InvalidArgument(f"COPY {src}: outside the build context {context}")
        found.append(os.path.relpath(path, root))
        if path.is_dir() and not path.is_symlink():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in sorted(dirnames) + sorted(filenames):
                    found.append(os.path.relpath(Path(dirpath) / name, root))
    return found


def _hash(context: Path, src: str, dest: str, paths: list[str]) -> str:
    h = hashlib.sha256(json.dumps([src, dest]).encode())
    for rel in paths:
        p = context / rel
        st = p.lstat()
        h.update(f"\0{rel}\0{st.st_mode}\0".encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
    return h.hexdigest()


def _file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def parse(text: str, context: Path) -> DockerfileBuild:
    """The build a Dockerfile describes, its COPY sources read from `context`."""
    context = Path(context)
    steps: list[dict[str, Any]] = [{"type": "USER", "args": ["root"]}, {"type": "WORKDIR", "args": ["/"]}]
    uploads: list[Upload] = []
    spec: dict[str, Any] = {}
    user_set = workdir_set = False
    for number, line in _lines(text):
        word, _, rest = line.partition(" ")
        instruction, rest = word.upper(), rest.strip()
        where = f"line {number}: {instruction}"
        if instruction == "FROM":
            if spec:
                raise E.InvalidArgument(f"{where}: multi-stage Dockerfiles are not supported")
            image = rest.split()[0] if rest else ""
            if not image or " AS " in f" {rest.upper()} ":
                raise E.InvalidArgument(f"{where}: FROM takes one image (no stages)")
            local = (context / image) if not image.startswith("/") else Path(image)
            if image.endswith(ARCHIVE_SUFFIXES) and local.is_file() and not image.startswith("docker-archive:"):
                upload = Upload(_file_hash(local), archive=local)
                uploads.append(upload)
                image = f"upload:{upload.files_hash}"
            spec["fromImage"] = image
        elif not spec:
            raise E.InvalidArgument(f"{where}: the Dockerfile must start with FROM")
        elif instruction == "RUN":
            steps.append({"type": "RUN", "args": [_exec_or_shell(rest)]})
        elif instruction == "CMD":
            spec["startCmd"] = _exec_or_shell(rest)
        elif instruction == "ENV":
            steps.append({"type": "ENV", "args": _env(rest, where)})
        elif instruction == "WORKDIR":
            steps.append({"type": "WORKDIR", "args": [rest]})
            workdir_set = True
        elif instruction == "USER":
            steps.append({"type": "USER", "args": [rest]})
            user_set = True
        elif instruction == "COPY":
            steps.extend(_copy(rest, context, uploads, where))
        elif instruction not in IGNORED:
            raise E.InvalidArgument(f"{where} is not supported (supported: FROM, RUN, COPY, ENV, WORKDIR, USER, CMD)")
    if not spec:
        raise E.InvalidArgument("the Dockerfile has no FROM")
    if not user_set:
        steps.append({"type": "USER", "args": ["user"]})
    if not workdir_set:
        steps.append({"type": "WORKDIR", "args": ["/home/user"]})
    return DockerfileBuild({**spec, "steps": steps}, uploads)


def _env(rest: str, where: str) -> list[str]:
    words = shlex.split(rest)
    if not words:
        raise E.InvalidArgument(f"{where} needs a name and a value")
    if "=" not in words[0]:  # ENV NAME value with spaces
        return [words[0], rest.split(None, 1)[1] if len(rest.split(None, 1)) > 1 else ""]
    args = []
    for word in words:
        name, eq, value = word.partition("=")
        if not eq:
            raise E.InvalidArgument(f"{where}: {word!r} is not NAME=value")
        args += [name, value]
    return args


def _copy(rest: str, context: Path, uploads: list[Upload], where: str) -> list[dict[str, Any]]:
    words = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    owner = mode = ""
    while words and words[0].startswith("--"):
        flag, _, value = words.pop(0).partition("=")
        if flag == "--chown":
            owner = value
        elif flag == "--chmod":
            mode = value
        else:
            raise E.InvalidArgument(f"{where}: {flag} is not supported")
    if len(words) < 2:
        raise E.InvalidArgument(f"{where} needs a source and a destination")
    *sources, dest = words
    steps = []
    for src in sources:
        paths = _files_of(context, src)
        upload = Upload(_hash(context, src, dest, paths), paths)
        uploads.append(upload)
        # several sources go into a directory, as Docker's
        target = dest if len(sources) == 1 or dest.endswith("/") else dest + "/"
        steps.append({"type": "COPY", "args": [src, target, owner, mode], "filesHash": upload.files_hash})
    return steps
