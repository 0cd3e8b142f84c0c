"""A sandbox's network as the control plane keeps it (issue 12): what a create may have here
(SANDLOT_EGRESS, the runtime's support), the links pool sandboxes have made ahead, live updates one
at a time per sandbox, the ingress settings the port proxy reads, and networks taken over after a
restart, and the egress CA a sandbox with header rules trusts. The substance (links, nftables, DNS,
the rules' proxy) is runtimes/network.py's."""

from __future__ import annotations

import asyncio
import logging

from .. import _exceptions as E
from ..runtimes.interface import Runtime
from ..runtimes.policy import NetworkPolicy
from . import identity
from .config import Config
from .journal import Journal
from .live import Sandboxes
from .pools import Pooled
from .store import SandboxRecord, Store

log = logging.getLogger("sandlot.service")

# A pool sandbox claimed without a network has its unused link removed this much later: after
# the create has answered (~20-50 ms of work the create should not wait for).
UNUSED_LINK_DELAY = 0.1

# Where a sandbox with network.rules finds the egress CA (Debian's layout): its own file, appended to
# the system bundle (curl, OpenSSL, Go), and variables for the programs that bring their own
# bundle (Python's requests and certifi, Node), set by the login profile the SDKs' commands run.
CA_FILE = "/usr/local/share/ca-certificates/sandlot-egress.crt"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
CA_PROFILE = "/etc/profile.d/sandlot-egress-ca.sh"
CA_ENV = (f"export SSL_CERT_FILE={CA_BUNDLE} REQUESTS_CA_BUNDLE={CA_BUNDLE} "
          f"NODE_EXTRA_CA_CERTS={CA_FILE}\n").encode()


