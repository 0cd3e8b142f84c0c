"""Server settings, read and checked once: `Config.from_env()`.

Each field is one setting: `SANDLOT_<NAME>` in the environment, or `<name>` in a TOML file named by
`--config` / $SANDLOT_CONFIG; `sandlot serve` flags override both, the environment overrides the
file. A bad value stops the server with a message that names the variable and the value
(docs/configuration.md lists them all). Every default is written here and nowhere else.

Client-side variables (SANDLOT_API_URL for the SDK and CLI, SANDLOT_EMBEDDED_START_TIMEOUT) belong
to the client; the one name both sides read is SANDLOT_API_KEY: the key the client sends, and for
the server a key it accepts besides the ones it stores.
"""

from __future__ import annotations

import contextvars
import os
import ssl
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from .._exceptions import InvalidArgument
from ..runtimes.budgets import TEAM_SHARE

ENV_PREFIX = "SANDLOT_"
CONFIG_FILE_ENV = "SANDLOT_CONFIG"
# SANDLOT_* names that are no server setting: read by the client, or by sandlot itself elsewhere
NOT_SERVER_SETTINGS = {"SANDLOT_API_URL", "SANDLOT_EMBEDDED_START_TIMEOUT", CONFIG_FILE_ENV}

_config_file: contextvars.ContextVar[Path | None] = contextvars.ContextVar("sandlot_config_file", default=None)


class ConfigError(InvalidArgument):
    """A setting is malformed or unknown; the message names each bad one and where it came from."""


def _default_home() -> Path:
    if os.geteuid() == 0:
        return Path("/var/lib/sandlot")
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "sandlot"


def _default_pool_templates() -> tuple[str, ...]:
    # `base` and `code-interpreter` need root to build: an ordinary user's server keeps `host` warm
    return ("base", "code-interpreter") if os.geteuid() == 0 else ("host",)


def _whole_bytes(value: Any) -> Any:
    # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits, and int() takes "1_0"
    if isinstance(value, str) and not (value.strip().isascii() and value.strip().isdigit()):
        raise ValueError("must be a whole number of bytes above 0")
    return value


