"""Sandbox egress: a NetworkPolicy (policy.py) made real with a veth, nftables and a resolver.

Every sandbox of the namespace runtime lives in a network namespace of its own, made by its process
while still host root (netns.new_netns): only loopback. A sandbox with a network also gets a veth
pair: `sl<server>-<slot>` on the host, eth0 inside, a /30 from SANDBOX_SUBNET chosen by its uid
slot (host-wide unique, so two servers never collide), default route through the host end, NAT out.

The rules are one nftables table per server (`sandlot_<server>`), fixed chains over shared sets
keyed by the sandbox's link: giving a sandbox its network, changing or removing it only adds and
deletes set elements (one transaction, ~0.3 ms whatever the number of sandboxes; a chain and sets
per sandbox cost ~7 ms, since nftables re-reads the table for each).

    c_pre    (prerouting -300)  from a sandbox link: no IPv6; the source must be its own address
    c_dns    (prerouting nat)   DNS (udp/tcp 53, to any address) goes to this server's resolver;
                                TCP to an address pinned for a `network.rules` name (`rulepins`)
                                or inside a rule's address key (`ruleaddrs`), and all TCP of a
                                link in `socks` (a user's SOCKS5 proxy), goes to the egress proxy
                                (egress_proxy.py), which dials it itself
    c_input, c_fwd              from a sandbox link: `egress`; to one: its cap, then replies only
                                (what goes to the egress proxy: its cap, then accepted)
    c_out    (output)           to a sandbox link from the host (the egress proxy): its cap
    c_post   (postrouting nat)  masquerade the sandboxes' subnet on its way out
    egress   [cap] · replies · other sandboxes ✗ · explicit allows inside closed ranges ✓ ·
             ALWAYS_BLOCKED ✗ · the host's own addresses ✗ · allow ✓ · pins ✓ · deny ✗ ·
             denied pins ✗ · the sandbox's default (`verdicts`); a link in none: ✗

A name in allow_out passes on the wire only as the addresses the sandbox's resolver answered for it
(pinned with the record's TTL, bounded): a hard-coded address, or a name rebound to a closed
address, does not pass. An answer for a name with header rules is pinned into `rulepins` only if
the sandbox's policy lets it reach the address (`_reaches`: the egress chain's question, asked in
Python, since a redirected connection leaves that chain). A policy change reaches open connections:
flows the new policy does not pass lose their conntrack entries (the chain passes an established
flow unchecked), and the egress proxy ends the sandbox's connections (served under the old rules).
Everything a sandbox owns here (link, set elements, cap chains, resolver entry) is removed by
`detach`, which the runtime's kill() calls.

Over 400 lines: the table, its sets and the verdict order above are one security argument, kept
in one file so that it can be read as one.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import json
import logging
import os
import threading
import time
from pathlib import Path

from .. import _exceptions as E
from . import links
from .attachment import Attached, cap_chain, split_explicit
from .budgets import TEAM_SHARE
from .dns import Resolver
from .egress_proxy import EgressTls, RulesProxy
from .egress_rules import headers_for, headers_for_address
from .forward import RECHECK_S, ForwardDrops
from .nft import Nft
from .policy import ALWAYS_BLOCKED, SANDBOX_SUBNET, NetworkPolicy, closed, name_matches

log = logging.getLogger("sandlot.network")

PIN_MIN_S, PIN_MAX_S = 30, 3600  # a pinned answer lives its TTL within these bounds
IPS_DST_NAT = 0x20  # linux/netfilter/nf_conntrack_common.h: a redirected flow (resolver, egress proxy)
PIN_SET_SIZE = 65536  # addresses pinned at once, all sandboxes together (kernel memory is bounded)
RULE_SETS = ("explicit", "allow", "deny", "ruleaddrs")  # interval sets of `ifname . ipv4_addr` a policy fills


def addresses(slot: int) -> tuple[str, str]:
    """(host end, sandbox end) of a slot's /30, as CIDRs."""
    base = SANDBOX_SUBNET.network_address + 4 * slot
    if base + 3 > SANDBOX_SUBNET.broadcast_address:
        raise E.ResourceExhausted(f"uid slot {slot} has no address in {SANDBOX_SUBNET}")
    return f"{base + 1}/30", f"{base + 2}/30"


