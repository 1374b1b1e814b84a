from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import AppStack, StartApps


@pytest.fixture
def apps(start_apps: StartApps, namespace: str) -> AppStack:
    """An API and one worker."""
    return start_apps(namespace)


@pytest.fixture
async def client(apps: AppStack) -> AsyncIterator[httpx.AsyncClient]:
    async with apps.client() as http:
        yield http


@pytest.fixture
async def api_client(start_apps: StartApps, namespace: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API alone: for tests of what the API answers by itself."""
    async with start_apps(namespace, workers=0).client() as http:
        yield http
