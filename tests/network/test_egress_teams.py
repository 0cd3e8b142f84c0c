"""The host's shared egress services (the resolver, runtimes/dns.py; the egress proxy,
runtimes/egress_proxy.py) between teams: what one team's sandboxes hold together is bounded
(runtimes/budgets.py), so a team running many sandboxes cannot take what another team's need.

Two teams of one real server, each with its own key (made with the `sandlot` CLI, as an operator
would). The server's team share is lowered (SANDLOT_EGRESS_TEAM_SHARE=3/32) so that a few sandboxes
fill it: 24 of the resolver's 256 questions in flight and 256 TCP connections (a sandbox holds 16 of
those alone), 96 of the proxy's 1024 connections (a sandbox 256 alone). Sandboxes come from the
pool (their team given when claimed) and from cold creates (given with the create) alike."""

from __future__ import annotations

import time
import uuid

import pytest
from e2b.sandbox.network import ALL_TRAFFIC
from network_support import DNS_FLOOD, network, sh

from support import checked_server, team_key

SHARE = 3 / 32
RULES = {"allowed.test": [{"transform": {"headers": {"Authorization": f"Bearer {uuid.uuid4().hex}"}}}]}

# Opens argv[3] connections to argv[2] (port 53, or 80 for "http"), asks a question on each (a DNS
# query for allowed.test over TCP, or an HTTP GET), prints how many were answered, then holds those
# until /tmp/go exists (asking again every 2 s on DNS ones: the resolver closes a connection idle 10 s);
# closes them all and says so in /tmp/released
_HOLD = """
import os, socket, struct, sys, time
mode, host, n = sys.argv[1], socket.gethostbyname(sys.argv[2]), int(sys.argv[3])
name = b"".join(bytes([len(p)]) + p for p in (b"allowed", b"test")) + b"\\0"

def ask(s):
    try:
        if mode == "dns":
            query = os.urandom(2) + b"\\1\\0\\0\\1\\0\\0\\0\\0\\0\\0" + name + b"\\0\\1\\0\\1"
            s.sendall(struct.pack("!H", len(query)) + query)
            return len(s.recv(4096)) > 2
        s.sendall(b"GET /held HTTP/1.1\\r\\nHost: allowed.test\\r\\n\\r\\n")
        got = b""
        while not (b"\\r\\n\\r\\nworld" in got and got.endswith(b"\\n")):
            chunk = s.recv(65536)
            if not chunk:
                return False
            got += chunk
        return True
    except OSError:
        return False

opened = [socket.create_connection((host, 53 if mode == "dns" else 80), timeout=3) for _ in range(n)]
held = [s for s in opened if ask(s)]
print(len(held), flush=True)
deadline = time.monotonic() + 60
while not os.path.exists("/tmp/go") and time.monotonic() < deadline:
    time.sleep(2)
    if mode == "dns":
        held = [s for s in held if ask(s)]
for s in opened:
    s.close()
open("/tmp/released", "w").close()
"""

# Asks argv[2] UDP questions for allowed.test of argv[1]:53, one at a time, each waited for argv[3]
# seconds (a refused question is dropped at once: its wait says nothing); prints how many were answered
_ASK = """
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(float(sys.argv[3]))
name = b"".join(bytes([len(p)]) + p for p in (b"allowed", b"test")) + b"\\0"
answered = 0
for _ in range(int(sys.argv[2])):
    qid = os.urandom(2)
    s.sendto(qid + b"\\1\\0\\0\\1\\0\\0\\0\\0\\0\\0" + name + b"\\0\\1\\0\\1", (sys.argv[1], 53))
    try:
        while (got := s.recv(4096))[:2] != qid:
            pass
        answered += 1
    except OSError:
        pass
print(answered)
"""


@pytest.fixture(scope="module")
def server(world):
    with checked_server(extra_env={"SANDLOT_EGRESS_TEAM_SHARE": str(SHARE), "SANDLOT_POOL_TEMPLATES": "base"}) as srv:
        yield srv


@pytest.fixture(scope="module")
def teams(server):
    """The keys of two teams, A and B."""
    return team_key(server)[2], team_key(server)[2]


def _gateway(sbx) -> str:
    return sh(sbx, "awk '/^nameserver/ {print $2}' /etc/resolv.conf")[1].strip()


