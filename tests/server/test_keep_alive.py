"""Idle keep-alive connections outlive the clients' pools' idle time (the e2b SDK's transport keeps
idle connections 90 s): a server closing them after 5 s raced requests sent on them ("connection
reset by peer" in the SDK)."""

from __future__ import annotations

import http.client
import time
from urllib.parse import urlsplit


def test_an_idle_connection_is_still_served_after_a_pause(server):
    url = urlsplit(server.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("GET", "/_sandlot/health")
        first = conn.getresponse()
        first.read()
        assert first.status == 200 and not first.will_close
        sock = conn.sock
        time.sleep(6)  # past uvicorn's default keep-alive of 5 s
        conn.request("GET", "/_sandlot/health")
        again = conn.getresponse()
        again.read()
        assert again.status == 200
        assert conn.sock is sock  # the same connection: the server kept it open
    finally:
        conn.close()
