"""libnftables waits on its netlink socket with select(): a socket at fd 1024 or above made glibc abort
the whole process (a long test session did; a server holding many sandboxes' fds would). The context's
socket must land below FD_SETSIZE however many files the process holds."""

from __future__ import annotations

import os
import resource

from sandlot.runtimes.nft import FD_SETSIZE, Nft


def test_a_context_made_with_more_than_1024_files_open_still_works():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 4096), max(hard, 4096)))
    held = []
    try:
        while not held or held[-1] < FD_SETSIZE + 64:
            held.append(os.open("/dev/null", os.O_RDONLY))
        nft = Nft()
        try:
            nft.run("list tables")  # aborted the process before
            nft.run("list tables")
        finally:
            nft.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
