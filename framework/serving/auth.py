"""Who may call a route: API keys, the roles they grant, and a rate limit per key."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from framework.config.security import SecurityConfig
from framework.security.keys import ApiKey, hash_key, load_keys
from framework.serving.problems import HttpError

logger = logging.getLogger("ray.serve")
PUBLIC = "public"
#: The key name rate limits use when auth is off: every caller shares one bucket.
ANONYMOUS = "anonymous"


class TokenBucket:
    """``rate`` tokens a second up to ``burst``; a request takes one or waits ``wait_s``."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0.0 when a token was taken, else the seconds until one is free."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


class Gatekeeper:
    """Checks a request's key against the route's role and the key's rate limit."""

    def __init__(self, config: SecurityConfig, keys_base: Path):
        self.config = config
        self.header = config.header.lower().encode()
        self.keys: dict[str, ApiKey] = {}
        if config.auth == "off":
            logger.warning(
                "AUTH IS OFF (security.auth=off): every route answers without an API key"
            )
        else:
            self.keys = load_keys(config, keys_base)
        self.buckets: dict[str, TokenBucket] = {}

    @property
    def names(self) -> list[str]:
        return sorted(k.name for k in self.keys.values())

    def admit(self, headers: dict[bytes, bytes], role: str) -> ApiKey | None:
        """The caller's key (None: a public route, or auth off); 401, 403 or 429 if refused."""
        if role == PUBLIC:
            return None
        entry = None if self.config.auth == "off" else self._key(headers, role)
        self._limit(entry.name if entry else ANONYMOUS)
        return entry

    def _key(self, headers: dict[bytes, bytes], role: str) -> ApiKey:
        raw = headers.get(self.header)
        if raw is None:
            auth = headers.get(b"authorization", b"")
            if auth[:7].lower() == b"bearer ":
                raw = auth[7:].strip()
        challenge = {"WWW-Authenticate": "ApiKey"}
        if not raw:
            raise HttpError(
                401, f"an API key is required (header {self.config.header})", headers=challenge
            )
        entry = self.keys.get(hash_key(raw.decode("latin-1")))
        if entry is None:
            raise HttpError(401, "the API key is not valid", headers=challenge)
        if not entry.grants(role):
            raise HttpError(403, f"key {entry.name!r} lacks the role {role!r} this route needs")
        return entry

    def _limit(self, name: str) -> None:
        limit = self.config.rate_limit
        if not limit.enabled:
            return
        bucket = self.buckets.get(name)
        if bucket is None:
            bucket = self.buckets[name] = TokenBucket(limit.requests_per_s, limit.burst)
        wait = bucket.take()
        if wait > 0:
            retry = max(1, int(wait + 0.999))
            raise HttpError(
                429,
                f"key {name!r} passed its rate limit of {limit.requests_per_s:g} requests/s",
                headers={"Retry-After": str(retry)},
            )
