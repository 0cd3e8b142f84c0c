"""An HTTP/2 client run inside a sandbox (hyper-h2, copied in by the test: the base template has
none), for what curl does not show: trailers, requests for another :authority on one connection,
a stream reset halfway. Prints one JSON object.

    python3 h2_client.py HOST OTHER_AUTHORITY TAG

On one TLS connection to HOST:443 (the system trust store), in order: GET /trailers-TAG,
GET /other-TAG with :authority OTHER_AUTHORITY, GET /bytes/20000000 reset (CANCEL) after its
first MiB, then GET /bytes/3000000 read whole.
"""

import hashlib
import json
import socket
import ssl
import sys

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import DataReceived, ResponseReceived, StreamEnded, StreamReset, TrailersReceived


def main() -> None:
    host, other, tag = sys.argv[1:4]
    ctx = ssl.create_default_context()
    ctx.set_alpn_protocols(["h2"])
    sock = ctx.wrap_socket(socket.create_connection((host, 443), timeout=20), server_hostname=host)
    conn = H2Connection(H2Configuration(client_side=True, header_encoding="utf-8"))
    conn.initiate_connection()
    out = {"alpn": sock.selected_alpn_protocol()}

    def request(path: str, authority: str, cancel_after: int | None = None) -> dict:
        stream = conn.get_next_available_stream_id()
        conn.send_headers(stream, [(":method", "GET"), (":scheme", "https"), (":authority", authority),
                                   (":path", path), ("authorization", "from-the-sandbox")], end_stream=True)
        sock.sendall(conn.data_to_send())
        got = {"headers": [], "trailers": [], "len": 0, "sha256": hashlib.sha256(), "ended": False}
        while not got["ended"]:
            data = sock.recv(65536)
            if not data:
                raise SystemExit("connection closed")
            for ev in conn.receive_data(data):
                if getattr(ev, "stream_id", None) != stream:
                    continue
                if isinstance(ev, ResponseReceived):
                    got["headers"] = ev.headers
                elif isinstance(ev, DataReceived):
                    got["len"] += len(ev.data)
                    got["sha256"].update(ev.data)
                    conn.acknowledge_received_data(ev.flow_controlled_length, stream)
                    if cancel_after is not None and got["len"] >= cancel_after:
                        conn.reset_stream(stream, ErrorCodes.CANCEL)
                        got["ended"] = "reset"
                elif isinstance(ev, TrailersReceived):
                    got["trailers"] = ev.headers
                elif isinstance(ev, (StreamEnded, StreamReset)):
                    got["ended"] = True
            sock.sendall(conn.data_to_send())
        got["sha256"] = got["sha256"].hexdigest()
        return got

    out["trailers"] = request(f"/trailers-{tag}", host)
    out["other"] = request(f"/other-{tag}", other)
    out["reset"] = request("/bytes/20000000", host, cancel_after=1 << 20)
    out["after_reset"] = request("/bytes/3000000", host)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