def _hold(sbx, mode: str, host: str, n: int) -> int:
    """Start holding `n` connections in the sandbox (_HOLD): how many were answered."""
    sh(sbx, "rm -f /tmp/go /tmp/held /tmp/released")
    sbx.commands.run(f"python3 /tmp/hold.py {mode} {host} {n} > /tmp/held 2>&1", background=True)
    deadline = time.monotonic() + 30
    while not (held := sh(sbx, "cat /tmp/held")[1].strip()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return int(held)


def _release(*sandboxes) -> None:
    """Let the sandboxes' held connections go, and wait until they have."""
    for sbx in sandboxes:
        sh(sbx, "touch /tmp/go")
    for sbx in sandboxes:
        deadline = time.monotonic() + 10
        while sh(sbx, "test -e /tmp/released")[0] != 0 and time.monotonic() < deadline:
            time.sleep(0.2)


def _holds_again(sbx, mode: str, host: str, n: int) -> bool:
    """Whether the sandbox gets `n` connections held again (within 10 s: the server's side of the
    ones let go ends a moment after the sandbox's)."""
    deadline = time.monotonic() + 10
    while True:
        held = _hold(sbx, mode, host, n)
        _release(sbx)
        if held == n or time.monotonic() > deadline:
            return held == n
        time.sleep(0.5)


def _sandboxes(make_sandbox, keys, script: str, **net):
    """Two sandboxes of team A and one of team B, with `script` at /tmp/hold.py."""
    made = [make_sandbox(api_key=key, network=net) for key in (keys[0], keys[0], keys[1])]
    for sbx in made:
        sbx.files.write("/tmp/hold.py", script)
    return made


def test_one_team_holds_at_most_its_share_of_the_resolvers_connections(teams, make_sandbox):
    """TCP to port 53 holds a file of the server's process each: a team's sandboxes together get
    their share (24), each at most its own 16; another team's sandbox still gets its 16. What a
    team held is its again once let go."""
    a1, a2, b = _sandboxes(make_sandbox, teams, _HOLD, **network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC]))
    try:
        assert _hold(a1, "dns", _gateway(a1), 20) == 16  # its own bound
        assert _hold(a2, "dns", _gateway(a2), 20) == 8  # the rest of its team's 24
        assert _hold(b, "dns", _gateway(b), 20) == 16  # another team's: its own bound only
    finally:
        _release(a1, a2, b)
    assert _holds_again(a2, "dns", _gateway(a2), 16)


def test_one_teams_slow_questions_leave_other_teams_answered(teams, make_sandbox):
    """A sandbox asking for names its upstream never answers fills its team's share of the
    resolver's questions in flight (24, less than its own 32): its team's other sandboxes wait
    for a slot, another team's sandbox is answered as ever."""
    key_a, key_b = teams
    slow = make_sandbox(api_key=key_a, allow_internet_access=True, network={"dns_servers": ["198.18.0.99"]})
    slow.files.write("/tmp/flood.py", DNS_FLOOD)
    a2, b = (make_sandbox(api_key=key, network=network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC]))
             for key in (key_a, key_b))
    for sbx in (a2, b):
        sbx.files.write("/tmp/ask.py", _ASK)
    assert sh(b, f"python3 /tmp/ask.py {_gateway(b)} 10 3")[1].strip() == "10"  # before the flood
    flood = slow.commands.run(f"python3 /tmp/flood.py {_gateway(slow)} 500 10", background=True)
    time.sleep(1)
    refused = int(sh(a2, f"python3 /tmp/ask.py {_gateway(a2)} 10 0.3")[1])
    answered = int(sh(b, f"python3 /tmp/ask.py {_gateway(b)} 10 3")[1])  # a loaded machine may be slow
    assert int(flood.wait().stdout) > 3000  # the flood did run
    assert answered == 10
    assert refused <= 2  # a slot the flood let go may be taken by one now and then


def test_one_team_holds_at_most_its_share_of_the_egress_proxys_connections(teams, make_sandbox):
    """Connections to a rule's host go through the egress proxy: a team's sandboxes together hold
    its share (96, less than a sandbox's own 256); its next is refused, another team's is served."""
    a1, a2, b = _sandboxes(make_sandbox, teams, _HOLD,
                           **network(allow_out=["allowed.test"], deny_out=[ALL_TRAFFIC], rules=RULES))
    try:
        assert _hold(a1, "http", "allowed.test", 110) == 96
        assert _hold(a2, "http", "allowed.test", 5) == 0
        assert _hold(b, "http", "allowed.test", 5) == 5
    finally:
        _release(a1, a2, b)
    assert _holds_again(a2, "http", "allowed.test", 5)
