"""Contexts run as E2B's do: the kernels run as root (a context may work in /root), start in the
default user's home with HOME set to it, and list_code_contexts gives back language and cwd as
the contexts were created (the language normalised, as E2B's server does)."""

from __future__ import annotations

import pytest
from interp_support import ok, stdout
from support import unique

WHO = {
    "python": ("import os; os.getuid()", "0"),
    "bash": ("id -u", "0"),
    "javascript": ("process.getuid()", "0"),
    "r": ("Sys.info()[['effective_user']]", '[1] "root"'),
    "java": ('System.getProperty("user.name")', "root"),
}


def said(execution) -> str:
    execution = ok(execution)
    return (execution.results[0].text if execution.results else stdout(execution)).strip()


@pytest.mark.parametrize("language", list(WHO))
def test_kernels_run_as_root(sandbox, language):
    code, expected = WHO[language]
    assert said(sandbox.run_code(code, language=language, timeout=120)) == expected


def test_a_context_in_root_s_home(sandbox):
    """E2B's kernels run as root: a context in /root works, and writes there."""
    context = sandbox.create_code_context(cwd="/root")
    try:
        assert context.cwd == "/root"
        assert ok(sandbox.run_code("import os; os.getcwd()", context=context)).text == "/root"
        name = unique("root-file")
        ok(sandbox.run_code(f"open({name!r}, 'w').write('by root')", context=context))
        assert sandbox.commands.run(f"cat /root/{name}", user="root").stdout == "by root"
        done = sandbox.commands.run(f"stat -c %U /root/{name}", user="root")
        assert done.stdout.strip() == "root"
    finally:
        sandbox.remove_code_context(context)


def test_home_and_default_cwd_stay_the_default_user_s(sandbox, ctx):
    assert ok(sandbox.run_code("import os; (os.getcwd(), os.environ['HOME'])", context=ctx)).text \
        == "('/home/user', '/home/user')"
    assert said(sandbox.run_code("echo $HOME; pwd", language="bash")) == "/home/user\n/home/user"
    # the user's own tools still own their dot files: the kernels' IPython profile is root's
    assert sandbox.commands.run("test ! -e /home/user/.ipython || test -O /home/user/.ipython").exit_code == 0


@pytest.mark.parametrize(("asked", "listed"), [
    ("python", "python"), ("js", "javascript"), ("ts", "typescript"), ("R", "r"), ("java", "java"), ("bash", "bash"),
])
def test_list_gives_language_and_cwd_as_created(sandbox, asked, listed):
    context = sandbox.create_code_context(language=asked, cwd="/root", request_timeout=120)
    try:
        assert (context.language, context.cwd) == (listed, "/root")
        mine = [c for c in sandbox.list_code_contexts() if c.id == context.id]
        assert [(c.language, c.cwd) for c in mine] == [(listed, "/root")]
    finally:
        sandbox.remove_code_context(context)
