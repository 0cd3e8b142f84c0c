"""sandlot and its peers (Docker, gVisor) on the same workload in the same run; writes docs/benchmarks.md.

    sudo .venv/bin/python benchmarks/peers.py [--runs 20] [--burst 100] [--live 10] [--install]

Peers: Docker (Debian's docker.io) driven through the Docker Engine API (docker-py, not the CLI),
and gVisor (Debian's runsc, ptrace platform: the only one that runs on these VMs) as a Docker
runtime. Nothing is installed unless `--install` is given: then missing packages are installed with
`apt-get install -y docker.io runsc` (the same opt-in: `scripts/install-system-deps.sh --peers`).

The script starts its own dockerd with `--iptables=false --ip6tables=false --bridge=none` and a
private data root, exec root, pidfile, socket and cgroup parent, so it changes no firewall rule and
touches no other Docker; containers run with network none, as sandlot's sandboxes do by default.
The image is `docker import` of sandlot's own `base` rootfs (no registry is reachable). At the end
every container is removed (any left over is reported), dockerd is stopped and everything it made
is unmounted and deleted.

Workload, for each of sandlot / docker / gvisor: run -> first `echo` (sandlot: create -> first
`echo`; docker: run a container, exec `echo` in it; and docker's own `run --rm echo`), exec `true`
round trip on a live one, exec throughput with `--live` live ones (a client loop each), `--burst`
concurrent runs, idle memory (PSS of its processes; docker: the container's and its shim's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report import machine, pct, pss_of_pids, timed, write_section  # noqa: E402
from scale import Bench  # noqa: E402
from support import TEMPLATE_CACHE  # noqa: E402 (scale.py put tests/ on the path)

IMAGE = "sandlot-base:peers"


def ensure(binary: str, package: str, install: bool) -> bool:
    if shutil.which(binary):
        return True
    if not install:
        print(f"{binary} not found: install {package} (or pass --install)", file=sys.stderr)
        return False
    print(f"{binary} not found: running apt-get install -y {package}", flush=True)
    subprocess.run(["apt-get", "install", "-y", package], check=True,
                   env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    return shutil.which(binary) is not None


class Dockerd:
    """A private dockerd: its own roots, socket and cgroup parent; no iptables, no bridge."""

    def __init__(self, runsc: str | None):
        self.dir = Path(tempfile.mkdtemp(prefix="slp-", dir="/var/tmp"))
        self.exec_root = Path(tempfile.mkdtemp(prefix="slp-", dir="/run"))  # short: containerd's socket paths
        self.sock = self.exec_root / "docker.sock"
        self.cgroup_parent = "sandlot-peers-" + self.dir.name
        config = {"runtimes": {"runsc": {"path": runsc, "runtimeArgs": ["--platform=ptrace", "--network=none"]}}} if runsc else {}
        (self.dir / "daemon.json").write_text(json.dumps(config))
        self.log = open(self.dir / "dockerd.log", "wb")
        self.proc = subprocess.Popen(
            ["dockerd", "--iptables=false", "--ip6tables=false", "--bridge=none", "--ip-forward=false",
             "--ip-masq=false", "--data-root", str(self.dir / "data"), "--exec-root", str(self.exec_root),
             "--pidfile", str(self.exec_root / "docker.pid"), "--host", f"unix://{self.sock}",
             "--cgroup-parent", self.cgroup_parent, "--config-file", str(self.dir / "daemon.json")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        import docker

        deadline = time.monotonic() + 60
        while True:
            try:
                self.client = docker.DockerClient(base_url=f"unix://{self.sock}", timeout=300)
                self.client.ping()
                break
            except Exception:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("dockerd did not start:\n" + (self.dir / "dockerd.log").read_text()[-3000:])
                time.sleep(0.2)

    def pids(self) -> list[int]:
        """dockerd, its containerd and the shims: every process naming our roots."""
        found = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    cmd = Path(f"/proc/{name}/cmdline").read_bytes()
                except OSError:
                    continue
                if str(self.exec_root).encode() in cmd or str(self.dir).encode() in cmd:
                    found.append(int(name))
        return found

    def cpu_s(self) -> float:
        """CPU of the daemons (ticks) and of the containers (their cgroup parent's cpuacct, ns)."""
        from cputime import TICK, _stat, group_usage_s

        total = 0.0
        for pid in self.pids():
            try:
                f = _stat(pid)
                total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) * TICK
            except (OSError, IndexError):
                pass
        return total + group_usage_s(self.cgroup_parent)

    def close(self) -> list[str]:
        """Remove every container, stop dockerd, unmount and delete what it made; what was left."""
        left = []
        try:
            for c in self.client.containers.list(all=True):
                left.append(f"container {c.short_id} ({c.status})")
                c.remove(force=True)
            self.client.close()
        except Exception as e:  # dockerd gone: what it left is found below
            left.append(f"could not list containers: {e}")
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pid in self.pids():  # a shim or containerd that outlived dockerd
            left.append(f"process {pid} {Path(f'/proc/{pid}/comm').read_text().strip()}")
            os.kill(pid, signal.SIGKILL)
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if str(self.dir) in line.split()[4] or str(self.exec_root) in line.split()[4]]
        for m in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", m], check=False)
        left += [f"mount {m}" for m in mounts]
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.exec_root, ignore_errors=True)
        for controller in Path("/sys/fs/cgroup").iterdir():
            group = controller / self.cgroup_parent
            if group.is_dir():
                for sub in group.iterdir():
                    if sub.is_dir():
                        sub.rmdir()
                group.rmdir()
        return left

    def import_base(self, rootfs: Path) -> None:
        tar = self.dir / "base.tar"
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tar), "."], check=True)
        self.client.api.import_image_from_file(str(tar), repository=IMAGE.split(":")[0], tag=IMAGE.split(":")[1])
        tar.unlink()


