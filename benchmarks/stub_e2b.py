"""A stand-in for the E2B API that answers at once: the client's own floor in scale.py's bursts
and exec loops.

It answers `POST /sandboxes` with a new sandbox and `process.Process/Start` with a command that
printed "hi" and exited 0; anything else with 204. No sandbox exists: what work against it costs
is the official SDK's own, with the server's near zero (another process).

    with StubE2B() as stub:
        sbx = await AsyncSandbox.create(**stub.options)
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import socket
import struct
import subprocess
import sys
import time


def _envelope(flags: int, message: dict) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">BI", flags, len(body)) + body


# Connect server-streaming, JSON: start, stdout "hi\n", end, then the end-of-stream envelope (flag 2)
COMMAND_EVENTS = b"".join([
    _envelope(0, {"event": {"start": {"pid": 7}}}),
    _envelope(0, {"event": {"data": {"stdout": base64.b64encode(b"hi\n").decode()}}}),
    _envelope(0, {"event": {"end": {"exitCode": 0, "exited": True, "status": "exit status 0"}}}),
    _envelope(2, {}),
])


def app():
    ids = itertools.count()

    async def answer(scope, receive, send):
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        while (await receive()).get("more_body"):
            pass
        path, status, headers, body = scope["path"], 204, [], b""
        if path.endswith("/process.Process/Start"):
            status, headers, body = 200, [(b"content-type", b"application/connect+json")], COMMAND_EVENTS
        elif scope["method"] == "POST" and path.rstrip("/").endswith("/sandboxes"):
            status, headers = 201, [(b"content-type", b"application/json")]
            body = json.dumps({"templateID": "base", "sandboxID": f"stub{next(ids):06d}", "clientID": "stub",
                               "alias": "base", "envdVersion": "0.6.4", "envdAccessToken": None,
                               "trafficAccessToken": None, "domain": None}).encode()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return answer


class StubE2B:
    """The stub in a process of its own, on a loopback port it listens on from the start."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=1024)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> StubE2B:
        fd = self.sock.fileno()
        self.proc = subprocess.Popen([sys.executable, __file__, str(fd)], pass_fds=[fd])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # answering once uvicorn serves the socket
            try:
                with socket.create_connection(self.sock.getsockname(), timeout=1) as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: stub\r\nConnection: close\r\n\r\n")
                    if c.recv(64).startswith(b"HTTP/1.1 204"):
                        return self
            except OSError:
                pass
            time.sleep(0.1)
        self.__exit__()
        raise RuntimeError("the stub E2B server did not answer")

    @property
    def options(self) -> dict[str, str]:
        """The SDK's create options that send it here (any key will do)."""
        return {"api_url": self.url, "sandbox_url": self.url, "api_key": "e2b_stub"}

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
        self.sock.close()


if __name__ == "__main__":
    import uvicorn

    os.set_inheritable(int(sys.argv[1]), True)
    uvicorn.run(app(), fd=int(sys.argv[1]), log_level="warning", http="httptools", loop="asyncio")
