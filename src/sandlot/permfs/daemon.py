"""The permission filesystem's process: mounts at ``--mount`` and serves FUSE requests and a control
socket (``--control``, root only) from one trio loop, until told to stop or SIGTERM. It outlives a
server that dies (the next one adopts it, as it adopts the sandboxes); a clean stop unmounts.

Control protocol: one JSON request per connection, one JSON line back (``{"error": message}`` when
it fails):

    {"op": "ping"}                  -> {"ok": true, "pid": N, "sandboxes": [ids]}
    {"op": "add", "sandbox", "root", "uid_base", "uid_count", "owner": [uid, gid], "rules", "report",
     "audit"}                       -> {"ok": true}: the workspace at <mount>/<sandbox>; its denied
                                    operations are reported to the server's socket "report"
                                    (workspace.py, reports.py)
    {"op": "rules", "sandbox", "rules"}  -> {"ok": true} once the kernel has dropped what it cached
    {"op": "reroot", "sandbox", "root"}  -> {"ok": true}: serve it from another directory (a fresh
                                    layer), the kernel's caches of it dropped
    {"op": "remove", "sandbox"}     -> {"ok": true}
    {"op": "stop"}                  -> {"ok": true}, then it unmounts and exits

Started by client.py as ``python -c BOOT ...``: BOOT makes ``sandlot`` an empty package first, so
the daemon loads only permfs/, permissions.py and syscalls.py, not the SDK.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal

import pyfuse3
import trio

from .fs import PermFS
from .workspace import Workspace

MAX_REQUEST = 16 * 1024 * 1024
DENIAL_TICK = 5.0  # seconds between checks that report the denials a workspace's window counted
log = logging.getLogger("sandlot.permfs")


def _forget_cached(inodes: list[int], entries: list[tuple[int, bytes]], attr_only: bool = True) -> None:
    """Make the kernel ask again (in a thread: an invalidation waits for requests in flight);
    ``attr_only`` False: file contents too."""
    for ino in inodes:
        try:
            pyfuse3.invalidate_inode(ino, attr_only=attr_only)
        except OSError:
            pass  # the kernel does not hold it
    for parent, name in entries:
        try:
            pyfuse3.invalidate_entry(parent, name)
        except OSError:
            pass


class Control:
    def __init__(self, fs: PermFS, mount: str):
        self.fs, self.mount = fs, mount

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            data = b""
            while b"\n" not in data and len(data) <= MAX_REQUEST:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    break
                data += chunk
            try:
                request = json.loads(data)
                reply = await self.dispatch(request)
            except Exception as e:  # one bad request must not take the filesystem down
                log.exception("control request failed")
                reply = {"error": "%s: %s" % (type(e).__name__, e)}
            await stream.send_all((json.dumps(reply) + "\n").encode())
            if reply.get("stopping"):
                pyfuse3.terminate()

    async def dispatch(self, req: dict) -> dict:
        op = req.get("op")
        if op == "ping":
            return {"ok": True, "pid": os.getpid(), "sandboxes": sorted(self.fs.workspaces)}
        if op == "add":
            ws = Workspace(req["sandbox"], req["root"], int(req["uid_base"]), int(req["uid_count"]),
                           tuple(req["owner"]), req["rules"], req.get("report"), bool(req.get("audit", True)))
            self.fs.add(ws)
            return {"ok": True}
        if op == "rules":
            inodes, entries = self.fs.set_rules(req["sandbox"], req["rules"])
            await trio.to_thread.run_sync(_forget_cached, inodes, entries)
            return {"ok": True}
        if op == "reroot":
            inodes, entries = self.fs.reroot(req["sandbox"], req["root"])
            await trio.to_thread.run_sync(_forget_cached, inodes, entries, False)
            return {"ok": True}
        if op == "remove":
            entries = self.fs.remove(req["sandbox"])
            await trio.to_thread.run_sync(_forget_cached, [], entries)
            return {"ok": True}
        if op == "stop":
            return {"ok": True, "stopping": True}
        return {"error": "unknown op %r" % (op,)}



async def _run(fs: PermFS, mount: str, control_path: str) -> None:
    sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_STREAM)
    try:
        os.unlink(control_path)
    except FileNotFoundError:
        pass
    await sock.bind(control_path)
    os.chmod(control_path, 0o600)
    sock.listen(64)
    control = Control(fs, mount)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, control.handle, [trio.SocketListener(sock)])

        async def on_signals():
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    pyfuse3.terminate()
                    return

        nursery.start_soon(on_signals)

        async def count_denials():
            while True:
                await trio.sleep(DENIAL_TICK)
                for ws in list(fs.workspaces.values()):
                    ws.tick()

        nursery.start_soon(count_denials)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="sandlot-permfs")
    ap.add_argument("--mount", required=True)
    ap.add_argument("--control", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fs = PermFS()
    options = set(pyfuse3.default_options)
    options.discard("default_permissions")  # every check is ours: rules, not owner and mode bits
    options |= {"allow_other", "fsname=sandlot-permfs", "subtype=sandlot", "nosuid", "nodev"}
    pyfuse3.init(fs, args.mount, options)
    try:
        trio.run(_run, fs, args.mount, args.control)
    finally:
        pyfuse3.close(unmount=True)
        for ws in list(fs.workspaces.values()):
            ws.close()
        try:
            os.unlink(args.control)
        except OSError:
            pass


if __name__ == "__main__":
    main()
