"""A sandbox on its server's network (network.py): its link, its address, its policy, what its
resolver pinned (dns.py), and the nft set and map elements its policy makes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .egress_rules import address_keys
from .policy import ALWAYS_BLOCKED, SANDBOX_SUBNET, NetworkPolicy


@dataclass
class Attached:
    """A sandbox whose link is configured and whose elements are loaded."""

    sandbox_id: str
    link: str
    address: str  # the sandbox's own address
    policy: NetworkPolicy
    # whose share of the host's egress budgets it counts against (budgets.py); None: its own bounds only
    team: str | None = None
    pins: dict[str, tuple[float, str, bool]] = field(default_factory=dict)  # ip -> (until, name, denied)
    rule_pins: dict[str, dict[str, float]] = field(default_factory=dict)  # ip -> {rule name: until}

    def elements(self) -> dict[str, list[str]]:
        """The set and map elements its policy makes, by set name (nft syntax)."""
        explicit, allow = split_explicit(self.policy.networks("allow"))
        key = f'"{self.link}" . '
        found = {"sources": [key + self.address],
                 "explicit": [key + str(n) for n in explicit], "allow": [key + str(n) for n in allow],
                 "deny": [key + str(n) for n in ipaddress.collapse_addresses(self.policy.networks("deny"))],
                 "verdicts": [f'"{self.link}" : {"accept" if self.policy.internet else "drop"}']}
        if self.policy.rules:  # rules keyed by address: their TCP goes to the egress proxy
            found["ruleaddrs"] = [key + str(n) for n in address_keys(self.policy.rules)]
        if self.policy.socks:
            found["socks"] = [f'"{self.link}"']
        if self.policy.bandwidth_mbps:
            found["up"] = [f'"{self.link}" : jump {cap_chain(self.link, "up")}']
            found["down"] = [f'"{self.link}" : jump {cap_chain(self.link, "down")}']
        return found


def cap_chain(link: str, way: str) -> str:
    return f"cap_{way}_{link.replace('-', '_')}"


def split_explicit(nets: list[ipaddress.IPv4Network]):
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
    # an interval set refuses overlapping elements of one key
    return list(ipaddress.collapse_addresses(explicit)), list(ipaddress.collapse_addresses(rest))
