"""Other firewalls that drop forwarded traffic, and this server's sandboxes' way through them.

A sandbox's egress is routed: it crosses the host's forward hook, where every base chain of every
table sees it. An `accept` in this server's table does not end that: another table's chain still
runs, and its drop is final. dockerd sets its iptables FORWARD chain's policy to DROP, so once it
runs, sandboxes' egress dies there, whatever sandlot's rules allow.

Docker's own answer for other users' traffic is its DOCKER-USER chain (jumped to first from
FORWARD, never flushed by dockerd): where a dropping chain's table has one, two rules go there that
accept what enters or leaves this server's links (`sl<server>-*`), tagged with the server's table
name, removed at stop. Accepting there loosens nothing of sandlot's: its own forward chain, a base
chain of its own, still drops what a sandbox's policy refuses. A dropping chain without a
DOCKER-USER (another firewall, or iptables-legacy) is not changed: it is reported, with what to add.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
import time
from pathlib import Path

from .. import _exceptions as E
from .nft import Nft

log = logging.getLogger("sandlot.network")

# nftables' chains are looked at whenever a pooled sandbox's link is made and when a sandbox is given
# a network, unless the last look is younger than RECHECK_S (one list, ~0.5-1 ms here: not on every
# warm create), so a firewall started after this server (dockerd) is seen within a second or at the
# next pool refill; iptables-legacy's need a process (~5 ms): at most every LEGACY_RECHECK_S
RECHECK_S = 1.0
LEGACY_RECHECK_S = 30.0


class ForwardDrops:
    """Finds base chains of other tables that drop forwarded packets, and lets this server's
    links through the ones that have a DOCKER-USER chain."""

    def __init__(self, nft: Nft, table: str, link_prefix: str):
        self.nft, self.table, self.prefix = nft, table, link_prefix
        self.comment = f"{table} sandboxes"  # tags this server's rules in other tables
        self._lock = threading.Lock()  # attaches run in threads: one look at a time
        self._legacy_at = self._checked_at = float("-inf")
        self._legacy: str | None = None
        self._reported: set[str] = set()  # dropping chains already named in the log

    @property
    def checked(self) -> bool:
        return self._checked_at > float("-inf")

    def check(self, unless_within: float = 0.0) -> None:
        """Look again (unless the last look is younger than `unless_within` seconds): let this
        server's links through DOCKER-USER chains, report other drops."""
        with self._lock:
            if time.monotonic() - self._checked_at < unless_within:
                return
            self._checked_at = time.monotonic()
            try:
                self._check()
            except E.RuntimeFailure as e:  # sandlot's own rules do not depend on it: the network is given
                log.error("could not look at other firewalls' forward chains: %s", e.message)

    def _check(self) -> None:
        chains = self._chains()
        names = {(c["family"], c["table"], c["name"]) for c in chains}
        unhandled = []
        for family, table, name in _dropping(chains):
            if (family, table, "DOCKER-USER") in names:
                self._accept_in(f"{family} {table}")
            else:
                unhandled.append(f"nftables chain {family} {table} {name}")
        if time.monotonic() - self._legacy_at >= LEGACY_RECHECK_S:
            self._legacy_at = time.monotonic()
            self._legacy = _legacy_forward_drop()
        if self._legacy:
            unhandled.append(self._legacy)
        for what in unhandled:
            if what not in self._reported:
                self._reported.add(what)
                log.warning("%s drops forwarded packets: sandboxes' egress through links %s* is dropped "
                            "there unless it lets them through (e.g. iptables -I FORWARD -i '%s+' -j ACCEPT; "
                            "iptables -I FORWARD -o '%s+' -j ACCEPT)", what, self.prefix, self.prefix, self.prefix)

    def _chains(self) -> list[dict]:
        out = json.loads(self.nft.run("list chains\n", json_output=True) or "{}")
        return [c["chain"] for c in out.get("nftables", []) if "chain" in c and c["chain"]["table"] != self.table]

    def _accept_in(self, table: str) -> None:
        if self._ours(table):
            return
        rules = "".join(f'insert rule {table} DOCKER-USER {way}ifname "{self.prefix}*" accept comment "{self.comment}"\n'
                        for way in ("o", "i"))
        try:
            self.nft.run(rules)
        except E.RuntimeFailure as e:
            log.error("could not let sandboxes' traffic through %s DOCKER-USER: %s", table, e.message)
            return
        log.warning("forwarded packets are dropped by default on this host (dockerd's FORWARD policy): "
                    "%s DOCKER-USER now accepts this server's sandbox links (%s*); removed at stop",
                    table, self.prefix)

    def _ours(self, table: str) -> list[int]:
        """Handles of this server's rules in `table`'s DOCKER-USER."""
        try:
            out = json.loads(self.nft.run(f"list chain {table} DOCKER-USER\n", json_output=True) or "{}")
        except E.RuntimeFailure:  # gone meanwhile
            return []
        return [r["rule"]["handle"] for r in out.get("nftables", [])
                if "rule" in r and r["rule"].get("comment") == self.comment]

    def remove(self) -> None:
        """Take this server's rules out of every DOCKER-USER chain (at stop)."""
        try:
            chains = self._chains()
        except E.RuntimeFailure:
            return
        for c in chains:
            if c["name"] != "DOCKER-USER":
                continue
            table = f"{c['family']} {c['table']}"
            for handle in self._ours(table):
                try:
                    self.nft.run(f"delete rule {table} DOCKER-USER handle {handle}\n")
                except E.RuntimeFailure as e:
                    log.error("could not remove a rule of this server from %s DOCKER-USER: %s", table, e.message)


def _dropping(chains: list[dict]) -> list[tuple[str, str, str]]:
    return [(c["family"], c["table"], c["name"]) for c in chains
            if c.get("hook") == "forward" and c.get("policy") == "drop" and c.get("family") in ("ip", "inet")]


def _legacy_forward_drop() -> str | None:
    """iptables-legacy's FORWARD policy, when its filter table is loaded (nftables cannot see it)."""
    try:
        if "filter" not in Path("/proc/net/ip_tables_names").read_text().split():
            return None
    except OSError:
        return None
    binary = shutil.which("iptables-legacy")
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, "-w", "-S", "FORWARD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return "iptables-legacy chain FORWARD" if "-P FORWARD DROP" in done.stdout.split("\n") else None
