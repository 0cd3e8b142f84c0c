"""libnftables waits on its netlink socket with select(): a socket at fd 1024 or above made glibc abort
the whole process (a long test session did; a server holding many sandboxes' fds would). The context's
socket must land below FD_SETSIZE however many files the process holds."""

from __future__ import annotations

import contextlib
import os
import resource

from sandlot.runtimes import nft
from sandlot.runtimes.nft import FD_SETSIZE, Nft


@contextlib.contextmanager
def over_fd_setsize():
    """Every fd up to past FD_SETSIZE taken (the list of them, which the caller may add to; all are
    closed and the fd limit restored on the way out)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    held = []
    try:
        while not held or held[-1] < FD_SETSIZE + 64:
            held.append(os.open("/dev/null", os.O_RDONLY))
        yield held
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_context_made_with_more_than_1024_files_open_still_works():
    with over_fd_setsize():
        tables = Nft()
        try:
            tables.run("list tables")  # aborted the process before
            tables.run("list tables")
        finally:
            tables.close()


def test_a_spare_taken_by_another_thread_is_not_fatal():
    """Another thread may open a file between the spare's close and the context's socket: the socket then
    lands above 1023, and the context is made again with the next spare."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    real = Nft()  # the loaded library, its argument types set
    lib = real._lib
    stolen = []

    class Thief:  # takes the freed fd first, the first time only, as a racing thread would
        def __getattr__(self, name):
            return getattr(lib, name)

        def nft_ctx_new(self, flags):
            if not stolen:
                stolen.append(os.open("/dev/null", os.O_RDONLY))
            return lib.nft_ctx_new(flags)

    try:
        with over_fd_setsize():
            ctx = nft._new_context(Thief())
            assert ctx and stolen and stolen[0] < FD_SETSIZE
            assert all(fd < FD_SETSIZE for fd in nft._netfilter_sockets())
            lib.nft_ctx_free(ctx)
    finally:
        for fd in stolen:
            os.close(fd)
        real.close()


def test_a_closed_context_gives_its_low_fd_back():
    """In a process holding over 1024 files, each context's socket takes a spare; closing the context
    must make that fd a spare again before some other open takes it, or the spares run out."""
    with over_fd_setsize() as held:
        for _ in range(nft._SPARES * 2):
            tables = Nft()
            tables.run("list tables")
            tables.close()
            held.append(os.open("/dev/null", os.O_RDONLY))  # the server opens files all the time
        assert len(nft._spares) == nft._SPARES
