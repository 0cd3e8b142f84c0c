"""Prometheus metrics, served at /metrics (docs/operations.md lists them).

Counters and histograms are updated as things happen (requests by observe.py, lifecycle events by
events.py); gauges of what exists now (sandboxes by state and template, warm pools, usage per team)
are read from the service when Prometheus scrapes, from what it already holds: a scrape never walks
a sandbox's files. Requests are also counted per team and API key id (teams.py).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from .config import Config
from .live import Sandboxes
from .pools import Pools

EXEC_ROUTE = "/process.Process/Start"  # a command or PTY started through envd
CREATE_ROUTES = {"/sandboxes", "/v2/sandboxes"}
_LIFECYCLE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_FAST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)  # the server's own memory, CPU and open fds
        self.requests = Counter("sandlot_http_requests", "HTTP requests answered, by route template and status.",
                                ["method", "route", "status"], registry=r)
        self.request_seconds = Histogram(
            "sandlot_http_request_duration_seconds", "Time from request to the end of the answer (streams included).",
            ["method", "route"], buckets=_FAST_BUCKETS, registry=r)
        self.team_requests = Counter("sandlot_team_api_requests", "Control-plane requests per team and API key id.",
                                     ["team", "key"], registry=r)
        self.team_creates = Counter("sandlot_team_sandbox_creates", "Sandboxes created per team and API key id.",
                                    ["team", "key"], registry=r)
        self.creates = Counter("sandlot_sandbox_creates", "Sandbox creates, by template and outcome (ok, error).",
                               ["template", "outcome"], registry=r)
        self.create_seconds = Histogram("sandlot_sandbox_create_duration_seconds",
                                        "Time to create a sandbox; pooled=true when a warm one was taken.",
                                        ["template", "pooled"], buckets=_LIFECYCLE_BUCKETS, registry=r)
        self.kills = Counter("sandlot_sandbox_kills", "Sandboxes ended, by reason (killed, timeout, ...).",
                             ["reason"], registry=r)
        self.kill_seconds = Histogram("sandlot_sandbox_kill_duration_seconds", "Time to remove a sandbox.",
                                      buckets=_LIFECYCLE_BUCKETS, registry=r)
        self.execs = Counter("sandlot_exec_starts", "Processes started through envd (Process.Start), by status.",
                             ["status"], registry=r)
        self.exec_seconds = Histogram("sandlot_exec_start_duration_seconds",
                                      "Time from a Process.Start request to its first event (the process started).",
                                      buckets=_FAST_BUCKETS, registry=r)
        self.dropped_connections = Counter(
            "sandlot_dropped_connections", "Client connections closed by the server: header_timeout, over_limit.",
            ["reason"], registry=r)

    def watch(self, sandboxes: Sandboxes, pools: Pools, config: Config) -> None:
        """Report the service's sandboxes and pools at each scrape."""
        self.registry.register(_ServiceCollector(sandboxes, pools, config))

    def request(self, method: str, route: str, status: int, seconds: float, first_byte: float | None,
                key_id: str | None, team: str | None = None) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route).observe(seconds)
        if key_id is not None and team is not None:
            self.team_requests.labels(team, key_id).inc()
            if route in CREATE_ROUTES and method == "POST" and status == 201:
                self.team_creates.labels(team, key_id).inc()
        if route == EXEC_ROUTE:
            self.execs.labels(str(status)).inc()
            if first_byte is not None and status == 200:
                self.exec_seconds.observe(first_byte)

    async def endpoint(self, request: Request) -> Response:
        """Prometheus text exposition of every sandlot metric."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _ServiceCollector:
    def __init__(self, sandboxes: Sandboxes, pools: Pools, config: Config):
        self.sandboxes, self.pools, self.config = sandboxes, pools, config

    def collect(self):
        held = self.sandboxes
        by_state = GaugeMetricFamily("sandlot_sandboxes", "Sandboxes that exist now, by state and template.",
                                     labels=["state", "template"])
        tally = Tally((live.record.state, live.record.template)
                      for live in (*held.live.values(), *held.paused.values()))
        for (state, template), n in sorted(tally.items()):
            by_state.add_metric([state, template], n)
        yield by_state

        pools = GaugeMetricFamily("sandlot_pool_ready", "Warm sandboxes ready to be claimed, by template.",
                                  labels=["template"])
        for template, n in sorted(self.pools.sizes().items()):
            pools.add_metric([template], n)
        yield pools
        target = GaugeMetricFamily("sandlot_pool_target", "Warm sandboxes kept per pooled template (SANDLOT_POOL_SIZE).",
                                   labels=["template"])
        for template in self.config.pool_templates:
            target.add_metric([template], self.pools.target(template))
        yield target

        yield from _team_usage(held)


def _team_usage(held: Sandboxes):
    """What the team's sandboxes were granted and used at their last sample (every 5 s)."""
    sandboxes = GaugeMetricFamily("sandlot_team_sandboxes", "Sandboxes per team and state.", labels=["team", "state"])
    memory = GaugeMetricFamily("sandlot_team_memory_limit_bytes", "Memory granted to the team's running sandboxes.",
                               labels=["team"])
    cpus = GaugeMetricFamily("sandlot_team_cpu_limit", "CPUs granted to the team's running sandboxes.", labels=["team"])
    used = GaugeMetricFamily("sandlot_team_memory_used_bytes",
                             "Memory the team's running sandboxes used at their last sample.", labels=["team"])
    disk = GaugeMetricFamily("sandlot_team_disk_used_bytes",
                             "Disk the team's running sandboxes used at their last sample.", labels=["team"])
    running, paused = defaultdict(list), Tally(live.record.team for live in held.paused.values())
    for live in held.live.values():
        running[live.record.team].append(live)
    for team in sorted(set(running) | set(paused)):
        mine = running[team]
        sandboxes.add_metric([team, "running"], len(mine))
        sandboxes.add_metric([team, "paused"], paused[team])
        memory.add_metric([team], sum(live.record.limits.get("memory_mb", 0) for live in mine) * 1024 * 1024)
        cpus.add_metric([team], sum(live.record.limits.get("cpu_count", 0) for live in mine))
        last = [live.samples[-1] for live in mine if live.samples]
        used.add_metric([team], sum(s["mem_used"] for s in last))
        disk.add_metric([team], sum(s["disk_used"] for s in last))
    yield from (sandboxes, memory, cpus, used, disk)
