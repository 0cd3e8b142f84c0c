"""Each sandbox's mount namespace is copied from a clean one, never from the host's.

A new mount namespace copies every mount of the one it is made from. The host's holds five mounts
per sandbox (its disk, run tmpfs, devpts, lower, overlay: namespace.py), so the namespace bwrap
made for the 2001st sandbox copied ~10,000 mounts and detached them again at its pivot: with 2000
sandboxes alive `unshare --mount true` took 53 ms, and creates ran at 2/s. Instead:

- the base namespace, made once per runtime: a private copy of the host's with the sandboxes'
  mounts (everything under the runtime's directories but the agent's code, which does not change
  while the server runs) detached;
- each sandbox process (a stem, or a child forked at a create) enters the base and unshares a
  namespace of its own from it while it is still host root: a copy of the host's few mounts;
- at a create, once the server has made the sandbox's mounts on the host as before, its run
  directory (the root overlay, devpts, volumes below it) is cloned (open_tree) and attached at the
  same path in the sandbox's namespace (move_mount), with its workspace if it has one, by a thread
  that enters that namespace for the purpose. bwrap, which copies this namespace in turn, sees
  there everything it binds.

The host's namespace keeps every mount where the server reads and removes them (kill, adoption
after a restart, disk use, snapshots): none of that changes. A sandbox's namespace, with its
clones, goes with its last process.

A killed sandbox's directories are removed in the base, where nothing is mounted in them: the
removal cannot go through a mount, whatever the host's namespace has there, without reading the
host's mount table first (hostfs.remove_tree: ~40 ms per read with 2000 sandboxes, two per kill).
A directory that is still a mount point on the host goes too, and the kernel detaches that mount
(Linux >= 3.18); what it mounted is not touched.

The base lives as long as the server: it holds the host's mounts as they were at its start (an
unmount on the host detaches, the filesystem stays busy until the server stops), and a host mount
made later is not in it (a template's host binds must exist when the server starts).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .. import syscalls
from ..hostfs import parse_mountinfo, remove_tree, rm_rf

REMOVERS = 4  # threads that remove killed sandboxes' directories


def own_namespace(base: int | None) -> None:
    """In a new sandbox process that is still host root (only syscalls): a mount namespace of its
    own, copied from the base (entered first if `base`, an fd of it, is given; a stem of the
    zygote is in it already)."""
    if base is not None:
        syscalls.setns(base, syscalls.CLONE_NEWNS)
    syscalls.unshare(syscalls.CLONE_NEWNS)


def _own_fs() -> None:
    # a thread that shares its process's root and cwd (CLONE_FS) may not change mount namespace
    syscalls.unshare(syscalls.CLONE_FS)


class MountNamespaces:
    """The base namespace and the thread that enters sandboxes' namespaces to attach their mounts."""

    def __init__(self, clear: Sequence[Path], keep: Sequence[Path]):
        # the server's main thread never leaves the host's namespace: the way back
        self._host = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sandlot-mountns", initializer=_own_fs)
        self._in_base = None
        try:
            self.base = self._thread.submit(self._make_base, [str(p) for p in clear],
                                            {str(p) for p in keep}).result()
        except BaseException:
            self.close()
            raise
        # several: a removal takes as long as the tree is big, and kills come in bursts
        self._in_base = ThreadPoolExecutor(REMOVERS, thread_name_prefix="sandlot-rm", initializer=self._enter_base)

    def _enter_base(self) -> None:
        _own_fs()
        syscalls.setns(self.base, syscalls.CLONE_NEWNS)

    def _make_base(self, clear: list[str], keep: set[str]) -> int:
        syscalls.unshare(syscalls.CLONE_NEWNS)
        try:
            # nothing mounted on the host later propagates into the base (hosts under systemd
            # mount / shared), nor from it
            syscalls.mount("none", "/", None, syscalls.MS_REC | syscalls.MS_PRIVATE)
            for _ in range(2):  # a second pass finds what a first could not take (none is known)
                found = self._sandboxes_mounts(clear, keep)
                for point in found:  # shallowest first: a detach takes the mounts below along
                    try:
                        syscalls.umount(point, lazy=True)
                    except OSError:
                        pass  # below one detached already
            if left := self._sandboxes_mounts(clear, keep):
                raise OSError(f"the base mount namespace still holds {left[0]}")
            return os.open("/proc/thread-self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        finally:
            syscalls.setns(self._host, syscalls.CLONE_NEWNS)

    @staticmethod
    def _sandboxes_mounts(clear: list[str], keep: set[str]) -> list[str]:
        with open("/proc/thread-self/mountinfo") as f:  # this thread's namespace, not the process's
            points = [m.point for m in parse_mountinfo(f.read())]
        return sorted({p for p in points if p not in keep and any(p.startswith(c + "/") for c in clear)},
                      key=len)

    def attach(self, pid: int, trees: Sequence[tuple[int, Path]]) -> None:
        """Attach each detached mount (open_tree's fd) at its path in the mount namespace of the
        process `pid`, privately: what is later mounted or unmounted on either side stays there."""
        ns = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        try:
            self._thread.submit(self._attach, ns, trees).result()
        finally:
            os.close(ns)

    def _attach(self, ns: int, trees: Sequence[tuple[int, Path]]) -> None:
        syscalls.setns(ns, syscalls.CLONE_NEWNS)
        try:
            for tree, target in trees:
                syscalls.move_mount(tree, str(target))
                syscalls.mount("none", str(target), None, syscalls.MS_REC | syscalls.MS_PRIVATE)
        finally:
            syscalls.setns(self._host, syscalls.CLONE_NEWNS)

    def remove_tree(self, path: Path) -> None:
        """rm -rf of a directory of a sandbox's, in the base namespace (above); OSError if anything
        remains. Once closed, where the host's mount table says nothing is mounted."""
        try:
            removal = self._in_base.submit(rm_rf, path)
        except RuntimeError:  # shut down
            remove_tree(path)
        else:
            removal.result()

    def close(self) -> None:
        if self._in_base is not None:
            self._in_base.shutdown()
        self._thread.shutdown()
        for fd in (self._host, getattr(self, "base", None)):
            if fd is not None:
                os.close(fd)
