"""Sandbox egress: a NetworkPolicy (policy.py) made real with a veth, nftables and a resolver.

Every sandbox of the namespace runtime lives in a network namespace of its own, made by its process
while still host root (links.new_netns): only loopback. A sandbox with a network also gets a veth
pair: `sl<server>-<slot>` on the host, eth0 inside, a /30 from SANDBOX_SUBNET chosen by its uid
slot (host-wide unique, so two servers never collide), default route through the host end, NAT out.

The rules are one nftables table per server (`sandlot_<server>`), generated here from the data:

    prerouting -300   from a sandbox link: no IPv6; the source must be that sandbox's address
    prerouting nat    DNS (udp/tcp 53, to any address) goes to this server's resolver (dns.py)
    input, forward    from a sandbox link: `links` maps the link to the sandbox's chain sb_<id>;
                      a link not in it (a pool sandbox's, not configured) is dropped
    forward           to a sandbox link: only replies (nothing from outside starts a connection)
    postrouting nat   masquerade the sandboxes' subnet on its way out

    sb_<id>: [cap] · replies · other sandboxes ✗ · explicit allows inside closed ranges ✓ ·
             ALWAYS_BLOCKED ✗ · the host's own addresses ✗ · allow CIDRs ✓ · pinned names ✓ ·
             deny CIDRs ✗ · pinned denied names ✗ · the default (internet or not)

A name in allow_out passes on the wire only as the addresses the sandbox's resolver answered for it
(pinned into p_<id> with the record's TTL, bounded): a hard-coded address, or a name rebound to a
closed address, does not pass. Everything a sandbox owns here (link, chain, sets, map entries,
resolver entry) is removed by `detach`, which the runtime's kill() calls.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import _exceptions as E
from . import links
from .dns import Resolver
from .nft import Nft
from .policy import ALWAYS_BLOCKED, SANDBOX_SUBNET, NetworkPolicy, name_matches

log = logging.getLogger("sandlot.network")

PIN_MIN_S, PIN_MAX_S = 30, 3600  # a pinned answer lives its TTL within these bounds
PIN_SET_SIZE = 8192  # addresses pinned per sandbox at once (kernel memory is bounded)


def addresses(slot: int) -> tuple[str, str]:
    """(host end, sandbox end) of a slot's /30, as CIDRs."""
    base = SANDBOX_SUBNET.network_address + 4 * slot
    if base + 3 > SANDBOX_SUBNET.broadcast_address:
        raise E.ResourceExhausted(f"uid slot {slot} has no address in {SANDBOX_SUBNET}")
    return f"{base + 1}/30", f"{base + 2}/30"


@dataclass
class Attached:
    """A sandbox whose link is configured and whose rules are loaded."""

    sandbox_id: str
    link: str
    address: str  # the sandbox's own address
    policy: NetworkPolicy
    pins: dict[str, tuple[float, str, bool]] = field(default_factory=dict)  # ip -> (until, name, denied)


