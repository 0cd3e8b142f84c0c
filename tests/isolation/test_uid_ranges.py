"""No two sandboxes share a host uid: not within one server, not across servers on one host."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import httpx
from support import start_server

from sandlot.runtimes.uids import UID_RANGE, UidRanges


def host_uids(srv, n: int) -> list[int]:
    """Create n sandboxes on `srv`; the host uid each one's processes run as."""
    uids = []
    with httpx.Client(base_url=srv.url, headers={"X-API-KEY": srv.api_key}, timeout=120) as api:
        for _ in range(n):
            r = api.post("/v2/sandboxes", json={"templateID": "base", "timeout": 60})
            assert r.status_code == 201, r.text
            state = (srv.home / "sandboxes" / r.json()["sandboxID"] / "state.json").read_text()
            pid = json.loads(state)["pid"]
            uids.append(Path(f"/proc/{pid}").stat().st_uid)
    return uids


def test_two_servers_never_share_a_uid_range(server):
    home = Path(tempfile.mkdtemp(prefix="sandlot-test-uids-"))
    other = start_server(home, pool_size=0)
    try:
        mine, theirs = host_uids(server, 2), host_uids(other, 2)
        ranges = [u // UID_RANGE for u in mine + theirs]
        assert min(mine + theirs) >= 1_000_000
        assert len(set(ranges)) == 4, (mine, theirs)
    finally:
        other.stop()
        shutil.rmtree(home, ignore_errors=True)


def test_claims(tmp_path):
    claims = tmp_path / "uids"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = UidRanges(tmp_path / "a", claims), UidRanges(tmp_path / "b", claims)
    assert [a.claim("s1"), b.claim("s2"), a.claim("s3")] == [0, 1, 2]
    a.release("s1")
    assert b.claim("s4") == 0  # a released slot is free again
    assert a.mine() == {2: "s3"}
    assert not a.reclaim(1, "s1")  # held by b's sandbox: an adoption must not take it
    assert a.reclaim(2, "s3")
    (tmp_path / "b").rmdir()  # b is gone (its directory under /run with it): its claims are stale
    assert a.claim("s5") == 0
    assert a.reclaim(1, "s6")
