"""Configuration: one TOML file, validated by pydantic, overridable by environment variables.

Load order (later wins):

1. built-in defaults (SQLite at ``./var/hub.db``, API on 127.0.0.1:8080, ...);
2. the file named by ``--config`` / ``XHUB_CONFIG`` (default ``./hub.toml`` when it exists);
3. environment variables ``XHUB_<SECTION>__<KEY>`` (e.g. ``XHUB_DATABASE__URL``).

Secrets may come from files: a key ``<name>_file`` (for instance ``token_sha256_file``) is replaced by the
stripped content of that file. Errors name the file, the key path and, where it can be found, the line.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from adapters.fitconnect.config import FitConnectConfig
from hub.jsonsafe import JsonLimits
from hub.xmlsafe import XmlLimits

__all__ = ["ConfigError", "HubConfig", "load_config"]

ENV_PREFIX = "XHUB_"


class ConfigError(Exception):
    """The configuration cannot be used. The message is meant for an operator, not a developer."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Model):
    url: str = Field("sqlite:///var/hub.db", description="SQLAlchemy URL; sqlite:///path or postgresql://…")
    auto_upgrade: bool = Field(True, description="apply Alembic migrations when a process starts")
    pool_size: int = Field(5, ge=1, le=100)


class StorageConfig(_Model):
    blob_dir: Path = Field(Path("var/blobs"), description="large message parts (FIT-Connect attachments) as files")


class ApiConfig(_Model):
    """The HTTP API. Limits and the memory budget of the REST intake are in docs/security/intake.md."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest accepted intake body")
    public_url: str | None = Field(
        None,
        description="base URL the hub is reached at from outside (e.g. https://hub.example.de/xhub), used in "
        "Location and links; unset: links are relative (/api/v1/...). Never taken from the Host header",
    )
    intake_memory_bytes: int = Field(
        64 * 1024 * 1024, ge=1024,
        description="request bodies held in memory at once, over all concurrent intake requests; a request "
        "that does not fit is answered 503 with Retry-After before its body is read",
    )
    intake_parse_threads: int = Field(
        1, ge=1, le=16,
        description="threads that parse intake bodies, in each of two lanes (up to 1 MiB, larger); a parse of a "
        "hostile body can take 25 (JSON) to 50 (XML) times its size",
    )
    retry_after_seconds: int = Field(
        5, ge=1, le=3600, description="Retry-After of a 503 (memory budget exhausted, database unavailable)"
    )
    max_header_bytes: int = Field(
        32 * 1024, ge=4096, description="all request header names and values together; more: 431"
    )

    @field_validator("public_url")
    @classmethod
    def _absolute_base(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip().rstrip("/")
        if not re.match(r"^https?://[A-Za-z0-9.\-\[\]:]+(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?$", value):
            raise ValueError("must be an absolute http(s) URL without query or fragment, "
                             "e.g. https://hub.example.de/xhub")
        return value

    @model_validator(mode="after")
    def _budget_fits_a_body(self) -> ApiConfig:
        if self.intake_memory_bytes < self.max_body_bytes:
            raise ValueError(f"intake_memory_bytes ({self.intake_memory_bytes}) must be at least max_body_bytes "
                             f"({self.max_body_bytes}), or no body of the largest size could ever be accepted")
        return self


class LimitsConfig(_Model):
    """Limits at every door, checked before anything is parsed (the table in docs/security.md).

    Sizes of whole bodies stay where they apply (``api.max_body_bytes``); these bound the shape.
    """

    json_max_depth: int = Field(64, ge=2, le=512, description="arrays/objects nested deeper are refused")
    json_max_number_chars: int = Field(100, ge=20, le=4000, description="longer number literals are refused")
    json_max_string_chars: int = Field(10 * 1024 * 1024, ge=1024, description="longer strings/keys are refused")
    xml_max_depth: int = Field(256, ge=8, le=256, description="elements nested deeper are refused")

    def json_limits(self, max_bytes: int) -> JsonLimits:
        """The JSON limits for a door whose bodies may be up to ``max_bytes`` long."""
        return JsonLimits(max_bytes=max_bytes, max_depth=self.json_max_depth,
                          max_number_chars=self.json_max_number_chars, max_string_chars=self.json_max_string_chars)

    def xml_limits(self, max_bytes: int) -> XmlLimits:
        return XmlLimits(max_bytes=max_bytes, max_depth=self.xml_max_depth)


class WorkerConfig(_Model):
    lease_seconds: float = Field(60.0, gt=0, description="how long a claim is valid without renewal")
    poll_interval_seconds: float = Field(1.0, gt=0, description="sleep between empty polls (never in an attempt)")
    embedded: bool = Field(True, description="`xhub serve` runs a worker thread beside the API")


class RetryConfig(_Model):
    """Exponential backoff with jitter, and the number of attempts before a message goes to ``dead``."""

    max_attempts: int = Field(8, ge=1, le=1000)
    base_delay_seconds: float = Field(5.0, ge=0)
    max_delay_seconds: float = Field(3600.0, ge=0)
    jitter: float = Field(0.2, ge=0, le=1, description="± fraction of the delay chosen at random")

    def delay(self, attempt: int, rand: float) -> timedelta:
        """Delay before retry number ``attempt`` (1-based); ``rand`` is uniform in [0, 1)."""
        raw = min(self.max_delay_seconds, self.base_delay_seconds * (2 ** max(0, attempt - 1)))
        factor = 1.0 + self.jitter * (2.0 * rand - 1.0)
        return timedelta(seconds=max(0.0, raw * factor))


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class _TokenHolder(_Model):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._:-]+$")
    token_sha256: SecretStr = Field(description="hex SHA-256 of the bearer token (`xhub token new` makes one)")

    @field_validator("token_sha256")
    @classmethod
    def _hex(cls, value: SecretStr) -> SecretStr:
        if not _HEX64.match(value.get_secret_value().strip().lower()):
            raise ValueError("must be 64 lowercase hex characters (the SHA-256 of the token)")
        return SecretStr(value.get_secret_value().strip().lower())


class SenderConfig(_TokenHolder):
    """A portal or online service allowed to post messages for one tenant."""

    tenant: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9._-]+$")


class OperatorConfig(_TokenHolder):
    """A person or system allowed to read every message and act on it (requeue)."""


class CircuitConfig(_Model):
    """Stop calling a target after this many consecutive transient failures, for this long."""

    failure_threshold: int = Field(5, ge=1)
    cooldown_seconds: float = Field(60.0, gt=0)


class TargetConfig(_Model):
    """A delivery target: which adapter, how the hub protects it, and the adapter's own settings.

    Keys other than the ones below belong to the adapter and are checked by its ``Config`` model.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    adapter: str = Field(min_length=1)
    max_concurrency: int | None = Field(None, ge=1, description="calls in flight at once, over all workers")
    circuit: CircuitConfig = CircuitConfig()

    def adapter_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