class Network:
    """The egress of one server's sandboxes (see the module docstring)."""

    def __init__(self, server: str, state_dir: Path, tls: EgressTls | None = None, team_share: float = TEAM_SHARE):
        self.table = f"sandlot_{server}"
        self.t = f"inet {self.table}"
        self.prefix = f"sl{server[:6]}-"
        self.state_file = state_dir / "network.json"
        self.nft = Nft()
        self.forward = ForwardDrops(self.nft, self.table, self.prefix)  # other firewalls' forward drops
        self.netlink = links.Netlink()
        self._lock = threading.Lock()
        self._attached: dict[str, Attached] = {}  # by sandbox id
        self.resolver = Resolver(self.pin, self.pin_rule, port=self._saved_port("dns_port"), team_share=team_share)
        # without TLS material (a runtime built outside a server) there are no header rules
        self.proxy = RulesProxy(self.target, tls, port=self._saved_port("proxy_port"), team_of=self.resolver.team_of,
                                team_share=team_share) if tls else None
        try:
            self.nft.run(self._base_rules())
        except BaseException:
            self.resolver.stop()
            if self.proxy:
                self.proxy.stop()
            self.nft.close()
            raise
        self.resolver.start()
        if self.proxy:
            self.proxy.start()
        self.state_file.write_text(json.dumps({"dns_port": self.resolver.port,
                                               "proxy_port": self.proxy.port if self.proxy else 0}))

    # ---- the table ---------------------------------------------------------------------------

    def _saved_port(self, key: str) -> int:
        # the same ports after a restart: adopted sandboxes' DNS (and redirects) keep working at once
        try:
            return int(json.loads(self.state_file.read_text())[key])
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
        """The table, made or brought up to date (its sets keep their elements: a restarted server's
        adopted sandboxes keep their rules throughout)."""
        t, p, port = self.t, self.prefix + "*", self.resolver.port
        chains = (("c_pre", "filter", "prerouting", -300), ("c_dns", "nat", "prerouting", -100),
                  ("c_input", "filter", "input", 0), ("c_fwd", "filter", "forward", 0),
                  ("c_out", "filter", "output", 0), ("c_post", "nat", "postrouting", 100))
        egress = [
            "iifname vmap @up",
            "ct state established,related accept",
            f"ip daddr {SANDBOX_SUBNET} drop",
            "iifname . ip daddr @explicit accept",
            "ip daddr @blocked drop",
            "fib daddr type { local, broadcast, anycast, multicast } drop",
            "iifname . ip daddr @allow accept",
            "iifname . ip daddr @pins accept",
            "iifname . ip daddr @deny drop",
            "iifname . ip daddr @denypins drop",
            "iifname vmap @verdicts",
            "drop",
        ]
        return "\n".join([
            f"add table {t}",
            f"add set {t} blocked {{ type ipv4_addr; flags interval; }}",
            f"add set {t} sources {{ type ifname . ipv4_addr; }}",
            *(f"add set {t} {s} {{ type ifname . ipv4_addr; flags interval; }}" for s in RULE_SETS),
            *(f"add set {t} {s} {{ type ifname . ipv4_addr; flags timeout; size {PIN_SET_SIZE}; }}"
              for s in ("pins", "denypins", "rulepins")),
            *(f"add map {t} {m} {{ type ifname : verdict; }}" for m in ("verdicts", "up", "down")),
            f"add set {t} socks {{ type ifname; }}",
            *(f"add chain {t} {name} {{ type {kind} hook {hook} priority {prio}; policy accept; }}"
              for name, kind, hook, prio in chains),
            f"add chain {t} egress",
            *(f"flush chain {t} {name}" for name, *_ in chains),
            f"flush chain {t} egress",
            f"flush set {t} blocked",
            f"add element {t} blocked {{ {', '.join(ALWAYS_BLOCKED)} }}",
            f'add rule {t} c_pre iifname "{p}" meta nfproto ipv6 drop',
            f'add rule {t} c_pre iifname "{p}" iifname . ip saddr != @sources drop',
            f'add rule {t} c_dns iifname "{p}" meta l4proto {{ tcp, udp }} th dport 53 redirect to :{port}',
            *self._proxy_rules(),
            f'add rule {t} c_input iifname "{p}" meta l4proto {{ tcp, udp }} th dport {port} accept',
            f'add rule {t} c_input iifname "{p}" jump egress',
            f"add rule {t} c_input meta l4proto {{ tcp, udp }} th dport {port} drop",  # sandboxes only
            f'add rule {t} c_fwd iifname "{p}" jump egress',
            f'add rule {t} c_fwd oifname "{p}" oifname vmap @down',
            f'add rule {t} c_fwd oifname "{p}" ct state established,related accept',
            f'add rule {t} c_fwd oifname "{p}" drop',
            # what the host itself sends into a link (the egress proxy's answers) is capped as well
            f'add rule {t} c_out oifname "{p}" oifname vmap @down',
            f'add rule {t} c_post ip saddr {SANDBOX_SUBNET} oifname != "{p}" masquerade',
            *(f"add rule {t} egress {rule}" for rule in egress),
        ]) + "\n"

    def _proxy_rules(self) -> list[str]:
        if self.proxy is None:
            return []
        t, p, port = self.t, self.prefix + "*", self.proxy.port
        return [f'add rule {t} c_dns iifname "{p}" iifname . ip daddr @rulepins meta l4proto tcp redirect to :{port}',
                f'add rule {t} c_dns iifname "{p}" iifname . ip daddr @ruleaddrs meta l4proto tcp redirect to :{port}',
                f'add rule {t} c_dns iifname "{p}" iifname @socks meta l4proto tcp redirect to :{port}',
                # only what the rule above redirected: the proxy's port itself stays closed to sandboxes;
                # capped here, since it leaves before `egress`, which caps the rest
                f'add rule {t} c_input iifname "{p}" tcp dport {port} ct status dnat iifname vmap @up',
                f'add rule {t} c_input iifname "{p}" tcp dport {port} ct status dnat accept',
                f'add rule {t} c_input iifname != "{p}" tcp dport {port} drop']

    def _cap_commands(self, a: Attached) -> list[str]:
        if not a.policy.bandwidth_mbps:
            return []
        rate = max(1, int(a.policy.bandwidth_mbps * 125))  # kbytes/s
        limit = f"limit rate over {rate} kbytes/second burst {max(rate // 4, 64)} kbytes drop"
        out = []
        for way in ("up", "down"):
            chain = f"{self.t} {cap_chain(a.link, way)}"
            out += [f"add chain {chain}", f"flush chain {chain}", f"add rule {chain} {limit}"]
        return out

    def _add(self, a: Attached) -> str:
        lines = self._cap_commands(a)
        for name, elements in a.elements().items():
            if elements:
                lines.append(f"add element {self.t} {name} {{ {', '.join(elements)} }}")
        return "\n".join(lines) + "\n"

    def _deletions(self, link: str, elements: dict[str, list[str]]) -> list[str]:
        steps = [f"delete element {self.t} {name} {{ {', '.join(found)} }}"
                 for name, found in elements.items() if found]
        if elements.get("up"):  # its cap chains, once nothing jumps to them
            steps += [f"delete chain {self.t} {cap_chain(link, way)}" for way in ("up", "down")]
        return steps

    def _delete(self, link: str, elements: dict[str, list[str]], then: str = "") -> None:
        """Delete these elements of a link (and its cap chains), then run `then`, in one transaction
        if all are there; else whatever is already gone is skipped, one by one."""
        steps = self._deletions(link, elements)
        try:
            self.nft.run("\n".join(steps) + "\n" + then)
            return
        except E.RuntimeFailure:
            for step in steps:  # one by one: a missing one must not keep the others
                try:
                    self.nft.run(step + "\n")
                except E.RuntimeFailure:
                    pass
        if then:
            self.nft.run(then)

    def _elements_of(self, link: str,
                     sets=("sources", *RULE_SETS, "pins", "denypins", "rulepins", "socks")) -> dict[str, list[str]]:
        """What the kernel holds for `link` (after a restart, or for a leftover), by set."""
        out = json.loads(self.nft.run(f"list table {self.t}\n", json_output=True) or "{}")
        found: dict[str, list[str]] = {}
        for item in out.get("nftables", []):
            s = item.get("set") or item.get("map")
            if not s or s.get("name") not in (*sets, "verdicts", "up", "down"):
                continue
            for elem in s.get("elem", []):
                key = _element_key(elem)
                if key and key[0] == link:
                    found.setdefault(s["name"], []).append(
                        f'"{link}"' if len(key) == 1 else f'"{link}" . {key[1]}')
        return found

    # ---- a sandbox's link --------------------------------------------------------------------

    def link_name(self, slot: int) -> str:
        return f"{self.prefix}{slot}"

    def prepare(self, slot: int, netns_fd: int) -> None:
        """Make the sandbox's veth now (eth0 down, no address, no elements: it carries nothing)."""
        self._make_link(slot, netns_fd)
        # off the claim's path: attach looks again only if this is stale. Not before a first
        # network is given, which is when other firewalls' chains are first touched
        if self.forward.checked:
            self.forward.check()

    def _make_link(self, slot: int, netns_fd: int) -> None:
        link, (host_cidr, _) = self.link_name(slot), addresses(slot)
        for attempt in range(3):
            try:
                self.netlink.add_veth(link, netns_fd, host_cidr)
                return
            except FileExistsError:
                # the slot's last sandbox's link, its namespace still being torn down by the kernel
                # (asynchronous after its last process): the slot is ours now, so it goes
                deadline = time.monotonic() + 2
                while (Path("/sys/class/net") / link).exists() and time.monotonic() < deadline:
                    time.sleep(0.02)
                if attempt == 1:
                    self.netlink.delete(link)
        self.netlink.add_veth(link, netns_fd, host_cidr)

    def attach(self, sandbox_id: str, slot: int, netns_fd: int, policy: NetworkPolicy,
               adopting: bool = False, team: str | None = None) -> None:
        """Give the sandbox its network under `policy`, or replace the policy of one that has one
        (one nftables transaction). `adopting`: a new server takes over what the last one loaded;
        `team`: whose share of the resolver's and the proxy's budgets its use counts against."""
        link = self.link_name(slot)
        _, cidr = addresses(slot)
        if (policy.rules or policy.socks) and self.proxy is None:
            raise E.Unsupported("this server has no egress proxy: network.rules and egressProxy cannot be applied")
        # at the first network given, not at start: a server that gives none (SANDLOT_EGRESS=off)
        # leaves the host's forwarding as it found it
        self._enable_forwarding()
        self.forward.check(unless_within=RECHECK_S)
        self._link_up(slot, netns_fd)
        with self._lock:
            before = self._attached.get(sandbox_id)
            a = Attached(sandbox_id, link, cidr.split("/")[0], policy, team)
            if before is not None:  # the old elements go and the new come in one transaction
                old = before.elements()
                old.pop("sources")
                self._delete(link, old, then=self._add(a))
            elif adopting:  # the last server's elements, except its pins (the sandbox's DNS cache);
                # rule pins go: the proxy knows no names for them (the next lookup pins again)
                self._delete(link, {k: v for k, v in self._elements_of(link).items()
                                    if k not in ("sources", "pins", "denypins")}, then=self._add(a))
            else:
                self.nft.run(self._add(a))
            self._attached[sandbox_id] = a
            if before is not None:
                self._keep_pins(before, a)
        self.resolver.register(a.address, a)
        if before is not None:  # what was opened under the old policy does not outlive it
            self._cut_flows(a)
            if self.proxy:
                self.proxy.drop(a.address)

    def _link_up(self, slot: int, netns_fd: int) -> None:
        """The sandbox's link made if missing, and eth0 configured if it is not yet."""
        link, (host_cidr, cidr) = self.link_name(slot), addresses(slot)
        if not (Path("/sys/class/net") / link).exists():
            self._make_link(slot, netns_fd)
        try:
            self.netlink.configure_peer(netns_fd, cidr, host_cidr.split("/")[0])
        except OSError as e:
            if e.errno != errno.ENODEV:
                raise
            self._make_link(slot, netns_fd)  # no eth0 here: the link of that name was a dead sandbox's
            self.netlink.configure_peer(netns_fd, cidr, host_cidr.split("/")[0])

    def _keep_pins(self, before: Attached, a: Attached) -> None:
        """After a policy change: the pins of names the new policy still names stay, others go."""
        allowed, denied = a.policy.names("allow"), a.policy.names("deny")
        gone = {}
        for ip, (until, name, is_denied) in before.pins.items():
            if name_matches(name, denied if is_denied else allowed):
                a.pins[ip] = (until, name, is_denied)
            else:
                gone.setdefault("denypins" if is_denied else "pins", []).append(f'"{a.link}" . {ip}')
        for ip, names in before.rule_pins.items():
            kept = {n: until for n, until in names.items()
                    if headers_for(a.policy.rules, n) is not None and self._reaches(a, ip, n)}
            if kept:
                a.rule_pins[ip] = kept
            else:
                gone.setdefault("rulepins", []).append(f'"{a.link}" . {ip}')
        if gone:
            self._delete(a.link, gone)

    def _cut_flows(self, a: Attached) -> None:
        """After a policy change: the sandbox's open flows to addresses its new policy does not
        pass lose their conntrack entries. The egress chain passes an established flow unchecked,
        so without this a connection opened before (an upload, a tunnel) went on as if allowed;
        now its next packet is a new one, and dropped. Flows redirected to the resolver or the
        egress proxy are theirs to end. In a thread of its own: pyroute2 runs an event loop of its
        own, which a thread already running one (the server's) refuses."""
        worker = threading.Thread(target=self._cut_flows_now, args=(a,), name="sandlot-conntrack")
        worker.start()
        worker.join(10)

    def _cut_flows_now(self, a: Attached) -> None:
        # here, not at the top: only a policy change needs them, and `pyroute2` loads most of itself
        from pyroute2 import Conntrack
        from pyroute2.conntrack import NFCTAttrTuple
        from pyroute2.netlink.exceptions import NetlinkError

        try:
            with contextlib.closing(Conntrack()) as ct:
                for entry in list(ct.dump_entries(tuple_orig=NFCTAttrTuple(saddr=a.address))):
                    ip = entry.tuple_orig.daddr
                    pinned = a.pins.get(ip)
                    name = pinned[1] if pinned and not pinned[2] else None
                    if entry.status & IPS_DST_NAT or self._reaches(a, ip, name):
                        continue
                    try:
                        ct.delete(entry)
                    except NetlinkError:  # ended meanwhile
                        pass
        except (OSError, NetlinkError, RuntimeError) as e:
            log.warning("sandbox %s: its open connections could not be checked against its new policy: %s",
                        a.sandbox_id, e)

    def pin(self, a: Attached, name: str, ip: str, until: float, denied: bool = False) -> None:
        """Let the sandbox reach `ip` (an answer for allowed `name`) until `until` (or, denied,
        drop it). Called by the resolver before it answers."""
        ttl = int(min(max(until - time.time(), PIN_MIN_S), PIN_MAX_S))
        known = a.pins.get(ip)
        same = known is not None and known[2] == denied
        if same and known[0] - time.time() > ttl / 2:
            return  # pinned long enough already
        try:
            self._pin_element(f"{self.t} {'denypins' if denied else 'pins'}", a.link, ip, ttl, renew=same)
        except E.RuntimeFailure as e:  # the sandbox was detached meanwhile, or the set is full
            log.warning("sandbox %s: could not pin %s for %s: %s", a.sandbox_id, ip, name, e.message)
            return
        if self._attached.get(a.sandbox_id) is a:
            a.pins[ip] = (time.time() + ttl, name, denied)

    def _pin_element(self, nft_set: str, link: str, ip: str, ttl: int, renew: bool) -> None:
        """Add `link . ip` to a pin set for `ttl` seconds; `renew`: it may be there already, and a
        timeout is only renewed by adding the element afresh."""
        element = f'"{link}" . {ipaddress.IPv4Address(ip)}'
        add = f"add element {nft_set} {{ {element} timeout {ttl}s }}\n"
        if not renew:
            self.nft.run(add)
            return
        try:
            self.nft.run(f"delete element {nft_set} {{ {element} }}\n" + add)
        except E.RuntimeFailure:  # expired in the kernel meanwhile
            self.nft.run(add)

    def pin_rule(self, a: Attached, name: str, ip: str, until: float) -> None:
        """Send the sandbox's TCP to `ip` (an answer for `name`, which a header rule names) through
        the egress proxy until `until`, if its policy lets it reach `ip` at all."""
        if not self._reaches(a, ip, name):
            return
        ttl = int(min(max(until - time.time(), PIN_MIN_S), PIN_MAX_S))
        try:
            self._pin_element(f"{self.t} rulepins", a.link, ip, ttl, renew=ip in a.rule_pins)
        except E.RuntimeFailure as e:
            log.warning("sandbox %s: could not pin %s for %s's rules: %s", a.sandbox_id, ip, name, e.message)
            return
        if self._attached.get(a.sandbox_id) is a:
            a.rule_pins.setdefault(ip, {})[name] = time.time() + ttl

    def _reaches(self, a: Attached, ip: str, name: str | None) -> bool:
        """Whether the egress chain would pass the sandbox's connection to `ip`, an answer for `name`
        (the chain's order, module docstring)."""
        address = ipaddress.IPv4Address(ip)
        if address in SANDBOX_SUBNET:
            return False
        explicit, allow = split_explicit(a.policy.networks("allow"))
        if any(address in n for n in explicit):
            return True
        if closed(ip):
            return False
        if any(address in n for n in allow) or (name and name_matches(name, a.policy.names("allow"))):
            return True
        pinned = a.pins.get(ip)
        if any(address in n for n in a.policy.networks("deny")) or (pinned and pinned[2]):
            return False
        return a.policy.internet

    def target(self, source: str, ip: str) -> tuple[Attached, set[str], str | None] | None:
        """For the egress proxy, a connection from `source` redirected away from `ip`: the sandbox,
        the rule names `ip` was pinned for, and the allowed name it was pinned for (what a SOCKS5
        proxy is asked for), if the sandbox may reach `ip`; None for anything else. (A rule keyed
        by an address holding `ip` is the proxy's to look up: it comes here only if reachable.)"""
        a = self.resolver.attached(source)
        if a is None or self._attached.get(a.sandbox_id) is not a:
            return None
        now = time.time()
        names = {n for n, until in a.rule_pins.get(ip, {}).items()
                 if until > now and headers_for(a.policy.rules, n) is not None and self._reaches(a, ip, n)}
        pinned = a.pins.get(ip)
        name = pinned[1] if pinned and not pinned[2] and pinned[0] > now else None
        if a.policy.socks:  # all its TCP comes here: the egress chain's question, for every connection
            return (a, names, name or min(names, default=None)) if self._reaches(a, ip, name) or names else None
        if names or headers_for_address(a.policy.rules, ip) is not None and self._reaches(a, ip, name):
            return a, names, name
        return None

    def detach(self, sandbox_id: str, slot: int | None) -> None:
        """Remove everything of the sandbox's network: elements, cap chains, resolver entry, link."""
        with self._lock:
            a = self._attached.pop(sandbox_id, None)
        link = a.link if a else (self.link_name(slot) if slot is not None else None)
        if link is None:
            return
        if a:
            self.resolver.unregister(a.address)
            if self.proxy:  # its proxied connections go with it (their slots are the next sandbox's)
                self.proxy.drop(a.address, wait=False)
            elements = a.elements()
            for ip, (_, _, denied) in a.pins.items():
                elements.setdefault("denypins" if denied else "pins", []).append(f'"{link}" . {ip}')
            elements["rulepins"] = [f'"{link}" . {ip}' for ip in a.rule_pins]
            self._delete(link, elements)
        elif (Path("/sys/class/net") / link).exists() or link in self.links_with_rules():
            self._delete(link, self._elements_of(link))  # a leftover, or one never attached
        if (Path("/sys/class/net") / link).exists():
            self.netlink.delete(link)

    def usage(self, slot: int) -> tuple[int, int]:
        """(bytes out of the sandbox, bytes into it) through its link."""
        return links.link_bytes(self.link_name(slot))

    # ---- leftovers and stop ------------------------------------------------------------------

    def links_with_rules(self) -> set[str]:
        """Links that have elements in this server's table (a sandbox with a network loaded)."""
        out = json.loads(self.nft.run(f"list map {self.t} verdicts\n", json_output=True) or "{}")
        found = set()
        for item in out.get("nftables", []):
            for elem in (item.get("map") or {}).get("elem", []):
                key = _element_key(elem)
                if key:
                    found.add(key[0])
        return found

    def slots_with_rules(self) -> set[int]:
        n = len(self.prefix)
        return {int(link[n:]) for link in self.links_with_rules() if link[n:].isdigit()}

    def sweep(self, claimed_slots: set[int]) -> None:
        """Remove what this server holds for slots no sandbox holds (a crash mid-create or mid-kill)."""
        stale = {n for n in links.host_links(self.prefix) if not _slot_in(n[len(self.prefix):], claimed_slots)}
        stale |= {link for link in self.links_with_rules() if not _slot_in(link[len(self.prefix):], claimed_slots)}
        for link in sorted(stale):
            log.info("removing leftover sandbox network %s", link)
            self._delete(link, self._elements_of(link))
            if (Path("/sys/class/net") / link).exists():
                self.netlink.delete(link)

    def close(self, sandboxes_left: bool) -> None:
        self.resolver.stop()
        if self.proxy:
            self.proxy.stop()
        if not sandboxes_left:
            self.forward.remove()
            try:
                self.nft.run(f"delete table {self.t}\n")
            except E.RuntimeFailure as e:
                log.error("could not remove nftables table %s: %s", self.table, e.message)
            self.state_file.unlink(missing_ok=True)
        self.nft.close()
        self.netlink.close()