class Network:
    """The egress of one server's sandboxes (see the module docstring)."""

    def __init__(self, server: str, state_dir: Path):
        self.table = f"sandlot_{server}"
        self.prefix = f"sl{server[:6]}-"
        self.state_file = state_dir / "network.json"
        self.nft = Nft()
        self.netlink = links.Netlink()
        self._lock = threading.Lock()
        self._attached: dict[str, Attached] = {}  # by sandbox id
        self._enable_forwarding()
        self.resolver = Resolver(self, port=self._saved_port())
        try:
            self.nft.run(self._base_rules())
        except BaseException:
            self.resolver.stop()
            self.nft.close()
            raise
        self.resolver.start()
        self.state_file.write_text(json.dumps({"dns_port": self.resolver.port}))
        self._unowned = self.sandboxes_with_rules()  # rules a previous server left: adopted or removed

    # ---- the table ---------------------------------------------------------------------------

    def _saved_port(self) -> int:
        # the same resolver port after a restart: adopted sandboxes' DNS keeps working at once
        try:
            return int(json.loads(self.state_file.read_text())["dns_port"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

    @staticmethod
    def _enable_forwarding() -> None:
        path = Path("/proc/sys/net/ipv4/ip_forward")
        if path.read_text().strip() != "1":
            # host-wide: the host now routes. Our forward chain passes only sandbox replies into
            # sandbox links; other forwarding is the host's own firewall's business.
            log.warning("enabling IPv4 forwarding on this host (net.ipv4.ip_forward=1) for sandbox egress")
            path.write_text("1")

    def _base_rules(self) -> str:
        t, p, port = f"inet {self.table}", self.prefix + "*", self.resolver.port
        blocked = ", ".join(ALWAYS_BLOCKED)
        return "\n".join([
            f"add table {t}",
            f"add set {t} blocked {{ type ipv4_addr; flags interval; }}",
            f"add map {t} links {{ type ifname : verdict; }}",
            f"add map {t} down {{ type ifname : verdict; }}",
            f"add set {t} sources {{ type ifname . ipv4_addr; }}",
            *(f"add chain {t} {name} {{ type {kind} hook {hook} priority {prio}; policy accept; }}"
              for name, kind, hook, prio in (("c_pre", "filter", "prerouting", -300),
                                             ("c_dns", "nat", "prerouting", -100),
                                             ("c_input", "filter", "input", 0),
                                             ("c_fwd", "filter", "forward", 0),
                                             ("c_post", "nat", "postrouting", 100))),
            *(f"flush chain {t} {name}" for name in ("c_pre", "c_dns", "c_input", "c_fwd", "c_post")),
            f"flush set {t} blocked",
            f"add element {t} blocked {{ {blocked} }}",
            f'add rule {t} c_pre iifname "{p}" meta nfproto ipv6 drop',
            f'add rule {t} c_pre iifname "{p}" iifname . ip saddr != @sources drop',
            f'add rule {t} c_dns iifname "{p}" meta l4proto {{ tcp, udp }} th dport 53 redirect to :{port}',
            f'add rule {t} c_input iifname "{p}" meta l4proto {{ tcp, udp }} th dport {port} accept',
            f'add rule {t} c_input iifname "{p}" iifname vmap @links',
            f'add rule {t} c_input iifname "{p}" drop',
            # the resolver answers sandboxes only
            f"add rule {t} c_input meta l4proto {{ tcp, udp }} th dport {port} drop",
            f'add rule {t} c_fwd iifname "{p}" iifname vmap @links',
            f'add rule {t} c_fwd iifname "{p}" drop',
            f'add rule {t} c_fwd oifname "{p}" oifname vmap @down',
            f'add rule {t} c_fwd oifname "{p}" ct state established,related accept',
            f'add rule {t} c_fwd oifname "{p}" drop',
            f'add rule {t} c_post ip saddr {SANDBOX_SUBNET} oifname != "{p}" masquerade',
        ]) + "\n"

    def _sandbox_rules(self, a: Attached, keep_pins: bool) -> str:
        t, sid, pol = f"inet {self.table}", a.sandbox_id, a.policy
        lines = [f"add set {t} {s}_{sid} {{ type ipv4_addr; flags interval; }}" for s in ("a", "x", "d")]
        lines += [f"add set {t} {s}_{sid} {{ type ipv4_addr; flags timeout; size {PIN_SET_SIZE}; }}" for s in ("p", "q")]
        lines += [f"add chain {t} sb_{sid}", f"add chain {t} sbd_{sid}",
                  f"flush chain {t} sb_{sid}", f"flush chain {t} sbd_{sid}"]
        lines += [f"flush set {t} {s}_{sid}" for s in ("a", "x", "d", *(() if keep_pins else ("p", "q")))]
        explicit, allow = _split_explicit(pol.networks("allow"))
        for s, nets in (("a", allow), ("x", explicit), ("d", pol.networks("deny"))):
            if nets:
                lines.append(f"add element {t} {s}_{sid} {{ {', '.join(map(str, nets))} }}")
        rule = f"add rule {t} sb_{sid}"
        if pol.bandwidth_mbps:
            rate = max(1, int(pol.bandwidth_mbps * 125))  # kbytes/s
            limit = f"limit rate over {rate} kbytes/second burst {max(rate // 4, 64)} kbytes drop"
            lines += [f"{rule} {limit}", f"add rule {t} sbd_{sid} {limit}"]
        lines += [
            f"{rule} ct state established,related accept",
            f"{rule} ip daddr {SANDBOX_SUBNET} drop",
            f"{rule} ip daddr @x_{sid} accept",
            f"{rule} ip daddr @blocked drop",
            f"{rule} fib daddr type {{ local, broadcast, anycast, multicast }} drop",
            f"{rule} ip daddr @a_{sid} accept",
            f"{rule} ip daddr @p_{sid} accept",
            f"{rule} ip daddr @d_{sid} drop",
            f"{rule} ip daddr @q_{sid} drop",
            f"{rule} {'accept' if pol.internet else 'drop'}",
            f'add element {t} links {{ "{a.link}" : jump sb_{sid} }}',
            f'add element {t} down {{ "{a.link}" : jump sbd_{sid} }}',
            f'add element {t} sources {{ "{a.link}" . {a.address} }}',
        ]
        return "\n".join(lines) + "\n"

    def _remove_rules(self, sid: str, link: str, address: str | None) -> None:
        t = f"inet {self.table}"
        steps = [f'delete element {t} links {{ "{link}" }}', f'delete element {t} down {{ "{link}" }}']
        if address:
            steps.append(f'delete element {t} sources {{ "{link}" . {address} }}')
        steps += [f"flush chain {t} sb_{sid}", f"flush chain {t} sbd_{sid}",
                  f"delete chain {t} sb_{sid}", f"delete chain {t} sbd_{sid}"]
        steps += [f"delete set {t} {s}_{sid}" for s in ("a", "x", "d", "p", "q")]
        try:
            self.nft.run("\n".join(steps) + "\n")
        except E.RuntimeFailure:
            # some were never made (a kill mid-attach, a leftover): remove what there is, one by one
            for step in steps:
                try:
                    self.nft.run(step + "\n")
                except E.RuntimeFailure:
                    pass

    # ---- a sandbox's link --------------------------------------------------------------------

    def link_name(self, slot: int) -> str:
        return f"{self.prefix}{slot}"

    def prepare(self, slot: int, netns_fd: int) -> None:
        """Make the sandbox's veth now (eth0 down, no address, no rules: it carries nothing)."""
        host_cidr, _ = addresses(slot)
        self.netlink.add_veth(self.link_name(slot), netns_fd, host_cidr)

    def attach(self, sandbox_id: str, slot: int, netns_fd: int, policy: NetworkPolicy,
               adopting: bool = False) -> None:
        """Give the sandbox its network under `policy`, or replace the policy of one that has one
        (atomically: one nftables transaction). `adopting` keeps the pins a previous server made."""
        link = self.link_name(slot)
        host_cidr, cidr = addresses(slot)
        address = cidr.split("/")[0]
        if not (Path("/sys/class/net") / link).exists():
            self.netlink.add_veth(link, netns_fd, host_cidr)
        self.netlink.configure_peer(netns_fd, cidr, host_cidr.split("/")[0])
        with self._lock:
            before = self._attached.get(sandbox_id)
            a = Attached(sandbox_id, link, address, policy, dict(before.pins) if before else {})
            self.nft.run(self._sandbox_rules(a, keep_pins=adopting))
            if not adopting:
                self._restore_pins(a)
            self._attached[sandbox_id] = a
            self._unowned.discard(sandbox_id)
        self.resolver.register(address, a)

    def _restore_pins(self, a: Attached) -> None:
        """After a policy change: the pins of names the new policy still names come back."""
        allowed, denied = a.policy.names("allow"), a.policy.names("deny")
        keep = {ip: v for ip, v in a.pins.items()
                if name_matches(v[1], denied if v[2] else allowed)}
        a.pins = {}
        for ip, (until, name, is_denied) in keep.items():
            self.pin(a, name, ip, until, is_denied)

    def pin(self, a: Attached, name: str, ip: str, until: float, denied: bool = False) -> None:
        """Let the sandbox reach `ip` (an answer for allowed `name`) until `until` (or, denied,
        drop it). Called by the resolver before it answers."""
        ttl = int(min(max(until - time.time(), PIN_MIN_S), PIN_MAX_S))
        ip_addr = ipaddress.IPv4Address(ip)
        s = f"inet {self.table} {'q' if denied else 'p'}_{a.sandbox_id}"
        known = a.pins.get(ip)
        add = f"add element {s} {{ {ip_addr} timeout {ttl}s }}\n"
        try:
            if known and known[2] == denied:
                if known[0] - time.time() > ttl / 2:
                    return  # pinned long enough already
                try:  # a timeout is only renewed by adding the element afresh
                    self.nft.run(f"delete element {s} {{ {ip_addr} }}\n" + add)
                except E.RuntimeFailure:  # expired in the kernel meanwhile
                    self.nft.run(add)
            else:
                self.nft.run(add)
        except E.RuntimeFailure as e:  # the sandbox was detached meanwhile, or its set is full
            log.warning("sandbox %s: could not pin %s for %s: %s", a.sandbox_id, ip, name, e.message)
            return
        a.pins[ip] = (time.time() + ttl, name, denied)

    def detach(self, sandbox_id: str, slot: int | None) -> None:
        """Remove everything of the sandbox's network: rules, sets, resolver entry, link."""
        with self._lock:
            a = self._attached.pop(sandbox_id, None)
            unowned = sandbox_id in self._unowned
            self._unowned.discard(sandbox_id)
        link = a.link if a else (self.link_name(slot) if slot is not None else None)
        if a:
            self.resolver.unregister(a.address)
        if a or unowned:
            address = a.address if a else (addresses(slot)[1].split("/")[0] if slot is not None else None)
            self._remove_rules(sandbox_id, link or "-", address)
        if link and (Path("/sys/class/net") / link).exists():
            self.netlink.delete(link)

    def policy(self, sandbox_id: str) -> NetworkPolicy | None:
        a = self._attached.get(sandbox_id)
        return a.policy if a else None

    def usage(self, slot: int) -> tuple[int, int]:
        """(bytes out of the sandbox, bytes into it) through its link."""
        return links.link_bytes(self.link_name(slot))

    # ---- leftovers and stop ------------------------------------------------------------------

    def sandboxes_with_rules(self) -> set[str]:
        """Sandbox ids that have a chain in this server's table."""
        out = self.nft.run(f"list table inet {self.table}\n", json_output=True)
        found = set()
        for item in json.loads(out or "{}").get("nftables", []):
            name = item.get("chain", {}).get("name", "")
            if name.startswith("sb_"):
                found.add(name[3:])
        return found

    def sweep(self, claimed_slots: set[int]) -> None:
        """Delete this server's links whose slot no sandbox holds (a crash mid-create or mid-kill)."""
        for name in links.host_links(self.prefix):
            suffix = name[len(self.prefix):]
            if suffix.isdigit() and int(suffix) not in claimed_slots:
                log.info("removing leftover sandbox link %s", name)
                self.netlink.delete(name)

    def close(self, sandboxes_left: bool) -> None:
        self.resolver.stop()
        if not sandboxes_left:
            try:
                self.nft.run(f"delete table inet {self.table}\n")
            except E.RuntimeFailure as e:
                log.error("could not remove nftables table %s: %s", self.table, e.message)
            self.state_file.unlink(missing_ok=True)
        self.nft.close()
        self.netlink.close()


def _split_explicit(nets: list[ipaddress.IPv4Network]):
    """Allow CIDRs inside a closed range (or single addresses, which may be the host's own) open
    exactly that; broader ones never open a closed range. The sandboxes' subnet never opens."""
    blocked = [ipaddress.IPv4Network(b) for b in ALWAYS_BLOCKED]
    explicit, rest = [], []
    for n in nets:
        if n.subnet_of(SANDBOX_SUBNET):
            continue
        if n.prefixlen == 32 or any(n.subnet_of(b) for b in blocked):
            explicit.append(n)
        else:
            rest.append(n)
    return explicit, rest
