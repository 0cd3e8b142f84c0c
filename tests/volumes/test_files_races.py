"""VolumeFiles against a sandbox that changes the volume while the content API works in it: a
sandbox with the volume mounted swaps a symlink to a host file in and out of a name, as fast as
rename(2) goes. The host file is never touched, and the race is never a 500."""

from __future__ import annotations

import os
import stat
import threading
import time
import traceback
from pathlib import Path

from sandlot import _exceptions as E
from sandlot.volumes.files import VolumeFiles

RACE_S = 3.0


class Swapper:
    """Turns `root/name` (made by `make(path)`) into a symlink to `target` and back, again and
    again: moved aside, a link put in its place, the link removed, moved back."""

    def __init__(self, root: Path, name: str, target: Path, make):
        self.path, self.aside, self.target = root / name, root / "aside.tmp", target
        make(self.path)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self):
        steps = (lambda: os.rename(self.path, self.aside), lambda: os.symlink(self.target, self.path),
                 lambda: os.unlink(self.path), lambda: os.rename(self.aside, self.path))
        while not self.stop.is_set():
            for step in steps:
                try:
                    step()
                except OSError:
                    pass  # the content API made something there meanwhile

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_a_mode_change_never_follows_a_symlink_swapped_in(tmp_path):
    root, host = tmp_path / "vol", tmp_path / "host-file"
    root.mkdir()
    host.write_text("the host's")
    host.chmod(0o600)
    files = VolumeFiles(root)
    with Swapper(root, "f", host, lambda p: p.write_text("r")):
        deadline = time.monotonic() + RACE_S
        while time.monotonic() < deadline and stat.S_IMODE(host.stat().st_mode) == 0o600:
            try:
                files.update("f", None, None, 0o666)
            except (E.SandlotError, OSError):
                pass  # the name was a link or between two renames (what that answers: the next test)
    assert stat.S_IMODE(host.stat().st_mode) == 0o600


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_race_is_a_clear_error_and_leaks_no_fd(tmp_path):
    """Stat, list, chmod, mkdir and remove where a name turns from a directory into a link and back:
    each answers (an error of sandlot's: a 4xx, never a 500) and holds no fd after."""
    root, host = tmp_path / "vol", tmp_path / "host-dir"
    root.mkdir()
    host.mkdir(0o755)
    (host / "keep").write_text("the host's")
    files = VolumeFiles(root)
    before, answered, failures = _fds(), 0, []
    with Swapper(root, "d", host, lambda p: p.mkdir()):
        deadline = time.monotonic() + RACE_S
        while time.monotonic() < deadline:
            for op in (lambda: files.stat("d"), lambda: files.list("/", 2),
                       lambda: files.make_dir("d", 0, 0, 0o700, True), lambda: files.update("d", None, None, 0o700),
                       lambda: files.remove("d")):
                try:
                    op()
                    answered += 1
                except E.SandlotError:
                    pass
                except Exception as e:  # noqa: BLE001 - what a route would answer with a 500
                    failures.append("".join(traceback.format_exception(e)[-3:]))
    assert not failures, sorted(set(failures))
    assert answered and _fds() == before
    assert stat.S_IMODE(host.stat().st_mode) == 0o755 and (host / "keep").exists()
