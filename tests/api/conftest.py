from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import AppStack, StartApps


@pytest.fixture
def apps(start_apps: StartApps, namespace: str) -> AppStack:
    return start_apps(namespace)


@pytest.fixture
async def client(apps: AppStack) -> AsyncIterator[httpx.AsyncClient]:
    async with apps.client() as http:
        yield http
