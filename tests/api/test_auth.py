"""API keys: several valid at once for rotation, from the environment or a mounted file."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import StartApps


async def test_keys_protect_every_route_but_health_and_rotate(
    start_apps: StartApps, namespace: str, tmp_path: Path
) -> None:
    key_file = tmp_path / "keys"
    key_file.write_text("from-file-key\n")
    env = {"KT_API_KEYS": json.dumps(["old-key", "new-key"]), "KT_API_KEYS_FILE": str(key_file)}
    apps = start_apps(namespace, workers=0, env=env)

    async with apps.client() as client:
        missing = await client.get("/catalog")
        wrong = await client.get("/catalog", headers={"X-API-Key": "guess"})
        submit_without = await client.post("/tasks", json={"task": "noop"})
        accepted = [
            await client.get("/catalog", headers={"X-API-Key": key})
            for key in ("old-key", "new-key", "from-file-key")
        ]
        health = [await client.get(path) for path in ("/healthz", "/readyz")]

    assert missing.status_code == wrong.status_code == submit_without.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    assert [r.status_code for r in accepted] == [200, 200, 200]
    assert [r.status_code for r in health] == [200, 200]