class SandboxNetworks:
    def __init__(self, sandboxes: Sandboxes, config: Config, runtime: Runtime, store: Store, journal: Journal):
        self.sandboxes, self.config, self.runtime, self.store, self.journal = sandboxes, config, runtime, store, journal
        self._locks: dict[str, asyncio.Lock] = {}  # a sandbox's network changes, one at a time
        self.egress_tls = None  # the rules proxy's CA and upstream trust (app.py sets it)
        self.identity: identity.Issuer | None = None  # workload identity tokens' signer (app.py sets it)

    def adopt(self, rec: SandboxRecord, running: bool = True) -> None:
        egress = egress_of(rec)
        if egress is None:
            return
        try:
            if self.config.egress == "off":  # started sealed: what an earlier run gave is taken away
                log.warning("sandbox %s: its network is removed (SANDLOT_EGRESS=off)", rec.id)
                if running:
                    self.runtime.set_network(rec.id, None)
                rec.network = network_record(None, (rec.network or {}).get("ingress", {}), iam_of(rec))
                self.store.update(rec.id, network=rec.network)
            elif running:  # the table outlived the server; the resolver must know it again
                self.runtime.set_network(rec.id, egress, adopting=True, team=rec.team)
        except Exception:
            log.exception("sandbox %s: could not take its network over again", rec.id)

    def for_pooled(self, pooled: Pooled, egress: NetworkPolicy | None, team: str) -> None:
        """A claimed pool sandbox's network: its link made ready ahead is attached under `egress`
        here, on the event loop (~1.2 ms: in a worker thread, the GIL's hand-offs with the create
        going on beside it made the create ~0.5 ms slower, and it waited for the thread anyway);
        without one, the unused link goes after the create has answered (~20-50 ms). `team`: the
        claiming request's."""
        rt = pooled.rt
        if egress is not None:
            self.runtime.set_network(rt.sandbox_id, egress, team=team)
        elif pooled.spec.network_ready:
            loop = asyncio.get_running_loop()
            loop.call_later(UNUSED_LINK_DELAY, lambda: loop.create_task(self._drop_unused_link(rt.sandbox_id)))

    async def _drop_unused_link(self, sandbox_id: str) -> None:
        async with self.lock(sandbox_id):  # not over a network given meanwhile
            live = self.sandboxes.live.get(sandbox_id) or self.sandboxes.paused.get(sandbox_id)
            if live is None or (live.record.network or {}).get("egress") is not None:
                return
            try:
                await asyncio.to_thread(self.runtime.set_network, sandbox_id, None)
            except (E.NotFound, E.SandboxNotRunning):  # killed meanwhile: kill removed the link
                pass
            except Exception:
                log.exception("sandbox %s: could not remove its unused link", sandbox_id)

    def lock(self, sandbox_id: str) -> asyncio.Lock:
        lock = self._locks.get(sandbox_id)
        if lock is None:
            lock = self._locks[sandbox_id] = asyncio.Lock()
        return lock

    def forget(self, sandbox_id: str) -> None:
        self._locks.pop(sandbox_id, None)
        if self.identity is not None:
            self.identity.forget(sandbox_id)

    def resolve_identity(self, sandbox_id: str, headers):
        """For the egress proxy (its thread): a rule's headers with the sandbox's workload identity
        placeholders replaced by tokens minted now; ValueError if it has no such token."""
        live = self.sandboxes.live.get(sandbox_id)
        if live is None or self.identity is None:
            raise ValueError(f"sandbox {sandbox_id}: no workload identity here")
        rec = live.record
        return self.identity.resolve(sandbox_id, rec.team, rec.template, iam_of(rec), headers)

    def allowed(self, egress: NetworkPolicy | None) -> NetworkPolicy | None:
        """What this server gives: with SANDLOT_EGRESS=off, or where the runtime has no networks, a
        bare `allow_internet_access: true` (which the e2b SDK up to 2.50 sends on every create)
        gets no network, and getInfo says so; rules are refused (403 where the operator turned
        egress off, 501 where the runtime cannot enforce them)."""
        if egress is None:
            return None
        off = self.config.egress == "off"
        missing = "outbound access is off on this server (SANDLOT_EGRESS=off)" if off else \
            getattr(self.runtime, "network_missing", None)
        if missing is None:
            return egress
        if egress == NetworkPolicy():
            log.info("no network for a sandbox that asked for internet access: %s", missing)
            return None
        if off:
            raise E.PermissionDenied(f"sandboxes get no outbound network here: {missing}; allowOut, denyOut, "
                                     "dnsServers, rules, egressProxy and bandwidthMbps are refused")
        raise E.Unsupported(f"this server cannot give sandboxes a network: {missing}")

    async def trust_ca(self, live, egress: NetworkPolicy | None, fresh: bool = False) -> None:
        """Make the sandbox trust the egress CA, if `egress` has header rules. Written by the
        sandbox's agent as root inside the sandbox, so whatever the sandbox did to these paths
        (a symlink out) stays inside it; only the CA's certificate goes in, never a key or a secret.
        `fresh`: a sandbox being created, which cannot have it yet (~6-9 ms for the writes)."""
        if egress is None or not egress.rules or live.agent is None:
            return
        if self.egress_tls is None:
            raise E.Unsupported("this server has no egress CA: network.rules cannot be applied")
        agent, pem = live.agent, self.egress_tls.ca.cert_pem
        try:  # its own file, written last, says it is done (a live update need not read the bundle)
            # one byte more than the certificate tells a different file: the sandbox's root may have
            # put terabytes there (a sparse file costs it nothing), so no more is read
            installed = b"" if fresh else await _head(agent, CA_FILE, len(pem) + 1)
        except E.NotFound:
            installed = b""
        if installed == pem:
            return
        await asyncio.gather(agent.write(CA_BUNDLE, "root", b"\n" + pem, append=True),
                             agent.write(CA_PROFILE, "root", CA_ENV))
        await agent.write(CA_FILE, "root", pem)

    async def update(self, sandbox_id: str, egress: NetworkPolicy | None) -> None:
        """Replace the sandbox's egress policy live (E2B's PUT /sandboxes/{id}/network)."""
        live = self.sandboxes.known(sandbox_id)
        egress = self.allowed(egress)
        identity.check_references(egress.rules if egress else (), iam_of(live.record))
        async with self.lock(sandbox_id):
            await self.trust_ca(live, egress)  # trusted before the rules apply
            await asyncio.to_thread(self.runtime.set_network, sandbox_id, egress, team=live.record.team)
            live.record.network = network_record(egress, (live.record.network or {}).get("ingress", {}),
                                                 iam_of(live.record))
            self.store.update(sandbox_id, network=live.record.network)
        network = egress.describe() if egress is not None else "none"
        log.info("sandbox %s network updated: %s", sandbox_id, network)
        self.journal.record(sandbox_id, f"network updated: {network}", network=network)

    def set_ingress(self, sandbox_id: str, **fields) -> None:
        """Change the ingress settings the port proxy reads (server/proxy.py), e.g. exposures."""
        rec = self.sandboxes.record(sandbox_id)
        net = rec.network or network_record(None, {})
        net["ingress"] = {**(net.get("ingress") or {}), **fields}
        rec.network = net
        self.store.update(sandbox_id, network=net)

    def usage(self, sandbox_id: str) -> tuple[int, int]:
        usage = getattr(self.runtime, "network_usage", None)
        return usage(sandbox_id) if usage else (0, 0)

def network_record(egress: NetworkPolicy | None, ingress: dict, iam: dict | None = None) -> dict:
    record = {"egress": None if egress is None else egress.as_json(), "ingress": ingress}
    return {**record, "iam": iam} if iam else record


def iam_of(rec: SandboxRecord) -> dict:
    """The sandbox's workload identity tokens (identity.py), {} if none."""
    return (rec.network or {}).get("iam") or {}


def egress_of(rec: SandboxRecord) -> NetworkPolicy | None:
    egress = (rec.network or {}).get("egress")
    return None if egress is None else NetworkPolicy.from_json(egress)


async def _head(agent, path: str, limit: int) -> bytes:
    """The first `limit` bytes of a file of the sandbox (as root); the rest is not read."""
    data = bytearray()
    stream = agent.read(path, "root")
    try:
        await anext(stream)  # its entry
        async for chunk in stream:
            data += chunk[:limit - len(data)]
            if len(data) >= limit:
                break
    finally:
        await stream.aclose()
    return bytes(data)