def docker_workload(d: Dockerd, runtime: str, args) -> dict:
    """The workload on Docker with `runtime` (runc or runsc); seconds per operation, CPU, memory."""
    client, m = d.client, {}
    opts = {"network_mode": "none", "runtime": runtime}
    runs = args.runs if runtime == "runc" else max(5, args.runs // 2)

    def run_rm():
        assert client.containers.run(IMAGE, ["echo", "hi"], remove=True, **opts) == b"hi\n"

    made = []

    def run_then_exec():
        c = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, **opts)
        made.append(c)
        assert c.exec_run(["echo", "hi"]).output == b"hi\n"

    run_rm()  # warm the daemon and the image's layers
    m["run --rm `echo`"] = timed(run_rm, runs)
    m["run -> first `echo`"] = timed(run_then_exec, runs)
    for c in made:
        c.remove(force=True)
    live = client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, **opts)
    m["exec `true` round trip"] = timed(lambda: live.exec_run(["true"]), runs * 4)
    m["exec `bash -l -c true` round trip"] = timed(lambda: live.exec_run(["bash", "-l", "-c", "true"]), runs * 4)
    live.remove(force=True)

    # throughput: `live` containers, one client thread each
    n_live = args.live
    boxes = [client.containers.run(IMAGE, ["sleep", "infinity"], detach=True, **opts) for _ in range(n_live)]
    time.sleep(1)
    pss = [pss_of_pids(_container_pids(d, c)) for c in boxes]
    shims = [pss_of_pids(_shim_pids(d, c)) for c in boxes]
    m["idle PSS"] = [a + b for a, b in zip(pss, shims)]
    m["idle shim PSS"] = shims
    lat, stop = [], time.perf_counter() + args.seconds
    lock = threading.Lock()

    def loop(c):
        while time.perf_counter() < stop:
            t = time.perf_counter()
            c.exec_run(["true"])
            with lock:
                lat.append(time.perf_counter() - t)

    import resource

    cpu0, r0, t0 = d.cpu_s(), resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    with ThreadPoolExecutor(n_live) as pool:
        list(pool.map(loop, boxes))
    elapsed = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = d.cpu_s() - cpu0 + (r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime)
    m["throughput"] = [len(lat) / elapsed]
    m["CPU per exec"] = [cpu / len(lat)]
    m[f"exec `true`, {n_live} loops at once"] = lat
    for c in boxes:
        c.remove(force=True)

    # a burst of concurrent runs
    def one(_):
        t = time.perf_counter()
        run_rm()
        return time.perf_counter() - t

    with ThreadPoolExecutor(args.burst) as pool:
        t0 = time.perf_counter()
        m[f"{args.burst} concurrent run --rm `echo`"] = list(pool.map(one, range(args.burst)))
        m["burst wall"] = [time.perf_counter() - t0]
    return m


