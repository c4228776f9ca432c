"""Config of the ``security/`` group: API keys and the roles they grant."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveFloat, PositiveInt

from framework.config.base import StrictModel

Role = Literal["predict", "admin", "feedback"]
ROLES: tuple[str, ...] = ("predict", "admin", "feedback")


class RateLimitConfig(StrictModel):
    """Per-key request rate (a token bucket in each replica); past it: 429 with Retry-After."""

    enabled: bool = Field(True, description="Limit the request rate of each API key.")
    requests_per_s: PositiveFloat = Field(
        10_000.0, description="Sustained requests per second one key may make, per replica."
    )
    burst: PositiveInt = Field(
        20_000, description="Requests a key may make at once before the rate applies."
    )


class SecurityConfig(StrictModel):
    """Who may call the serving application. Keys are stored only as sha256 hashes."""

    auth: Literal["api_key", "off"] = Field(
        "api_key",
        description="api_key: every route but health checks and docs needs a key with the "
        "route's role; off: no checks at all (logged as a warning at startup).",
    )
    keys_file: str | None = Field(
        "api_keys.json",
        description='JSON file of hashed keys: {"keys": [{"name", "sha256", "roles"}]}.',
    )
    keys_env: str | None = Field(
        "FRAMEWORK_API_KEYS",
        description="Environment variable that may hold the same JSON as `keys_file`.",
    )
    header: str = Field("x-api-key", description="Request header carrying the key.")
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    audit_key_file: str | None = Field(
        None,
        description="File holding the key the registry's audit log is signed with (HMAC), kept "
        "outside the registry; relative to the working folder. null: $FRAMEWORK_AUDIT_KEY, "
        "else a per-registry file under ~/.config/framework/audit-keys/ created on first use.",
    )
    key_name: str | None = Field(None, description="task=api_key: name of the new key.")
    key_roles: list[Role] = Field(
        default_factory=lambda: ["predict"], description="task=api_key: roles of the new key."
    )