Bytes = Annotated[int, BeforeValidator(_whole_bytes), Field(ge=1)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


class Config(BaseSettings):
    """Every server setting. Build it with `Config.from_env()` (or `Config()`: the same, without
    overrides); both raise ConfigError, never a raw ValidationError."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # -- where and how it listens
    home: Path = Field(default_factory=_default_home)  # state directory: database, templates, sandboxes
    host: str = "127.0.0.1"  # loopback by default: nothing is exposed until the operator says so
    port: int = Field(3000, ge=1, le=65535)
    # The domain create/info answer with, so E2B's get_host(port) is `{port}-{id}.{domain}` (it may
    # carry the port: `localhost:3000`); None leaves it to the client's E2B_DOMAIN (issue 12)
    domain: str | None = None
    # TLS on the listener, so on the API and every proxied sandbox port alike (server/tls.py): off;
    # a given certificate chain and key (tls_cert + tls_key); or "local-ca", a leaf for the domain
    # and `*.{domain}` signed by a CA kept under the home (<home>/ca/proxy)
    tls: Literal["off", "local-ca"] = "off"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # A key accepted besides the stored ones (scripts, CI); None: only `sandlot keys` keys
    api_key: str | None = None
    # -- sandboxes
    default_template: str = "base"  # of a create that names none; `serve` builds it before it listens
    default_timeout: int = Field(300, ge=1)  # seconds a sandbox lives when the create names none
    max_timeout: int = Field(24 * 3600, ge=1)
    pool_size: int = Field(2, ge=0)  # warm sandboxes kept per pooled template (0: no pools)
    pool_max: int = Field(16, ge=0)  # a pool grows to its claims of the last pool_window, up to this many
    pool_window: Seconds = 30.0
    pool_memory_mb: int = Field(512, ge=0)  # what pools past their base size may use, all together
    pool_templates: Annotated[tuple[str, ...], NoDecode] = Field(default_factory=_default_pool_templates)
    # A clean stop kills every sandbox (nothing outlives a stopped server); keep_sandboxes leaves
    # them running for the next start to adopt, as after kill -9.
    keep_sandboxes: bool = False
    # Outbound access on request (a create's or update's allow_internet_access / allowOut, issue 12),
    # or "off": no sandbox gets a network whatever it asks (a bare allow_internet_access=true, which
    # the e2b SDK up to 2.50 sends on every create, gets none and is told so; explicit rules: 403)
    egress: Literal["on-request", "off"] = "on-request"
    # CA certificates (a PEM bundle) the `network.rules` egress proxy trusts for upstream hosts, besides
    # the system's trust store (a private API's own CA); None: the system's only
    egress_ca_file: Path | None = None
    # Of the sandboxes' resolver's and egress proxy's budgets (questions in flight, connections held),
    # what one team's sandboxes may hold together (runtimes/budgets.py); 1: a team may take them all
    egress_team_share: float = Field(TEAM_SHARE, gt=0, le=1, allow_inf_nan=False)
    # The issuer URL of the sandboxes' workload identity tokens (E2B's `iam`, identity.py): where
    # verifiers fetch /.well-known/openid-configuration; None: this server's own address
    identity_issuer: str | None = None
    # -- bounds on what clients send and receive
    max_upload_bytes: Bytes = 1 << 30  # one POST /files, all its files after gunzip: past it 413
    max_json_bytes: Bytes = 4 << 20  # a request body on the JSON routes (REST, /execute, /contexts)
    max_output_bytes: Bytes = 16 << 20  # output of one code run; the rest is dropped with a marker
    # a sandbox's command output relayed to clients, per second (all its streams): the relay's CPU is
    # the server's, outside the sandbox's cgroup; past it the sandbox's writers are slowed down
    output_rate_bytes: Bytes = 128 << 20
    max_connections: int = Field(2048, ge=8)  # open client connections; past it idle ones are dropped
    header_timeout: Seconds = 10.0  # for a client to send a request's headers
    # an idle connection between requests is closed after it: longer than clients' pools keep idle
    # connections (the e2b SDK's transport: 90 s), or a request sent on a connection the server is
    # closing fails with "connection reset by peer"
    keepalive_timeout: Seconds = 120.0
    # -- what operators see
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["text", "json"] = "text"
    metrics_auth: Literal["admin", "api-key", "none"] = "admin"  # who may read /metrics (it shows every team)
    # -- tenants: host admission (quotas.py) and the audit trail (audit.py)
    # sandboxes' memory limits may add up to (host RAM - reserve) * this; 0: not checked
    memory_overcommit: float = Field(1.0, ge=0, allow_inf_nan=False)
    host_memory_reserve_mb: int = Field(1024, ge=0)  # kept for the server, page cache and warm pools
    # what sandboxes' disks and volumes may still write adds up to (home's free space - reserve) * this
    disk_overcommit: float = Field(1.0, ge=0, allow_inf_nan=False)
    host_disk_reserve_mb: int = Field(2048, ge=0)  # kept for the server's state, templates and layers
    audit_retention_days: float = Field(90.0, gt=0, allow_inf_nan=False)
    audit_max_rows: int = Field(1_000_000, ge=1000)  # per team (and for requests of no team)
    # -- template builds (template_builder.py, template_files.py)
    # a build's base and steps, all together; past it the build fails and its sandbox is killed
    template_build_timeout: Seconds = 3600.0
    # uploaded build files (COPY sources, image archives) one team keeps; past it an upload is a 429
    template_files_max_bytes: Bytes = 10 << 30
    # an upload no build names goes this long after it came (or was last asked for)
    template_files_ttl: Seconds = 24 * 3600.0
    # -- snapshots: where they are exported to and imported from (server/transfer.py): a directory,
    # or s3://bucket/prefix with boto3's own settings (AWS_* variables); empty: <home>/storage
    storage: str = ""
    # -- agents
    mcp: bool = True  # serve sandlot's tools over MCP at /mcp (API key) when the `mcp` extra is installed

    def __init__(self, **values: Any):
        try:
            super().__init__(**values)
        except ValidationError as e:
            raise ConfigError(_explain(e, values)) from None
        self._check_tls()

    def _check_tls(self) -> None:
        # the files themselves are read when the server starts (server/tls.py), also a ConfigError
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            raise ConfigError(f"{_name(given)} needs {_name(missing)} too: a certificate chain and its private key")
        if self.tls_cert is not None and self.tls == "local-ca":
            raise ConfigError(f"{_name('tls')}=local-ca and {_name('tls_cert')} exclude each other: "
                              "a given certificate, or one signed by the local CA")
        if self.tls == "local-ca":
            domain = (self.domain or "").rsplit(":", 1)[0]
            if domain.count(".") < 1:
                raise ConfigError(
                    f"{_name('tls')}=local-ca needs {_name('domain')} with two labels or more, e.g. "
                    f"sandlot.localhost:{self.port}, got {self.domain!r}: TLS clients refuse a wildcard "
                    "certificate for `*.localhost` (one label), so sandbox hosts could not be verified")

    @property
    def tls_mode(self) -> Literal["off", "cert", "local-ca"]:
        return "cert" if self.tls_cert is not None else self.tls

    @property
    def scheme(self) -> str:
        """Of the URLs this server hands out (preview URLs, its own address)."""
        return "http" if self.tls_mode == "off" else "https"

    @classmethod
    def from_env(cls, config_file: Path | str | None = None, **overrides: Any) -> Config:
        """Settings from `overrides` (CLI flags; None means not given), then the environment, then
        the TOML file (`config_file`, else $SANDLOT_CONFIG), then the defaults."""
        path = config_file or os.environ.get(CONFIG_FILE_ENV) or None
        token = _config_file.set(Path(path) if path else None)
        try:
            return cls(**{k: v for k, v in overrides.items() if v is not None})
        finally:
            _config_file.reset(token)

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource) -> tuple[PydanticBaseSettingsSource, ...]:
        path = _config_file.get() or (Path(os.environ[CONFIG_FILE_ENV]) if os.environ.get(CONFIG_FILE_ENV) else None)
        if path is None:
            return init_settings, env_settings
        _check_file(path)
        return init_settings, env_settings, TomlConfigSettingsSource(settings_cls, toml_file=path)

    @field_validator("pool_templates", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        return value

    @field_validator("log_level", "log_format", "metrics_auth", "egress", "tls", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("egress_ca_file")
    @classmethod
    def _pem_bundle(cls, value: Path | None) -> Path | None:
        if value is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=str(value))
            except (OSError, ssl.SSLError) as e:
                raise ValueError(f"must be a readable file of PEM CA certificates ({e})") from None
        return value

    @property
    def db_path(self) -> Path:
        return self.home / "state.db"

    @property
    def kill_on_shutdown(self) -> bool:
        return not self.keep_sandboxes

    @staticmethod
    def unknown_env() -> list[str]:
        """SANDLOT_* variables in the environment that name no setting (a typo is ignored, so say so)."""
        known = {ENV_PREFIX + name.upper() for name in Config.model_fields} | NOT_SERVER_SETTINGS
        return sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in known)


def default_home() -> Path:
    """The state directory the settings name (for commands that only need that)."""
    return Config.from_env().home


def _name(field: str) -> str:
    """A setting as the operator may have written it: its flag and its variable."""
    return f"--{field.replace('_', '-')} ({ENV_PREFIX}{field.upper()})"


def _check_file(path: Path) -> None:
    try:
        with open(path, "rb") as f:
            tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read the configuration file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"the configuration file {path} is not valid TOML: {e}") from None


def _explain(error: ValidationError, overrides: dict[str, Any]) -> str:
    """One line per bad setting, naming it as the operator wrote it."""
    path = _config_file.get() or os.environ.get(CONFIG_FILE_ENV)
    lines = []
    for err in error.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        message = err["msg"].removeprefix("Value error, ")
        message = message[:1].lower() + message[1:]
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {field!r} in {path or 'the settings'}")
            continue
        env = ENV_PREFIX + field.upper()
        if field in overrides:
            where = "--" + field.replace("_", "-")
        elif env in os.environ:
            where = env
        elif path:
            where = f"{field} in {path}"
        else:
            where = field
        lines.append(f"{where}: {message}, got {err.get('input')!r}")
    return "invalid settings:\n  " + "\n  ".join(lines) if len(lines) > 1 else "invalid setting " + lines[0]
