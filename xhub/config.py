"""Configuration: one TOML file, validated by pydantic, overridable by environment variables.

Load order (later wins):

1. built-in defaults (SQLite at ``./var/hub.db``, API on 127.0.0.1:8080, ...);
2. the file named by ``--config`` / ``XHUB_CONFIG`` (default ``./hub.toml`` when it exists);
3. environment variables ``XHUB_<SECTION>__<KEY>`` (e.g. ``XHUB_DATABASE__URL``).

Secrets may come from files: a key ``<name>_file`` (for instance ``token_sha256_file``) is replaced by the
stripped content of that file (a regular file of at most 64 KiB, not empty).

The model is the core's :class:`~hub.settings.Settings` plus what the composition root knows about: each
channel's section (``[fitconnect]``) and each target's adapter settings, checked against the adapter's
``Config`` from :mod:`xhub.registry`. Everything is checked when the configuration is loaded, not when it
is first used: unknown keys at every level (``extra="forbid"``), each target's adapter and its settings,
target names. Routes are checked against targets and mappings by :mod:`hub.routing`. Errors name the file,
the key path and the line (or the variable or ``*_file`` key the value came from), and never a value.
Reading the files and variables safely is :mod:`hub.configfile`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from channels.fitconnect.config import FitConnectConfig
from hub.configfile import (
    FileProblem,
    Loc,
    check_nesting,
    env_overrides,
    explain,
    locate,
    merge,
    read_secret_files,
    read_toml,
)
from hub.settings import Settings, TargetConfig, TargetName
from xhub.console.config import ConsoleConfig

__all__ = ["ConfigError", "HubConfig", "MetricsConfig", "Target", "TracingConfig", "config_path", "load_config"]


class ConfigError(Exception):
    """The configuration cannot be used. The message is meant for an operator, not a developer."""


class Target(TargetConfig):
    """A target whose adapter is registered and whose adapter settings fit that adapter's ``Config``.

    A typo or a missing URL stops the hub from starting, with the file, line and key.
    """

    @field_validator("adapter")
    @classmethod
    def _known_adapter(cls, name: str) -> str:
        from xhub import registry  # the adapters, imported when a target names one (not for `xhub validate`)

        if name not in registry.OUTBOUND:
            known = ", ".join(sorted(registry.OUTBOUND))
            raise ValueError(f"unknown adapter {name[:40]!r}; the known ones are {known}")
        return name

    @model_validator(mode="after")
    def _adapter_settings_fit(self) -> Target:
        # A ValidationError raised here keeps its own locations, under this target's: ``targets.x.url``.
        from xhub import registry

        checked = registry.OUTBOUND[self.adapter].Config.model_validate(self.adapter_settings())
        _hide_secrets(self.model_extra or {}, checked)
        return self


def _hide_secrets(raw: dict[str, Any], checked: BaseModel) -> None:
    """Put the adapter's ``SecretStr`` values into the raw settings, so that no ``repr``, dump or log of the
    configuration shows a password; everything else stays as the file has it."""
    for key, value in raw.items():
        attribute = getattr(checked, key, None)
        if isinstance(attribute, SecretStr):
            raw[key] = attribute
        elif isinstance(attribute, BaseModel) and isinstance(value, dict):
            _hide_secrets(value, attribute)


class MetricsConfig(BaseModel):
    """``/metrics`` for Prometheus (docs/operations.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    enabled: bool = Field(True, description="serve /metrics and count in every process")
    token_sha256: SecretStr | None = Field(
        None, description="hex SHA-256 of a bearer token the scraper must send; unset: /metrics is open (scrape it "
        "from the monitoring network only)")
    directory: Path = Field(Path("var/metrics"), description="where the processes of this host write their counts "
                            "(0700; PROMETHEUS_MULTIPROC_DIR overrides it); `xhub serve` folds the files of "
                            "processes that are gone into an archive when it starts")
    refresh_seconds: float = Field(10.0, ge=0, description="what /metrics reads from the database is at most this old")
    key_warn_days: float = Field(30.0, gt=0, description="warn (/health/ready) when a key or certificate expires "
                                 "within this many days")

    @field_validator("token_sha256")
    @classmethod
    def _hex(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        digest = value.get_secret_value().strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError("must be 64 lowercase hex characters (the SHA-256 of the token: `xhub token new`)")
        return SecretStr(digest)


class TracingConfig(BaseModel):
    """OpenTelemetry spans (optional: `pip install 'xoev-hub[tracing]'`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    endpoint: str | None = Field(None, pattern=r"^https?://", description="OTLP/HTTP collector, e.g. "
                                 "http://otel-collector:4318; unset: nothing is imported or sent")
    service_name: str = Field("xoev-hub", min_length=1, max_length=100)


class HubConfig(Settings):
    """The whole configuration: the core's settings, the channels' sections, the adapters' settings."""

    targets: Mapping[TargetName, Target] = {}
    fitconnect: FitConnectConfig | None = Field(None, description="the FIT-Connect subscriber channel")
    metrics: MetricsConfig = MetricsConfig()
    tracing: TracingConfig = TracingConfig()
    console: ConsoleConfig = Field(ConsoleConfig(), description="the operator console")


# --------------------------------------------------------------------------------------------------
# Loading


def config_path(path: Path | None = None, env: dict[str, str] | None = None) -> Path | None:
    """The file :func:`load_config` reads: ``path``, else ``$XHUB_CONFIG``, else ``./hub.toml`` if it exists."""
    env = dict(os.environ if env is None else env)
    if path is None and env.get("XHUB_CONFIG"):
        path = Path(env["XHUB_CONFIG"])
    if path is None and Path("hub.toml").exists():
        path = Path("hub.toml")
    return path


def load_config(path: Path | None = None, env: dict[str, str] | None = None) -> HubConfig:
    """Load and validate the configuration. Raises :class:`ConfigError` with file, key and line.

    No value is ever quoted in an error: a misplaced secret stays secret.
    """
    env = dict(os.environ if env is None else env)
    path = config_path(path, env)
    text = ""
    data: dict[str, Any] = {}
    source = str(path) if path else "(defaults)"
    origins: dict[tuple[str, ...], str] = {}
    try:
        if path is not None:
            data, text = read_toml(path)
        data = merge(data, env_overrides(env, origins))
        check_nesting(data, source)

        def where(loc: Loc) -> str:
            line = locate(text, loc) if text else None
            return f"{source}:{line}" if line else source

        data = read_secret_files(data, (), origins, where)
    except FileProblem as exc:
        raise ConfigError(str(exc)) from None
    try:
        return HubConfig.model_validate(data)
    except ValidationError as exc:
        problems = explain(exc, source, text, origins=origins)
        raise ConfigError("invalid configuration\n  " + "\n  ".join(problems)) from None
