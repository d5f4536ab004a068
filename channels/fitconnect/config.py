"""Configuration of the FIT-Connect subscriber: the delivery service, our client credentials, destinations.

Secrets are ``SecretStr``; private keys are referenced by path (or by the name of an environment variable
holding the JWK) and only loaded by :class:`~channels.fitconnect.client.SubscriberClient`, which checks
them (RSA ≥ 4096, right ``alg``, x5c fits) and raises :class:`~hub.errors.Permanent` when they are unusable.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

__all__ = ["DestinationConfig", "FitConnectConfig"]

_UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
MAX_ATTACHMENT_BYTES = 500 * 1024 * 1024  # FIT-Connect's limit per attachment
MAX_ATTACHMENTS = 100  # FIT-Connect's limit per submission
MAX_SUBMISSION_BYTES = 2 * 1024 * 1024 * 1024  # FIT-Connect's limit for all attachments of one submission


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DestinationConfig(_Model):
    id: str = Field(pattern=_UUID, description="the destination (Zustellpunkt) id")
    encryption_key: Path | None = Field(None, description="private JWK file, RSA-OAEP-256, RSA ≥ 4096 bit")
    encryption_key_env: str | None = Field(None, description="or: environment variable holding that JWK")
    signing_key: Path | None = Field(None, description="private JWK file, PS512, RSA ≥ 4096 bit")
    signing_key_env: str | None = Field(None, description="or: environment variable holding that JWK")
    tenant: str = Field(min_length=1, description="the hub tenant whose routes receive this destination's mail")

    @model_validator(mode="after")
    def _one_source_per_key(self) -> DestinationConfig:
        for key in ("encryption_key", "signing_key"):
            given = (getattr(self, key) is not None) + (getattr(self, f"{key}_env") is not None)
            if given != 1:
                raise ValueError(f"give exactly one of {key} (a file) and {key}_env (an environment variable)")
        return self


class FitConnectConfig(_Model):
    token_url: str = Field(pattern=r"^https?://", description="OAuth2 token endpoint")
    submission_api_url: str = Field(pattern=r"^https?://", description="Submission API base URL (with or without /v1)")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr
    scope: str | None = Field(None, description="OAuth2 scope, if the token endpoint wants one")
    destinations: list[DestinationConfig] = Field(min_length=1)
    page_size: int = Field(100, ge=1, le=500, description="limit for GET /v1/submissions and event logs")
    timeout_seconds: float = Field(30.0, gt=0, description="read/write timeout of one HTTP exchange")
    connect_timeout_seconds: float = Field(5.0, gt=0)
    token_refresh_margin_seconds: float = Field(60.0, ge=0, description="fetch a new token this long before expiry")
    max_attachment_bytes: int = Field(MAX_ATTACHMENT_BYTES, gt=0, description="plaintext limit per attachment")
    max_data_bytes: int = Field(64 * 1024 * 1024, gt=0, description="plaintext limit for the data")
    max_metadata_bytes: int = Field(1024 * 1024, gt=0, description="plaintext limit for the metadata")
    max_attachments: int = Field(MAX_ATTACHMENTS, ge=0, description="attachments per submission")
    max_submission_bytes: int = Field(MAX_SUBMISSION_BYTES, gt=0,
                                      description="plaintext limit for all attachments of one submission together")
    max_intake_failures: int = Field(5, ge=1, le=1000, description="polls that may fail on one submission with an "
                                     "unexpected error before it is refused with technical-error")
    jwks_cache_seconds: float = Field(3600.0, ge=0, description="how long the delivery service's JWKS is cached")
    callback_secret: SecretStr | None = Field(None, description="HMAC secret of the new-submission callback")
    poll_interval_seconds: float = Field(60.0, gt=0, description="how often the hub polls (callbacks wake it sooner)")
    escalate_after_days: float = Field(
        3.0, gt=0, description="the delivery service reminds the authority of a submission not fetched after this "
        "long (FIT-Connect: 3 days); the deadline watch counts down to it")
    auto_reject_after_days: float = Field(
        14.0, gt=0, description="and rejects it automatically after this long (FIT-Connect: 14 days)")
    delete_after_fetch_days: float = Field(
        7.0, gt=0, description="a fetched submission is deleted at the delivery service after this long (FIT-Connect: "
        "7 days); the hub should have answered it by then")
    warn_waiting_hours: float = Field(
        24.0, gt=0, description="/health/ready warns when a submission has waited this long, not fetched or not "
        "answered")

    @field_validator("submission_api_url")
    @classmethod
    def _base(cls, url: str) -> str:
        return re.sub(r"/v1/?$", "", url.rstrip("/"))

    @model_validator(mode="after")
    def _unique_destinations(self) -> FitConnectConfig:
        ids = [d.id.lower() for d in self.destinations]
        if len(ids) != len(set(ids)):
            raise ValueError("a destination is listed twice")
        return self

    def destination(self, destination_id: str) -> DestinationConfig:
        for d in self.destinations:
            if d.id.lower() == destination_id.lower():
                return d
        raise KeyError(destination_id)
