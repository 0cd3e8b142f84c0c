"""SDK methods added for the tool layer: files.edit/glob/search/tree, sandbox.set_envs and reset."""

from __future__ import annotations

import pytest

from sandlot import AsyncSandbox, FileNotFound, InvalidArgument


def test_edit_is_exact_unique_and_atomic(sandbox):
    sandbox.files.write("app.py", "DEBUG = True\nNAME = 'x'\nNAME2 = 'x'\n")
    diff = sandbox.files.edit("app.py", [("DEBUG = True", "DEBUG = False")])
    assert "-DEBUG = True\n+DEBUG = False\n" in diff and diff.startswith("--- a/app.py\n+++ b/app.py\n")
    with pytest.raises(InvalidArgument, match="occurs 2 times"):
        sandbox.files.edit("app.py", [{"old_text": "DEBUG", "new_text": "D"}, {"old_text": "'x'", "new_text": "'y'"}])
    assert sandbox.files.read("app.py").startswith("DEBUG = False")  # the first edit was not written either
    assert sandbox.files.edit("app.py", [("NAME =", "N =")], dry_run=True)
    assert "NAME = 'x'" in sandbox.files.read("app.py")
    with pytest.raises(FileNotFound):
        sandbox.files.edit("missing.py", [("a", "b")])


def test_glob_search_tree(sandbox):
    sandbox.files.write_files([("p/a.py", "import os\n"), ("p/sub/b.py", "print('Hello')\n"),
                               ("p/sub/c.txt", "hello there\n"), ("p/node_modules/x.py", "hello\n"),
                               ("p/bin.dat", b"hello\0binary")])
    sandbox.commands.run("ln -s / p/root-link")
    found = sandbox.files.glob("*.py", "p", exclude=["node_modules"])
    assert [m.path for m in found.entries] == ["/home/user/p/a.py", "/home/user/p/sub/b.py"]
    assert [m.path for m in sandbox.files.glob("sub/*", "p").entries] == ["/home/user/p/sub/b.py",
                                                                         "/home/user/p/sub/c.txt"]
    hits = sandbox.files.search("hello", "p", ignore_case=True, exclude=["node_modules"])
    assert [(m.path, m.line, m.text) for m in hits.entries] == [("/home/user/p/sub/b.py", 1, "print('Hello')"),
                                                                ("/home/user/p/sub/c.txt", 1, "hello there")]
    assert [m.path for m in sandbox.files.search("hello", "p", glob="*.txt").entries] == ["/home/user/p/sub/c.txt"]
    limited = sandbox.files.search("hello", "p", ignore_case=True, limit=1)
    assert len(limited.entries) == 1 and limited.truncated
    tree = sandbox.files.tree("p", depth=2, exclude=["node_modules"])
    assert [(n.name, n.type) for n in tree.entries] == [("a.py", "file"), ("bin.dat", "file"),
                                                        ("root-link", "symlink"), ("sub", "dir")]
    assert [n.name for n in tree.entries[3].children] == ["b.py", "c.txt"]  # the link was not followed
    with pytest.raises(InvalidArgument, match="bad regular expression"):
        sandbox.files.search("(", "p")
    with pytest.raises(FileNotFound):
        sandbox.files.glob("*", "nowhere")


async def test_set_envs_and_reset_async(conn):
    sandbox = await AsyncSandbox.create(metadata={"purpose": "reset-test"}, envs={"FROM_CREATE": "1"}, **conn)
    try:
        assert await sandbox.set_envs({"A": "one two", "B": "x'y"}) == {"A": "one two", "B": "x'y"}
        assert await sandbox.set_envs({"A": None}) == {"B": "x'y"}
        r = await sandbox.commands.run('echo "$A|$B|$FROM_CREATE"')
        assert r.stdout == "|x'y|1\n"
        with pytest.raises(InvalidArgument):
            await sandbox.set_envs({"NOT-A-NAME": "v"})
        await sandbox.files.write("keep.txt", "gone after reset")
        old = sandbox.sandbox_id
        await sandbox.reset()
        assert sandbox.sandbox_id != old
        assert not await sandbox.files.exists("keep.txt")
        assert (await sandbox.commands.run('echo "$B|$FROM_CREATE"')).stdout == "|1\n"
        assert (await sandbox.get_info()).metadata == {"purpose": "reset-test"}
        assert not await AsyncSandbox.kill(old, **conn)  # the old one is gone
    finally:
        await sandbox.kill()
        await sandbox.close()
