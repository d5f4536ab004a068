"""Channel adapters. This module is the one registry of outbound adapters: add a new one here."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from adapters.base import DeliveryRequest, DeliveryResult, OutboundAdapter
from adapters.file import FileAdapter
from adapters.rest import RestAdapter
from adapters.soap import SoapAdapter

__all__ = ["OUTBOUND", "AdapterConfigError", "DeliveryRequest", "DeliveryResult", "OutboundAdapter", "build"]

OUTBOUND: dict[str, type[Any]] = {
    FileAdapter.name: FileAdapter,
    RestAdapter.name: RestAdapter,
    SoapAdapter.name: SoapAdapter,
}


class AdapterConfigError(ValueError):
    """A target's settings do not fit its adapter."""


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