def _slot_in(suffix: str, slots: set[int]) -> bool:
    return suffix.isdigit() and int(suffix) in slots


def _element_key(elem) -> list[str] | None:
    """An element of an `ifname [. ipv4_addr]` set or map, from nftables' JSON, as its parts
    (the address part in nft syntax: 10.0.0.0/8, 1.2.3.4)."""
    if isinstance(elem, dict) and "elem" in elem:  # with a timeout or a comment
        elem = elem["elem"]["val"]
    if isinstance(elem, list):  # a map element: [key, value]
        elem = elem[0]
    if isinstance(elem, str):
        return [elem]
    if isinstance(elem, dict) and "concat" in elem:
        parts = []
        for p in elem["concat"]:
            if isinstance(p, dict) and "prefix" in p:
                parts.append(f"{p['prefix']['addr']}/{p['prefix']['len']}")
            elif isinstance(p, dict) and "range" in p:
                parts.append(f"{p['range'][0]}-{p['range'][1]}")
            else:
                parts.append(str(p))
        return parts
    return None


def start_network(server: str, home: Path, tls: EgressTls | None = None, team_share: float = TEAM_SHARE):
    """The server's egress machinery, or (None, why not): a host without nftables still runs
    sandboxes, without networks."""
    try:
        return Network(server, home, tls, team_share), None
    except (E.SandlotError, OSError) as e:
        reason = e.message if isinstance(e, E.SandlotError) else str(e)
        log.warning("sandbox networking unavailable: %s", reason)
        return None, reason


def write_resolv_conf(upper: Path, slot: int, base: int) -> None:
    """The sandbox's /etc/resolv.conf names its gateway (all its DNS goes to the server's resolver
    anyway), written into its empty layer before anything of the sandbox's runs."""
    etc = upper / "etc"
    etc.mkdir(mode=0o755)
    os.chown(etc, base, base)
    path = etc / "resolv.conf"
    path.write_text(f"nameserver {addresses(slot)[0].split('/')[0]}\noptions timeout:2 attempts:2\n")
    os.chown(path, base, base)
    os.chmod(path, 0o644)
