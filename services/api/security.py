"""API keys: several accepted at once (rotation), only their SHA-256 hashes kept in memory;
never accepted over plain HTTP when the API is served over HTTPS; and no API without keys
where others can reach it."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader
from starlette.types import ASGIApp, Receive, Scope, Send

from services.core.errors import ConfigurationError
from services.core.settings import Settings

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


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def refuse_open_exposure(settings: Settings, keys: ApiKeys) -> None:
    """No API without keys where others can reach it (the FastAPI full-stack template refuses
    placeholder secrets outside development the same way); on loopback it may run open."""
    if not keys.enabled and not is_loopback(settings.api_host):
        raise ConfigurationError(
            f"no API keys are configured and the API would listen on {settings.api_host}, "
            "where others can reach it: set KT_API_KEYS (a JSON list) or KT_API_KEYS_FILE, or "
            "listen on 127.0.0.1 (KT_API_HOST)"
        )


class PlainHttpKeyGuard:
    """With ``api_https_only``: a request that carries an API key over plain HTTP is refused
    (403) before anything reads the key, valid or not. The scheme is the connection's, or
    the ``X-Forwarded-Proto`` of a proxy uvicorn trusts (``api_forwarded_allow_ips``).
    Requests without a key (health probes from the kubelet, which come over plain HTTP to
    the pod) pass: they carry no secret."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._header = API_KEY_HEADER.lower().encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("scheme") != "http":
            await self.app(scope, receive, send)
            return
        if not any(name == self._header for name, _ in scope["headers"]):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "detail": (
                    f"API keys are accepted over HTTPS only; this request sent its "
                    f"{API_KEY_HEADER} over plain HTTP, where anyone on the way could read it: "
                    "treat that key as exposed, rotate it, and use the https:// URL"
                )
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status.HTTP_403_FORBIDDEN,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
