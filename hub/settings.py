"""The core's settings: what the engine itself reads (database, storage, API limits, worker, retry, senders,
operators, targets' generic part, routes).

Every model forbids unknown keys and is frozen. The full configuration (these sections plus each channel's
and each adapter's own settings), how it is loaded from ``hub.toml`` and the environment, and how errors
name file, key and line, are the composition root's: :mod:`xhub.config`. A target's adapter-specific keys
are kept here as they are (``extra="allow"``) and checked there, against the adapter's ``Config`` model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from hub.jsonsafe import JsonLimits
from hub.xmlsafe import XmlLimits

__all__ = ["ApiConfig", "CircuitConfig", "DatabaseConfig", "LimitsConfig", "OperatorConfig", "RetentionConfig",
           "RetentionPeriods", "RetryConfig",
           "RouteConfig", "RouteMatch", "SenderConfig", "Settings", "StorageConfig", "TargetConfig", "TargetName",
           "TargetRef", "WorkerConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseConfig(_Model):
    url: str = Field("sqlite:///var/hub.db", description="SQLAlchemy URL; sqlite:///path or postgresql://…")
    auto_upgrade: bool = Field(True, description="apply Alembic migrations when a process starts")
    pool_size: int = Field(5, ge=1, le=100)


class StorageConfig(_Model):
    """Where message bytes are kept, and how they are sealed (docs/data-protection.md)."""

    blob_dir: Path = Field(Path("var/blobs"), description="large message parts (attachments) as files")
    master_key_file: Path | None = Field(
        None, description="the master key: a file of mode 0600 holding 32 bytes as base64 (`xhub keys "
        "new-master-key`); unset: the environment variable XHUB_MASTER_KEY, if set")
    encryption: Literal["auto", "required"] = Field(
        "auto", description="auto: payloads, attachments and blobs are sealed (AES-256-GCM) when a master key is "
        "configured, stored plain (with a warning) when not; required: the hub does not start without one")
    rewrap_interval_seconds: float = Field(
        60.0, gt=0, description="how often each worker process looks for records of older data keys (and plain "
        "ones) to re-seal with the current key")


_DURATION = re.compile(r"^(\d{1,6})\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _duration(value: Any) -> timedelta | None:
    if value is None or isinstance(value, timedelta):
        return value
    text = str(value).strip().lower()
    if text == "never":
        return None
    match = _DURATION.match(text)
    if not match:
        raise ValueError('a period like "30d", "12h", "2w" (s, m, h, d, w), or "never"')
    return timedelta(seconds=int(match.group(1)) * _UNIT[match.group(2)])


Period = Annotated[timedelta | None, BeforeValidator(_duration)]


class RetentionPeriods(_Model):
    """How long payloads and attachments are kept once a message has ended ("never": kept). Unset in a tenant's
    or a route's table: the general value applies."""

    delivered: Period = Field(None, description="after the message was delivered (and answered, where the "
                              "channel answers: status acknowledged)")
    rejected: Period = Field(None, description="after the message was rejected")
    dead: Period = Field(None, description="after the message went dead (an operator can requeue it until then)")


