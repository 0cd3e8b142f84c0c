"""`sandlot network update|show ID`, and the network options `sandlot create` shares: a sandbox's
egress (docs/network.md). Without any of them a sandbox has no network."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from ._common import ApiKey, ApiUrl, friendly, print_json

app = typer.Typer(no_args_is_help=True, help="A sandbox's network: change it live, show it.")

InternetOpt = typer.Option(None, "--internet", help="Allow the internet (what --deny-out does not close).")
AllowOutOpt = typer.Option(None, "--allow-out", help="Allow an address, CIDR or name (repeatable).")
DenyOutOpt = typer.Option(None, "--deny-out", help="Deny an address or CIDR, e.g. 0.0.0.0/0 (repeatable).")
DnsOpt = typer.Option(None, "--dns-server", help="DNS server the sandbox may use (repeatable).")
BandwidthOpt = typer.Option(None, "--bandwidth-mbps", help="Egress bandwidth limit in Mbit/s.")
JsonFileOpt = typer.Option(None, "--network-json", help="JSON file of the SDK's `network` keys (rules with "
                           "secret headers, egress_proxy...); the flags override it.")


def gathered(internet: bool | None, allow_out: list[str] | None, deny_out: list[str] | None,
             dns_server: list[str] | None, bandwidth_mbps: float | None, json_file: Path | None,
             **more: Any) -> tuple[bool | None, dict[str, Any] | None, dict[str, Any] | None]:
    """(allow_internet_access, network, iam) of the options: the JSON file's keys under the flags
    given; `allow_internet_access` and `iam` may be in the file too. No option: (None, None, None)."""
    network: dict[str, Any] = {}
    if json_file is not None:
        try:
            network = json.loads(json_file.read_text())
        except ValueError as e:
            raise typer.BadParameter(f"{json_file}: {e}", param_hint="--network-json") from None
        if not isinstance(network, dict):
            raise typer.BadParameter(f"{json_file}: not a JSON object", param_hint="--network-json")
    flags = {"allow_out": allow_out, "deny_out": deny_out, "dns_servers": dns_server,
             "bandwidth_mbps": bandwidth_mbps, **more}
    network.update({k: v for k, v in flags.items() if v not in (None, [])})
    internet = internet if internet is not None else network.pop("allow_internet_access", None)
    iam = network.pop("iam", None)
    given = json_file is not None or any(v not in (None, []) for v in flags.values())
    return internet, network if given else None, iam


@friendly
def update(sandbox_id: str = typer.Argument(..., help="The sandbox."), internet: bool = InternetOpt,
           allow_out: list[str] = AllowOutOpt, deny_out: list[str] = DenyOutOpt, dns_server: list[str] = DnsOpt,
           bandwidth_mbps: float = BandwidthOpt, network_json: Path = JsonFileOpt,
           api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Replace a running sandbox's egress; what is not given is cleared (no option: no network).

    Example: sandlot network update ID --allow-out api.example.com --deny-out 0.0.0.0/0
    """
    from .. import Sandbox

    internet, network, iam = gathered(internet, allow_out, deny_out, dns_server, bandwidth_mbps, network_json)
    if iam is not None:
        raise typer.BadParameter("iam is set at create only", param_hint="--network-json")
    Sandbox.update_network(sandbox_id, network or {}, internet, api_url=api_url, api_key=api_key)
    print(f"updated {sandbox_id}")


@friendly
def show(sandbox_id: str = typer.Argument(..., help="The sandbox."),
         api_url: str = ApiUrl, api_key: str = ApiKey) -> None:
    """Print a sandbox's network as JSON (header values of rules are <redacted>)."""
    from .. import Sandbox

    info = Sandbox.get_info(sandbox_id, api_url=api_url, api_key=api_key)
    print_json({"allow_internet_access": info.allow_internet_access, **info.network})


app.command()(update)
app.command()(show)