def _container_pids(d: Dockerd, c) -> list[str]:
    c.reload()
    for controller in ("pids", "memory"):
        procs = Path("/sys/fs/cgroup") / controller / d.cgroup_parent / c.id / "cgroup.procs"
        if procs.exists():
            return procs.read_text().split()
    return [str(c.attrs["State"]["Pid"])]


def _shim_pids(d: Dockerd, c) -> list[int]:
    return [p for p in d.pids() if c.id.encode() in Path(f"/proc/{p}/cmdline").read_bytes()]


async def sandlot_workload(args) -> dict:
    """The same workload on sandlot, through the async e2b SDK."""
    b = Bench(argparse.Namespace(pool=0, profile=False, demand=False))
    m = {}
    try:
        async def create_echo():
            s = await b.create()
            assert (await s.commands.run("echo hi")).stdout == "hi\n"
            return s

        await (await create_echo()).kill()
        samples = []
        for _ in range(args.runs):
            t = time.perf_counter()
            s = await create_echo()
            samples.append(time.perf_counter() - t)
            await s.kill()
        m["run -> first `echo`"] = samples
        s = await b.create()
        samples = []
        for _ in range(args.runs * 4):
            t = time.perf_counter()
            await s.commands.run("true")
            samples.append(time.perf_counter() - t)
        m["exec `true` round trip"] = samples
        m["exec `bash -l -c true` round trip"] = samples  # E2B's `true` runs as `bash -l -c true`
        await s.kill()

        boxes = await b.many(args.live)
        await asyncio.sleep(1)
        from report import sandbox_pids

        m["idle PSS"] = [pss_of_pids(sandbox_pids(x.sandbox_id)) for x in boxes]
        lat, stop = [], time.perf_counter() + args.seconds

        async def loop(x):
            while time.perf_counter() < stop:
                t = time.perf_counter()
                await x.commands.run("true")
                lat.append(time.perf_counter() - t)

        c0, t0 = b.cpu.sample(), time.perf_counter()
        await asyncio.gather(*(loop(x) for x in boxes))
        elapsed = time.perf_counter() - t0
        m["throughput"] = [len(lat) / elapsed]
        m["CPU per exec"] = [(b.cpu.sample() - c0).total / len(lat)]
        m[f"exec `true`, {args.live} loops at once"] = lat
        await b.kill_all(boxes)

        async def one():
            t = time.perf_counter()
            x = await create_echo()
            return x, time.perf_counter() - t

        t0 = time.perf_counter()
        done = await asyncio.gather(*(one() for _ in range(args.burst)))
        m["burst wall"] = [time.perf_counter() - t0]
        m[f"{args.burst} concurrent run --rm `echo`"] = [t for _, t in done]
        await b.kill_all([x for x, _ in done])
    finally:
        b.close()
    return m