class RetentionConfig(RetentionPeriods):
    """``[retention]``: the general periods, ``[retention.tenants.<tenant>]`` and ``[retention.routes.<route>]``
    override them (a route's value wins over its tenant's, a tenant's over the general one)."""

    tenants: dict[str, RetentionPeriods] = Field(default_factory=dict)
    routes: dict[str, RetentionPeriods] = Field(default_factory=dict)
    interval_seconds: float = Field(300.0, gt=0, description="how often each worker process runs the purge")
    batch_size: int = Field(100, ge=1, le=10000, description="messages purged per transaction")


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
    group_commit_max: int = Field(
        64, ge=1, le=1000,
        description="intake requests stored together in one transaction at most (group commit: the requests "
        "that arrive while a commit is in flight are written by the next one; each answers after its commit)",
    )
    group_commit_wait_ms: float = Field(
        0.0, ge=0, le=50,
        description="how long a group waits for more requests before it commits; 0: no waiting, the groups form "
        "by themselves under load",
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
    blob_min_free_bytes: int = Field(1024**3, ge=0, description="/health/ready reports the blob store degraded "
                                     "when it has less free space than this")

    def json_limits(self, max_bytes: int) -> JsonLimits:
        """The JSON limits for a door whose bodies may be up to ``max_bytes`` long."""
        return JsonLimits(max_bytes=max_bytes, max_depth=self.json_max_depth,
                          max_number_chars=self.json_max_number_chars, max_string_chars=self.json_max_string_chars)

    def xml_limits(self, max_bytes: int) -> XmlLimits:
        return XmlLimits(max_bytes=max_bytes, max_depth=self.xml_max_depth)


class WorkerConfig(_Model):
    lease_seconds: float = Field(60.0, gt=0, description="how long a claim is valid without renewal")
    poll_interval_seconds: float = Field(
        1.0, gt=0,
        description="sleep between empty polls (never in an attempt); a worker also wakes on new work: in the "
        "same process at once, on PostgreSQL through LISTEN/NOTIFY (`listen`)",
    )
    batch_size: int = Field(
        32, ge=1, le=1000,
        description="messages claimed and processed together; their results are written in one transaction",
    )
    listen: bool = Field(
        True, description="on PostgreSQL, wake on the intake's NOTIFY instead of waiting for the next poll"
    )
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
    """A delivery target: which adapter, and how the hub protects it (the generic part).

    Keys other than the ones below belong to the adapter; the composition root checks them against the
    adapter's ``Config`` model when the configuration is loaded (:class:`xhub.config.Target`).
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    adapter: str = Field(min_length=1, description="one of the adapters registered in xhub/registry.py")
    max_concurrency: int | None = Field(None, ge=1, description="calls in flight at once, over all workers")
    circuit: CircuitConfig = CircuitConfig()

    def adapter_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


def _target_name(name: str) -> str:
    # The name becomes part of idempotency keys and of the file adapter's file names.
    if not _TARGET_NAME.fullmatch(name):
        raise ValueError("a target name is 1-64 letters, digits, '.', '_' or '-', and does not start with '.'")
    return name


_TARGET_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")
TargetName = Annotated[str, AfterValidator(_target_name)]


Pattern = str | list[str]


class RouteMatch(_Model):
    """Every given condition must hold. Values are glob patterns (``99036*``); a list means any of them."""

    tenant: Pattern | None = None
    channel: Pattern | None = None
    sender: Pattern | None = None
    standard: Pattern | None = None
    version: Pattern | None = Field(None, description="standard version, e.g. 2.2")
    message_type: Pattern | None = None
    service: Pattern | None = Field(None, description="service identifier (LeiKa key) given by the channel")
    destination: Pattern | None = Field(None, description="the channel's receiving address (e.g. a destination id)")
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
        "delivered", description="channels that answer the sender: accept once delivered, or already once validated"
    )

    @field_validator("targets", mode="before")
    @classmethod
    def _plain_names(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"target": v} if isinstance(v, str) else v for v in value]
        return value


class Settings(_Model):
    """The sections the core reads. :class:`xhub.config.HubConfig` adds the channels' and adapters' own."""

    database: DatabaseConfig = DatabaseConfig()
    storage: StorageConfig = StorageConfig()
    api: ApiConfig = ApiConfig()
    limits: LimitsConfig = LimitsConfig()
    worker: WorkerConfig = WorkerConfig()
    retry: RetryConfig = RetryConfig()
    retention: RetentionConfig = RetentionConfig()
    rules_dir: Path = Field(Path("mappings"), description="routes.toml and mapping folders")
    schema_dir: Path = Field(Path("var/schemas"), description="operator-installed bundles (`xhub schemas add`); "
                             "they come after the bundles shipped in xsd/ and override them")
    senders: list[SenderConfig] = []
    operators: list[OperatorConfig] = []
    targets: Mapping[TargetName, TargetConfig] = {}
    routes: list[RouteConfig] = Field(
        default_factory=list, description="inline routes for small set-ups; otherwise <rules_dir>/routes.toml"
    )

    @model_validator(mode="after")
    def _references(self) -> Settings:
        holders = [s.name for s in self.senders] + [o.name for o in self.operators]
        dupes = sorted({n for n in holders if holders.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate sender/operator names: {', '.join(dupes)}")
        return self
