"""nftables through libnftables, in process.

The `nft` binary costs ~4.3 ms per call here (a process start), the library ~0.15 ms per
transaction: a create, a claim and every DNS pin make one. Debian's python3-nftables is the same
thin ctypes binding over this library but is not on PyPI, so these few calls are bound here. The
library ships with the `nftables` package (scripts/install-system-deps.sh).

Each `run()` is one nftables transaction: all of its commands apply, or none.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

from .. import _exceptions as E


# libnftables talks to the kernel through a netlink socket it opens with its context and waits on
# with select(): past fd 1023 glibc aborts the whole process ("buffer overflow detected"), which a
# server with many sandboxes (or a long test session) reaches. A few low fds are held from import; one
# is given up right before each context is made so that its socket lands there. Another thread may
# take the freed fd first (the server opens files in many threads): then the context is made again
# with the next spare, and refused cleanly when none is left. A context's close gives its fd back as a
# spare at once: in a process that holds over 1024 files, the next open anywhere would take it.
FD_SETSIZE = 1024
_SPARES = 4
_spares = [os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC) for _ in range(_SPARES)]
_spare_lock = threading.Lock()


def _netfilter_sockets() -> set[int]:
    """This process's fds that are nftables netlink sockets (NETLINK_NETFILTER, protocol 12)."""
    with open("/proc/self/net/netlink") as f:
        inodes = {f"socket:[{cols[-1]}]" for cols in map(str.split, list(f)[1:]) if cols[1] == "12"}
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") in inodes:
                found.add(int(name))
        except OSError:
            pass
    return found


def _top_up() -> None:
    while len(_spares) < _SPARES:
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        if fd >= FD_SETSIZE:
            os.close(fd)
            return
        _spares.append(fd)


def _new_context(lib) -> int:
    """nft_ctx_new with its netlink socket below FD_SETSIZE."""
    with _spare_lock:
        _top_up()  # fds freed since the last context may be low again
        try:
            while _spares:
                before = _netfilter_sockets()
                os.close(_spares.pop())
                ctx = lib.nft_ctx_new(0)
                if not ctx or all(fd < FD_SETSIZE for fd in _netfilter_sockets() - before):
                    return ctx
                lib.nft_ctx_free(ctx)
        finally:
            _top_up()
        raise E.RuntimeFailure(f"nftables needs a file descriptor below {FD_SETSIZE}: this process holds "
                               "too many open files")


class Nft:
    """One libnftables context (not thread-safe in C: calls are serialised here)."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name, use_errno=True)
        except OSError:
            raise E.Unsupported("sandbox networking needs nftables (apt install nftables)") from None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, fn).restype = ctypes.c_char_p
            getattr(lib, fn).argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        self._lib = lib
        self._ctx = _new_context(lib)
        if not self._ctx:
            raise E.RuntimeFailure("could not make an nftables context")
        lib.nft_ctx_buffer_output(self._ctx)
        lib.nft_ctx_buffer_error(self._ctx)
        self._lock = threading.Lock()

    def run(self, commands: str, json_output: bool = False) -> str:
        """Run commands (nft syntax, one per line) as one transaction; return their output.
        Raises RuntimeFailure with nft's message if any fails (then none applied)."""
        with self._lock:
            if not self._ctx:
                raise E.RuntimeFailure("nftables context already closed")
            self._lib.nft_ctx_output_set_flags(self._ctx, 1 << 4 if json_output else 0)  # NFT_CTX_OUTPUT_JSON
            rc = self._lib.nft_run_cmd_from_buffer(self._ctx, commands.encode())
            out = (self._lib.nft_ctx_get_output_buffer(self._ctx) or b"").decode(errors="replace")
            err = (self._lib.nft_ctx_get_error_buffer(self._ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise E.RuntimeFailure(f"nftables refused the rules: {err.strip()[-800:]}")
        return out

    def close(self) -> None:
        with self._lock:
            if self._ctx:
                with _spare_lock:  # the socket's low fd becomes a spare again, before another open takes it
                    self._lib.nft_ctx_free(self._ctx)
                    _top_up()
                self._ctx = None
