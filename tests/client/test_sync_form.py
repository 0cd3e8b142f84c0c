"""The blocking API is generated from the async one (scripts/gen-sync.py) and runs it on a private
loop (client/_loop.py). No server needed: the generator, the generated surface, and the loop."""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import pydoc
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sandlot
from sandlot.client import _loop
from sandlot.client import _sync as generated

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "gen-sync.py"
BLOCKING = [getattr(generated, name) for name in generated.__all__]


def test_generated_code_is_current():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, f"client/_sync/ drifted from the async source:\n{done.stdout}{done.stderr}"


def test_check_fails_on_drift(tmp_path, monkeypatch):
    # the check above must be able to fail: a copy of client/ whose async source gained a method
    client = tmp_path / "client"
    shutil.copytree(Path(sandlot.__file__).parent / "client", client)
    spec = importlib.util.spec_from_file_location("gen_sync", SCRIPT)
    gen = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "gen_sync", gen)  # dataclasses look their module up
    spec.loader.exec_module(gen)
    monkeypatch.setattr(gen, "CLIENT", client)
    monkeypatch.setattr(gen, "OUT", client / "_sync")
    monkeypatch.setattr(sys, "argv", ["gen-sync.py", "--check"])
    assert gen.main() == 0
    source = client / "_pty.py"
    source.write_text(source.read_text() + '''
    async def clear(self, pid: int) -> AsyncCommandHandle:
        """Clear the screen."""
''')
    assert gen.main() == 1
    monkeypatch.setattr(sys, "argv", ["gen-sync.py"])
    assert gen.main() == 0
    text = (client / "_sync" / "pty.py").read_text()
    assert "def clear(self, pid: int) -> CommandHandle:" in text
    assert "return CommandHandle._wrap(_loop.run(self._impl.clear(pid=pid)))" in text


def test_help_shows_the_blocking_api():
    page = pydoc.render_doc(sandlot.Sandbox.create, renderer=pydoc.plaintext)
    assert "-> 'Sandbox'" in page and "Async" not in page
    assert inspect.signature(sandlot.Sandbox.commands.fget).return_annotation is generated.Commands
    run = pydoc.render_doc(generated.Commands.run, renderer=pydoc.plaintext)
    assert "-> 'CommandResult | CommandHandle'" in run


@pytest.mark.parametrize("cls", BLOCKING, ids=lambda c: c.__name__)
def test_docstrings_speak_the_blocking_form(cls):
    docs = [cls.__doc__] + [getattr(cls, n).__doc__ or "" for n in dir(cls) if not n.startswith("_")]
    for doc in docs:
        assert "await " not in doc and "async " not in doc and "Async" not in doc, doc


def test_py_typed_is_shipped():
    assert (Path(sandlot.__file__).parent / "py.typed").exists()


# --- the loop the blocking API runs on ---

def test_results_and_exceptions_cross_the_loop():
    async def double(n):
        await asyncio.sleep(0)
        return 2 * n

    async def fail():
        raise KeyError("boom")

    assert _loop.run(double(21)) == 42
    with pytest.raises(KeyError, match="boom"):
        _loop.run(fail())


def test_a_blocking_call_from_a_callback_raises_instead_of_deadlocking():
    async def calls_back():
        _loop.run(asyncio.sleep(0))  # what a blocking call inside an on_stdout callback does

    with pytest.raises(RuntimeError, match="callback"):
        _loop.run(calls_back())


def test_calls_from_several_threads_share_the_loop():
    async def where():
        await asyncio.sleep(0.01)
        return threading.current_thread().name

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(_loop.run(where()))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["sandlot-sync"] * 8


def test_sync_iterator_iterates_and_closes():
    closed = []

    async def count():
        try:
            for i in range(100):
                yield i
        finally:
            closed.append(True)

    assert list(_loop.SyncIterator(count())) == list(range(100))
    with _loop.SyncIterator(count()) as numbers:
        assert next(numbers) == 0
    assert closed == [True, True]


AT_EXIT = """
import _thread, asyncio, sys, time
from sandlot.client import _loop

async def reader():  # a background command's reader, still waiting for output
    try:
        await asyncio.Event().wait()
    finally:
        open(sys.argv[1] + ".reader", "w").write("closed")

async def start():
    asyncio.get_running_loop().create_task(reader())

def late():  # pyqwest's tokio thread, answering a read in Python code as the program ends
    time.sleep(0.2)
    open(sys.argv[1] + ".thread", "w").write("left")

_loop.run(start())
_thread.start_new_thread(late, ())
"""


def test_the_program_ends_only_after_the_loop_and_foreign_threads(tmp_path):
    # a thread Python did not start that is still in Python code when the interpreter finalizes is
    # ended with pthread_exit, and unwinding through Rust's frames aborts: `sandlot exec` died with
    # SIGABRT in ~4 % of runs before the exit hook waited for such threads
    done = subprocess.run([sys.executable, "-c", AT_EXIT, str(tmp_path / "mark")], capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "mark.reader").read_text() == "closed"  # the loop's tasks were ended
    assert (tmp_path / "mark.thread").read_text() == "left"


def test_blocking_objects_come_from_the_api():
    with pytest.raises(TypeError, match="come from the API"):
        sandlot.Sandbox()
