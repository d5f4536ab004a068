"""``[console]``: the operator console's settings (login sessions, throttling, bulk bound, identity provider)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr

__all__ = ["ConsoleConfig", "OidcConfig"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OidcConfig(BaseModel):
    """Login through the town's identity provider (OpenID Connect, authorization code flow with PKCE).

    A person logs in through the provider and is let in only when a console user has that provider subject
    (``xhub users add NAME --oidc-subject ISSUER|SUB``): the provider says who it is, the hub says what they may.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(description="the provider's issuer URL; its /.well-known/openid-configuration is read")
    client_id: str = Field(min_length=1, max_length=200)
    client_secret: SecretStr = Field(description="the client's secret (use client_secret_file)")
    label: str = Field("Login with the town's account", max_length=80, description="the login page's button")
    scope: str = "openid"


class ConsoleConfig(_Model):
    enabled: bool = Field(True, description="serve the console under /console (the operations API stays)")
    session_hours: float = Field(8.0, gt=0, le=24 * 7, description="a login lasts this long (absolute)")
    login_attempts: int = Field(5, ge=1, le=100, description="failed logins per name or address per window")
    login_window_seconds: float = Field(300.0, ge=1, description="the window of login_attempts")
    bulk_bound: int = Field(500, ge=1, le=10000, description="the most messages one bulk action may touch")
    oidc: OidcConfig | None = None
