"""The Dockerfile subset as a template build (client/_dockerfile.py): what each instruction
becomes in E2B's build request, and what is refused. No server: the build itself is tested in
tests/cli/test_cli_template_build.py."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from sandlot import InvalidArgument
from sandlot.client._dockerfile import parse


@pytest.fixture
def context(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "b.txt").write_text("b")
    return tmp_path


def test_instructions_become_steps(context):
    build = parse("FROM base\n"
                  "# comment\n"
                  "ENV A=1 B=\"two words\"\n"
                  "ENV C three four\n"
                  "RUN echo hi && \\\n    echo there\n"
                  'RUN ["sh", "-c", "echo exec"]\n'
                  "COPY --chown=user:user --chmod=0644 a.txt dir /dest/\n"
                  "EXPOSE 80\n"
                  "CMD [\"python3\", \"-m\", \"http.server\"]\n", context)
    spec = build.spec
    assert spec["fromImage"] == "base" and spec["startCmd"] == "python3 -m http.server"
    kinds = [(s["type"], s["args"]) for s in spec["steps"]]
    assert kinds[:2] == [("USER", ["root"]), ("WORKDIR", ["/"])]  # Docker's defaults
    assert kinds[-2:] == [("USER", ["user"]), ("WORKDIR", ["/home/user"])]  # E2B's, when not set
    assert ("ENV", ["A", "1", "B", "two words"]) in kinds and ("ENV", ["C", "three four"]) in kinds
    assert ("RUN", ["echo hi &&  echo there"]) in kinds and ("RUN", ["sh -c 'echo exec'"]) in kinds
    copies = [s for s in spec["steps"] if s["type"] == "COPY"]
    assert [c["args"] for c in copies] == [["a.txt", "/dest/", "user:user", "0644"],
                                           ["dir", "/dest/", "user:user", "0644"]]
    assert [u.paths for u in build.uploads] == [["a.txt"], ["dir", "dir/b.txt"]]
    assert all(c["filesHash"] == u.files_hash for c, u in zip(copies, build.uploads))
    with build.uploads[1].open(context) as f:  # what is uploaded: a gzip tar relative to the context
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(f.read()))) as tar:
            assert tar.getnames() == ["dir", "dir/b.txt"]


def test_a_files_hash_changes_with_the_content(context):
    first = parse("FROM base\nCOPY a.txt /x\n", context).uploads[0].files_hash
    assert parse("FROM base\nCOPY a.txt /x\n", context).uploads[0].files_hash == first
    (context / "a.txt").write_text("changed")
    assert parse("FROM base\nCOPY a.txt /x\n", context).uploads[0].files_hash != first


def test_user_and_workdir_set_are_kept(context):
    steps = parse("FROM base\nWORKDIR /app\nUSER nobody\n", context).spec["steps"]
    assert [(s["type"], s["args"]) for s in steps] == [("USER", ["root"]), ("WORKDIR", ["/"]),
                                                       ("WORKDIR", ["/app"]), ("USER", ["nobody"])]


def test_a_local_archive_is_uploaded(context):
    (context / "image.tar").write_bytes(b"archive")
    build = parse("FROM ./image.tar\n", context)
    assert build.spec["fromImage"] == f"upload:{build.uploads[0].files_hash}"
    with build.uploads[0].open(context) as f:
        assert f.read() == b"archive"
    assert parse("FROM docker-archive:image.tar\n", context).spec["fromImage"] == "docker-archive:image.tar"


@pytest.mark.parametrize(("text", "message"), [
    ("", "no FROM"),
    ("RUN true\n", "must start with FROM"),
    ("FROM a\nFROM b\n", "multi-stage"),
    ("FROM a AS b\n", "no stages"),
    ("FROM a\nADD x y\n", "ADD is not supported"),
    ("FROM a\nARG X\n", "ARG is not supported"),
    ("FROM a\nCOPY a.txt\n", "a source and a destination"),
    ("FROM a\nCOPY --from=x a.txt /y\n", "--from is not supported"),
    ("FROM a\nCOPY nothing* /y\n", "nothing matches"),
    ("FROM a\nCOPY ../ /y\n", "outside the build context"),
    ("FROM a\nENV\n", "needs a name"),
])
def test_refused(context, text, message):
    with pytest.raises(InvalidArgument, match=message):
        parse(text, context)
