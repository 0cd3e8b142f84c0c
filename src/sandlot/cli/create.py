"""`sandlot create`: start a sandbox and print its id (or, with --json, what it is)."""

from __future__ import annotations

from pathlib import Path

import typer

from ._common import ApiKey, ApiUrl, EnvOpt, JsonOpt, MetadataOpt, friendly, pairs, print_json
from .network import AllowOutOpt, BandwidthOpt, DenyOutOpt, DnsOpt, InternetOpt, JsonFileOpt, gathered
from .volume import VolumeOpt, mounts


@friendly
def create(template: str = typer.Option("base", "--template", "-t", help="Template to start from."),
           timeout: int = typer.Option(300, help="Seconds until the sandbox is killed."),
           env: list[str] = EnvOpt, metadata: list[str] = MetadataOpt,
           memory_mb: int = typer.Option(None, "--memory-mb", help="Memory limit in MiB (default 512)."),
           cpu: float = typer.Option(None, "--cpu", help="CPU limit in cores, e.g. 0.5 (default 1)."),
           pids: int = typer.Option(None, "--pids", help="Most processes at once (default 512)."),
           disk_mb: int = typer.Option(None, "--disk-mb", help="Disk size in MiB (default 2048)."),
           internet: bool = InternetOpt, allow_out: list[str] = AllowOutOpt, deny_out: list[str] = DenyOutOpt,
           dns_server: list[str] = DnsOpt, bandwidth_mbps: float = BandwidthOpt,
           public: bool = typer.Option(None, "--public/--private",
                                       help="Ports reachable without the traffic token (default public)."),
           network_json: Path = JsonFileOpt, volume: list[str] = VolumeOpt,
           as_json: bool = JsonOpt, api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Create a sandbox and print its id.

    With --json: its id, template, state, times, metadata, limits and network. No network
    unless asked (--internet, --allow-out...), no volume unless mounted (-v NAME:/path).
    """
    from .. import Sandbox

    given = {"memory_mb": memory_mb, "cpu_count": cpu, "pids": pids, "disk_mb": disk_mb}
    limits = {k: v for k, v in given.items() if v is not None} or None  # the rest keep their defaults
    volume_mounts = mounts(volume)
    internet, network, iam = gathered(internet, allow_out, deny_out, dns_server, bandwidth_mbps, network_json,
                                      allow_public_traffic=public)
    sandbox = Sandbox.create(template=template, timeout=timeout, envs=pairs(env, "--env"),
                             metadata=pairs(metadata, "--metadata"), limits=limits, api_url=api_url,
                             api_key=api_key, allow_internet_access=internet, network=network, iam=iam,
                             volume_mounts=volume_mounts)
    try:
        if as_json:
            print_json(sandbox.get_info())
        else:
            print(sandbox.sandbox_id)
    finally:
        sandbox.close()


def register(app: typer.Typer) -> None:
    app.command()(create)