def table(results: dict[str, dict], args) -> list[str]:
    peers = [p for p in results if p != "sandlot"]
    head = "| workload | sandlot | " + " | ".join(f"{p} | {p} / sandlot" for p in peers) + " |"
    lines = [head, "|---|---|" + "---|---|" * len(peers)]
    burst = f"{args.burst} concurrent run --rm `echo`"

    def cell(m: dict, key: str, kind: str) -> float | None:
        if key not in m:
            return None
        v = m[key]
        return {"p50": pct(v, 50) * 1000, "p99": pct(v, 99) * 1000, "one": v[0], "ms": v[0] * 1000,
                "mib": statistics.mean(v) / 2**20}[kind]

    rows = [
        ("run -> first `echo`, p50 ms (sandlot: create -> first `echo`)", "run -> first `echo`", "p50"),
        ("run --rm `echo`, p50 ms (docker's own one-shot)", "run --rm `echo`", "p50"),
        ("exec `true` round trip, p50 ms", "exec `true` round trip", "p50"),
        ("exec `bash -l -c true` round trip, p50 ms (what sandlot's `true` runs)", "exec `bash -l -c true` round trip", "p50"),
        (f"exec `true` throughput, {args.live} live, commands/s", "throughput", "one"),
        ("machine CPU per exec in that loop, ms", "CPU per exec", "ms"),
        (f"{args.burst} concurrent runs -> `echo`, p50 ms", burst, "p50"),
        (f"{args.burst} concurrent runs -> `echo`, p99 ms", burst, "p99"),
        (f"{args.burst} concurrent runs, wall s", "burst wall", "one"),
        ("idle memory per instance, PSS MiB (docker: container + its containerd shim)", "idle PSS", "mib"),
        ("of which the containerd shim, PSS MiB", "idle shim PSS", "mib"),
    ]
    for label, key, kind in rows:
        base = cell(results["sandlot"], key, kind)
        out = [label, "" if base is None else f"{base:.1f}"]
        for p in peers:
            v = cell(results[p], key, kind)
            out += ["" if v is None else f"{v:.1f}",
                    "" if v is None or not base else f"{v / base:.1f}x"]
        lines.append("| " + " | ".join(out) + " |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--live", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--install", action="store_true", help="apt-get install docker.io and runsc if missing")
    ap.add_argument("--no-gvisor", action="store_true")
    ap.add_argument("--rootfs", type=Path, default=TEMPLATE_CACHE / "base" / "rootfs")
    args = ap.parse_args()
    if not ensure("dockerd", "docker.io", args.install):
        raise SystemExit(1)
    runsc = None if args.no_gvisor or not ensure("runsc", "runsc", args.install) else shutil.which("runsc")
    load = os.getloadavg()[0]
    results = {"sandlot": asyncio.run(sandlot_workload(args))}
    notes = []
    d = Dockerd(runsc)
    try:
        d.import_base(args.rootfs)
        results["docker"] = docker_workload(d, "runc", args)
        if runsc:
            try:
                results["gvisor"] = docker_workload(d, "runsc", args)
            except Exception as e:  # say why, keep docker's numbers
                notes.append(f"gVisor (runsc as a Docker runtime) failed here: {type(e).__name__}: {str(e)[:300]}")
    finally:
        left = d.close()
    if left:
        notes.append("Left behind by the peers' run and removed at its end: " + "; ".join(left))
        print("LEFTOVERS: " + "; ".join(left), file=sys.stderr)
    write_section("peers", "\n".join([
        "## sandlot and its peers (`benchmarks/peers.py`)", "",
        f"Run {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by `benchmarks/peers.py --runs {args.runs} "
        f"--burst {args.burst} --live {args.live}` on: {machine()}; load average {load:.1f} at its start (other "
        "work on the machine shares its cores: absolute numbers are an upper bound, ratios hold better).", "",
        "Method: the same workload, in one run, on sandlot (a `sandlot serve` on loopback, namespace runtime, no "
        "warm pool, the official async e2b SDK), Docker (Debian's docker.io, a private dockerd, the Engine API "
        "through docker-py, runc, `--network none`, an image imported from sandlot's `base` rootfs) and gVisor "
        "(Debian's runsc, ptrace platform, as a runtime of that dockerd). Ratio = peer / sandlot: above 1, sandlot "
        "is faster or smaller (for throughput: below 1).", "",
        *table(results, args), "", *[f"- {n}" for n in notes]]))
    print((Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md").read_text()[-6000:])


if __name__ == "__main__":
    main()