Pattern = str | list[str]


class RouteMatch(_Model):
    """Every given condition must hold. Values are glob patterns (``99036*``); a list means any of them."""

    tenant: Pattern | None = None
    channel: Pattern | None = None
    sender: Pattern | None = None
    standard: Pattern | None = None
    version: Pattern | None = Field(None, description="standard version, e.g. 2.2")
    message_type: Pattern | None = None
    service: Pattern | None = Field(None, description="FIT-Connect service identifier (LeiKa key)")
    destination: Pattern | None = Field(None, description="FIT-Connect destination id")
    region: Pattern | None = Field(None, description="ARS/AGS from the metadata or the XÖV header")
    reader: Pattern | None = Field(None, description="reader (recipient) authority id from the XÖV header")
    author: Pattern | None = Field(None, description="author (sender) authority id from the XÖV header")
    xpath: str | None = Field(None, description="XPath on the payload that must be true (XML payloads only)")


class TargetRef(_Model):
    target: str = Field(min_length=1)
    mapping: str | None = Field(None, description="mapping in mappings/<name>/ that renders the body")


class RouteConfig(_Model):
    """First matching route wins. A route with an empty ``match`` matches everything (the fallback, last)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    match: RouteMatch = RouteMatch()
    namespaces: dict[str, str] = Field(default_factory=dict, description="prefixes for match.xpath")
    targets: list[TargetRef] = Field(min_length=1, description='"name" or { target = "name", mapping = "…" }')
    not_checked: Literal["reject", "pass"] = Field(
        "pass",
        description="what to do with a message that could not be fully checked (schema not installed, or a "
        "Schematron rule failing on the message itself)",
    )
    retry: RetryConfig | None = Field(None, description="overrides the global retry policy for this route")
    accept_after: Literal["delivered", "validated"] = Field(
        "delivered", description="FIT-Connect: send accept-submission once delivered, or already once validated"
    )

    @field_validator("targets", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"target": v} if isinstance(v, str) else v for v in value]
        return value


class HubConfig(_Model):
    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    api: ApiConfig = ApiConfig()
    limits: LimitsConfig = LimitsConfig()
    worker: WorkerConfig = WorkerConfig()
    retry: RetryConfig = RetryConfig()
    rules_dir: Path = Field(Path("mappings"), description="routes.toml and mapping folders")
    schema_dir: Path = Field(Path("var/schemas"), description="operator-installed bundles (`xhub schemas add`); "
                             "they come after the bundles shipped in xsd/ and override them")
    fitconnect: FitConnectConfig | None = Field(None, description="the FIT-Connect subscriber channel")
    senders: list[SenderConfig] = []
    operators: list[OperatorConfig] = []
    targets: dict[str, TargetConfig] = {}
    routes: list[RouteConfig] = Field(
        default_factory=list, description="inline routes for small set-ups; otherwise <rules_dir>/routes.toml"
    )

    @model_validator(mode="after")
    def _references(self) -> HubConfig:
        holders = [s.name for s in self.senders] + [o.name for o in self.operators]
        dupes = sorted({n for n in holders if holders.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate sender/operator names: {', '.join(dupes)}")
        return self



# --------------------------------------------------------------------------------------------------
# Loading


def _read_secret_files(node: Any, source: str, path: tuple[str | int, ...] = ()) -> Any:
    """Replace ``<key>_file = "path"`` with ``<key> = <file content>`` anywhere in the tree."""
    if isinstance(node, list):
        return [_read_secret_files(v, source, (*path, i)) for i, v in enumerate(node)]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.endswith("_file") and isinstance(value, str) and key != "_file":
            plain = key[: -len("_file")]
            if plain in node:
                raise ConfigError(f"{source}: {dotted((*path, key))}: give either {plain} or {key}, not both")
            try:
                out[plain] = Path(value).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"{source}: {dotted((*path, key))}: cannot read secret file {value}: {exc.strerror}"
                ) from None
        else:
            out[key] = _read_secret_files(value, source, (*path, key))
    return out


def _env_overrides(env: dict[str, str]) -> dict[str, Any]:
    """``XHUB_DATABASE__URL=…`` → ``{"database": {"url": "…"}}``. Values are parsed as TOML when they can be."""
    tree: dict[str, Any] = {}
    for name, raw in env.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name or name == "XHUB_CONFIG":
            continue
        keys = [k.lower() for k in name[len(ENV_PREFIX) :].split("__")]
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def dotted(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def locate(text: str, loc: tuple[str | int, ...]) -> int | None:
    """Best-effort line number (1-based) of ``loc`` in TOML ``text``.

    Every ``key = value`` line gets its full path (``[[routes]]`` counts as ``routes[i]``); the line whose
    path matches the longest prefix of ``loc`` wins, so an error inside an inline table points at its key.
    """
    table: list[str | int] = []
    counters: dict[str, int] = {}
    best, best_len = None, 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if line.startswith("[["):
            name = line.strip("[] ")
            counters[name] = counters.get(name, -1) + 1
            table = [*name.split("."), counters[name]]
            path: list[str | int] = list(table)
        elif line.startswith("["):
            table = list(line.strip("[] ").split("."))
            path = list(table)
        elif "=" in line:
            path = [*table, *line.split("=", 1)[0].strip().strip('"').split(".")]
        else:
            continue
        common = 0
        for have, want in zip(path, loc, strict=False):
            if have != want:
                break
            common += 1
        if common == len(path) and common > best_len:
            best, best_len = number, common
    return best


def load_config(path: Path | None = None, env: dict[str, str] | None = None) -> HubConfig:
    """Load and validate the configuration. Raises :class:`ConfigError` with file, key and line."""
    env = dict(os.environ if env is None else env)
    if path is None and env.get("XHUB_CONFIG"):
        path = Path(env["XHUB_CONFIG"])
    if path is None and Path("hub.toml").exists():
        path = Path("hub.toml")
    text = ""
    data: dict[str, Any] = {}
    source = str(path) if path else "(defaults)"
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc.strerror}") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(env))
    data = _read_secret_files(data, source)
    try:
        return HubConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("invalid configuration\n  " + "\n  ".join(explain(exc, source, text))) from None


def explain(exc: ValidationError, source: str, text: str, prefix: tuple[str | int, ...] = ()) -> list[str]:
    """One line per problem: ``<file>:<line>: <key path>: <message>`` (the line where it can be found)."""
    lines = []
    for err in exc.errors(include_url=False):
        loc = (*prefix, *err["loc"])
        # Unions (``"name"`` or ``{target = …}``) report the branch in the path: keep keys the file has.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p in {"str", "TargetRef", "list[str]"}))
        line = locate(text, loc) if text else None
        where = f"{source}:{line}" if line else source
        lines.append(f"{where}: {dotted(loc)}: {err['msg']}")
    return lines
