"""The one registry: every outbound adapter and every inbound channel the hub has. Add a new one here.

* **Outbound adapters** (:data:`OUTBOUND`): a target's ``adapter = "<name>"`` picks the class; its settings
  are checked against the class's ``Config`` when the configuration loads (:class:`xhub.config.Target`), and
  the runner builds one per target through :func:`build_adapter`.
* **Inbound channels**: what the pipeline asks each of them (:func:`channels`), the HTTP routes they bring
  (:func:`mount_channels`), the loops that poll for them (:func:`pollers`) and how ``/health/ready`` reports
  those loops (:func:`poller_checks`). One line per channel in each.

Nothing in ``hub/``, ``channels/`` or ``adapters/`` imports this module: the core and the channels only
know the interfaces in :mod:`hub.ports`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from adapters.file import FileAdapter
from adapters.rest import RestAdapter
from adapters.soap import SoapAdapter
from channels.fitconnect import router as fitconnect_router
from channels.fitconnect.channel import FitConnectChannel
from channels.fitconnect.deadlines import DeadlineWatch, key_sources
from channels.fitconnect.intake import CHANNEL as FITCONNECT
from channels.fitconnect.intake import POLLER as FITCONNECT_POLLER
from channels.fitconnect.intake import Intake, Poller, subscriber_client
from channels.rest import router as rest_router
from hub.ports import AdapterConfigError, Channels, OutboundAdapter, StatusOnly
from hub.readiness import PollerCheck
from hub.settings import TargetConfig
from hub.watch import KeyExpiry, KeySource, Watch, pem_not_after

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy import Engine

    from xhub.config import HubConfig

__all__ = ["CALLBACK_WAKES", "OUTBOUND", "build", "build_adapter", "channels", "loop_kinds", "mount_channels",
           "poller_checks", "pollers", "watches"]

# --------------------------------------------------------------------------------------------------
# Outbound adapters

OUTBOUND: dict[str, type[Any]] = {
    FileAdapter.name: FileAdapter,
    RestAdapter.name: RestAdapter,
    SoapAdapter.name: SoapAdapter,
}


def build(target: str, adapter: str, settings: dict[str, Any]) -> OutboundAdapter:
    """Instantiate the adapter for ``target``, validating its settings against the adapter's Config."""
    cls = OUTBOUND.get(adapter)
    if cls is None:
        known = ", ".join(sorted(OUTBOUND))
        raise AdapterConfigError(f"targets.{target}: unknown adapter {adapter!r} (known: {known})")
    try:
        config = cls.Config.model_validate(settings)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors(include_url=False))
        raise AdapterConfigError(f"targets.{target} ({adapter}): {problems}") from None
    instance: OutboundAdapter = cls(config)
    return instance


def build_adapter(target: str, config: TargetConfig) -> OutboundAdapter:
    """The runner's :data:`hub.ports.AdapterFactory`."""
    return build(target, config.adapter, config.adapter_settings())


# --------------------------------------------------------------------------------------------------
# Inbound channels


def channels(config: HubConfig) -> Channels:
    """What the pipeline asks each channel. Close them when the process ends."""
    fc = config.fitconnect
    return Channels([
        StatusOnly(rest_router.CHANNEL),
        FitConnectChannel(None if fc is None else subscriber_client(fc, config.limits)),
    ])


def mount_channels(app: FastAPI, config: HubConfig, engine: Engine, wake: rest_router.Waker,
                   on_callback: Callable[[], None] | None) -> list[Callable[[], None]]:
    """The channels' HTTP routes on ``app``; returns what to call when the app stops."""
    intake = rest_router.Intake(engine, config, wake)
    rest_router.mount(app, intake)
    fitconnect_router.mount(app, fitconnect_router.Callbacks(config.fitconnect, config.limits, on_callback))
    return [intake.close]


def pollers(config: HubConfig, engine: Engine) -> dict[str, Poller]:
    """The loops that fetch messages for the channels that poll (started by ``xhub serve``), by channel."""
    fc = config.fitconnect
    return {} if fc is None else {FITCONNECT: Poller(Intake(fc, config, engine), fc.poll_interval_seconds)}


#: The channel whose poller a verified callback (:mod:`channels.fitconnect.router`) wakes.
CALLBACK_WAKES = FITCONNECT


def poller_checks(config: HubConfig) -> list[PollerCheck]:
    """How ``/health/ready`` reports those loops (wherever they run)."""
    fc = config.fitconnect
    return [] if fc is None else [PollerCheck("fitconnect_poller", FITCONNECT_POLLER, FITCONNECT,
                                              "FIT-Connect poller", fc.poll_interval_seconds)]


def loop_kinds(config: HubConfig) -> list[str]:
    """The loops that should run somewhere (``xhub_loops_running`` shows 0 for one that does not)."""
    return ["worker", *(check.kind for check in poller_checks(config))]


# --------------------------------------------------------------------------------------------------
# Watches (hub.watch): deadlines and expiring keys, for /metrics and /health/ready


def watches(config: HubConfig) -> list[Watch]:
    """The channels' deadlines, and the end of every key and certificate the hub holds: the channels' keys and
    the targets' TLS client certificates (``client_cert`` of the rest and soap adapters)."""
    keys: list[KeySource] = []
    found: list[Watch] = []
    if config.fitconnect is not None:
        found.append(DeadlineWatch(config.fitconnect))
        keys += key_sources(config.fitconnect)
    for name, target in sorted(config.targets.items()):
        cert = target.adapter_settings().get("client_cert")
        if cert is not None:
            keys.append(KeySource("client_certificate", name, _certificate(Path(cert))))
    if keys:
        found.append(KeyExpiry(keys, warn_days=config.metrics.key_warn_days))
    return found


def _certificate(path: Path) -> Callable[[], datetime | None]:
    return lambda: pem_not_after(path)
