"""API keys: several accepted at once (rotation), only their SHA-256 hashes kept in memory."""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader

API_KEY_HEADER = "X-API-Key"

_scheme = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="An API key.")


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    def __init__(self, keys: list[str]) -> None:
        self._digests = [_digest(key) for key in keys]

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def accepts(self, key: str) -> bool:
        offered = _digest(key)
        # Compare against every key (no early exit) so timing says nothing about which matched.
        matches = [hmac.compare_digest(offered, digest) for digest in self._digests]
        return any(matches)


async def require_api_key(
    request: Request, key: Annotated[str | None, Security(_scheme)] = None
) -> None:
    keys: ApiKeys = request.app.state.api_keys
    if not keys.enabled:
        return
    if key is None or not keys.accepts(key):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            f"missing or wrong API key: send a valid key in the {API_KEY_HEADER} header",
            headers={"WWW-Authenticate": API_KEY_HEADER},
        )


Authenticated = Depends(require_api_key)
