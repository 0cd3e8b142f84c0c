"""No two sandboxes share a host uid: not within one server, not across servers on one host."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import httpx
import pytest
from support import start_server

from sandlot._exceptions import ResourceExhausted
from sandlot.runtimes import uids
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
    a, b = UidRanges(tmp_path / "a", claims, slots=6), UidRanges(tmp_path / "b", claims, slots=6)
    assert [a.claim("s1"), b.claim("s2"), a.claim("s3")] == [0, 1, 2]
    a.release("s1", 0)
    assert a.claim("s4") == 0  # a released slot is free again
    b.release("s2")  # without its slot: found among the claims
    assert sorted(a.mine().values()) == ["s3", "s4"] and b.mine() == {}
    assert b.claim("s5") not in (0, 2)  # never a slot another server holds
    a.release("s4", 2)  # a wrong slot frees no other sandbox's: s4's own is found and freed
    assert a.mine() == {2: "s3"}
    assert not a.reclaim(next(iter(b.mine())), "s1")  # held by b's sandbox: an adoption must not take it
    assert a.reclaim(2, "s3")
    for sid in ("s6", "s7", "s8", "s9"):
        a.claim(sid)
    with pytest.raises(ResourceExhausted):
        a.claim("s10")  # all six held, none stale
    [b_slot] = b.mine()
    (tmp_path / "b").rmdir()  # b is gone (its directory under /run with it): its claims are stale
    assert a.claim("s10") == b_slot


def test_a_claim_does_not_grow_with_the_claims(tmp_path, monkeypatch):
    """Creates and kills at 2000 live sandboxes: a claim and a release never read every claim (that
    took 77 ms each there). Counted in claim files created, read and listed, not in time, which a
    loaded host stretches."""
    claims = tmp_path / "uids"
    (tmp_path / "a").mkdir()
    a = UidRanges(tmp_path / "a", claims)
    slots = [a.claim(f"s{i}") for i in range(2000)]
    touched = {"created": 0, "read": 0, "listed": 0}

    def counting(name, real):
        def call(*args, **kwargs):
            touched[name] += 1
            return real(*args, **kwargs)
        return call

    monkeypatch.setattr(uids.os, "open", counting("created", os.open))  # a claim's O_EXCL create
    monkeypatch.setattr(Path, "read_text", counting("read", Path.read_text))
    monkeypatch.setattr(uids.os, "scandir", counting("listed", os.scandir))
    for i in range(50):
        a.release(f"s{i * 40}", slots[i * 40])
        a.claim(f"again{i}")
    monkeypatch.undo()
    # a release reads its own claim; a claim tries the slot this server freed first: one try each
    # (from slot 0 each time: ~50,000 tries; from the freed one up to the next free: ~2000 in all)
    assert touched["listed"] == 0 and touched["read"] == 50, touched
    assert touched["created"] == 50, touched
