"""An API that will not run open where others can reach it, and never takes an API key over
plain HTTP when it is served over HTTPS."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from redis.asyncio import Redis

from devstack import processes, stack
from tests.conftest import StartApps

KEY = "a-key-long-enough-to-mean-it"


async def test_outside_loopback_the_api_refuses_to_start_without_keys(
    backends: stack.StackState, namespace: str
) -> None:
    name = f"{namespace}-open-api"
    app = stack.start_api(
        backends, namespace=namespace, name=name, extra_env={"KT_API_HOST": "0.0.0.0"}
    )
    try:
        exited = await asyncio.to_thread(
            processes.wait_for, lambda: not processes.alive(app.pid), timeout=60
        )
        assert exited, "an API without keys kept running on 0.0.0.0"
        assert processes.exit_code(app.pid) == 2
        log = await asyncio.to_thread(Path(app.log).read_text, errors="replace")
        assert "refuses to start" in log
        assert "no API keys are configured" in log
        assert "KT_API_KEYS" in log  # says how to fix it
    finally:
        stack.stop_app(backends, name, grace_seconds=5)


async def test_on_loopback_an_api_without_keys_runs_open_and_says_so(
    start_apps: StartApps, namespace: str
) -> None:
    apps = start_apps(namespace, workers=0)
    assert apps.api is not None
    async with apps.client() as client:
        assert (await client.get("/catalog")).status_code == 200
    log = await asyncio.to_thread(Path(apps.api.log).read_text, errors="replace")
    assert "no API keys configured: the API accepts every request" in log


async def test_over_https_only_a_key_sent_over_plain_http_is_refused_and_changes_nothing(
    start_apps: StartApps, namespace: str, redis_client: Redis
) -> None:
    env = {"KT_API_KEYS": json.dumps([KEY]), "KT_API_HTTPS_ONLY": "true"}
    apps = start_apps(namespace, workers=0, env=env)
    key = {"X-API-Key": KEY}
    # The test talks to the API from 127.0.0.1, which uvicorn trusts as a proxy by default
    # (KT_API_FORWARDED_ALLOW_IPS): X-Forwarded-Proto says what the client used.
    async with apps.client() as client:
        direct = await client.get("/catalog", headers=key)
        proxied_http = await client.get("/catalog", headers={**key, "X-Forwarded-Proto": "http"})
        submitted = await client.post(
            "/tasks", json={"task": "noop"}, headers={**key, "X-Forwarded-Proto": "http"}
        )
        wrong_key = await client.get(
            "/catalog", headers={"X-API-Key": "guess", "X-Forwarded-Proto": "http"}
        )
        proxied_https = await client.get("/catalog", headers={**key, "X-Forwarded-Proto": "https"})
        no_key = await client.get("/catalog", headers={"X-Forwarded-Proto": "https"})
        probes = [await client.get(path) for path in ("/healthz", "/readyz")]

    for refused in (direct, proxied_http, submitted, wrong_key):
        assert refused.status_code == 403, refused.text
        detail = refused.json()["detail"]
        assert "HTTPS only" in detail
        assert "rotate" in detail
    assert proxied_https.status_code == 200
    assert no_key.status_code == 401
    assert [probe.status_code for probe in probes] == [200, 200]  # the kubelet's plain HTTP
    assert [key async for key in redis_client.scan_iter(match=f"{namespace}:*")] == []
