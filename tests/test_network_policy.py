"""Network policy (issue 12): E2B's network fields as sandlot's policy data (runtimes/policy.py) and the rule split
(runtimes/network.py): no server needed."""

from __future__ import annotations

import ipaddress

import pytest

from sandlot._exceptions import InvalidArgument
from sandlot.runtimes.attachment import Attached, split_explicit
from sandlot.runtimes.network import addresses
from sandlot.runtimes.policy import SANDBOX_SUBNET, NetworkPolicy, name_matches

ALL = "0.0.0.0/0"


@pytest.mark.parametrize("access, allow, deny, expected", [
    (None, None, None, None),  # nothing asked: no network (sandlot's default, unlike E2B's)
    (False, None, None, None),
    (False, ["a.test"], None, NetworkPolicy(internet=False, allow=("a.test",))),
    (True, None, None, NetworkPolicy()),
    (None, ["a.test"], [ALL], NetworkPolicy(allow=("a.test",), deny=(ALL,))),
    (None, None, ["10.0.0.0/8"], NetworkPolicy(deny=("10.0.0.0/8",))),
])
def test_from_e2b(access, allow, deny, expected):
    assert NetworkPolicy.from_e2b(access, allow, deny) == expected


def test_open_to_all_is_what_get_info_reports():
    assert NetworkPolicy().open_to_all()
    assert not NetworkPolicy(allow=("a.test",), deny=(ALL,)).open_to_all()
    assert not NetworkPolicy(internet=False, allow=("a.test",)).open_to_all()
    assert NetworkPolicy(internet=False, allow=(ALL,)).open_to_all()
    assert NetworkPolicy(deny=("10.0.0.0/8",)).open_to_all()


@pytest.mark.parametrize("bad", ["", " ", "a b", "-a.test", "a..test", "::1", "fe80::/10", "*", "x" * 254,
                                 "10.0.0.0/33", "http://a.test"])
def test_bad_entries_are_refused(bad):
    with pytest.raises(InvalidArgument):
        NetworkPolicy(allow=(bad,)).validate()


def test_limits_on_sizes_and_servers():
    with pytest.raises(InvalidArgument):
        NetworkPolicy(allow=tuple(f"h{i}.test" for i in range(257))).validate()
    with pytest.raises(InvalidArgument):
        NetworkPolicy(dns_servers=tuple("1.1.1.1" for _ in range(11))).validate()
    with pytest.raises(InvalidArgument):
        NetworkPolicy(dns_servers=("dns.test",)).validate()
    for closed in ("169.254.169.254", "127.0.0.53", "10.200.0.1"):  # asked from the host: never these
        with pytest.raises(InvalidArgument):
            NetworkPolicy(dns_servers=(closed,)).validate()
    NetworkPolicy(allow=("*.Example.TEST.", "10.1.2.3", "192.168.0.0/16"), dns_servers=()).validate()


def test_names_and_wildcards():
    pol = NetworkPolicy(allow=("a.test", "*.wild.test", "10.0.0.1"))
    assert pol.names("allow") == ["a.test", "*.wild.test"]
    assert pol.networks("allow") == [ipaddress.IPv4Network("10.0.0.1/32")]
    patterns = pol.names("allow")
    assert name_matches("A.Test.", patterns) and name_matches("x.y.wild.test", patterns)
    assert not name_matches("wild.test", patterns)  # a wildcard is below the zone only
    assert not name_matches("b.a.test", patterns) and not name_matches("evilwild.test", patterns)


def test_broad_allows_never_open_closed_ranges():
    nets = [ipaddress.IPv4Network(n) for n in (ALL, "169.254.169.254/32", "198.18.0.0/24", "127.0.0.1/32",
                                               "10.200.0.6/32", "192.0.2.2/32")]
    explicit, rest = split_explicit(nets)
    assert ipaddress.IPv4Network("169.254.169.254/32") in explicit
    assert ipaddress.IPv4Network("192.0.2.2/32") in explicit  # a single address: maybe the host's, on purpose
    assert rest == [ipaddress.IPv4Network(ALL)]  # 198.18.0.0/24 is inside it: collapsed
    assert split_explicit([ipaddress.IPv4Network("198.18.0.0/24")]) == ([], [ipaddress.IPv4Network("198.18.0.0/24")])
    assert not any(n.subnet_of(SANDBOX_SUBNET) for n in explicit + rest)  # other sandboxes: never


def test_elements_and_addresses():
    assert addresses(0) == ("10.200.0.1/30", "10.200.0.2/30")
    assert addresses(3) == ("10.200.0.13/30", "10.200.0.14/30")
    a = Attached("isb", "slabcdef-3", "10.200.0.14",
                 NetworkPolicy(internet=False, allow=("10.0.0.0/8", "10.1.0.0/16", "a.test"), deny=(ALL,),
                               bandwidth_mbps=8))
    e = a.elements()
    assert e["allow"] == ['"slabcdef-3" . 10.0.0.0/8']  # overlapping entries collapse (interval sets)
    assert e["deny"] == ['"slabcdef-3" . 0.0.0.0/0']
    assert e["verdicts"] == ['"slabcdef-3" : drop'] and e["sources"] == ['"slabcdef-3" . 10.200.0.14']
    assert e["up"] and e["down"]


# ---- network.rules (runtimes/egress_rules.py) and the proxy's ClientHello reading -------------------

def test_rules_merge_in_order_and_match_exact_then_longest_wildcard():
    from sandlot.runtimes.egress_rules import headers_for, parse

    rules = parse({"API.test.": [{"transform": {"headers": {"A": "1", "B": "1"}}},
                                 {"transform": {"headers": {"a": "2"}}}],
                   "*.test": [{"transform": {"headers": {"W": "short"}}}],
                   "*.deep.test": [{"transform": {"headers": {"W": "long"}}}]})
    assert headers_for(rules, "api.test") == (("a", "2"), ("B", "1"))  # a later rule replaces
    assert headers_for(rules, "x.deep.test") == (("W", "long"),)
    assert headers_for(rules, "x.y.other.test") == (("W", "short"),)
    assert headers_for(rules, "test") is None  # a wildcard never matches its apex
    pol = NetworkPolicy.from_e2b(True, rules=rules)
    assert NetworkPolicy.from_json(pol.as_json()) == pol
    assert pol.describe() == "internet, header rules for 3 hosts"  # logged: names no value


def test_client_hello_sni_is_read_from_a_real_hello():
    import ssl

    from sandlot.runtimes.egress_http import client_hello_sni

    ctx = ssl.create_default_context()
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="Api.Example.test")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = out.read()
    assert client_hello_sni(hello) == "api.example.test"
    assert client_hello_sni(hello[:40]) is None
    assert client_hello_sni(b"GET / HTTP/1.1\r\n") is None
