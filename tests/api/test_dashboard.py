"""The dashboard in a real headless browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devstack.stack import REPO_ROOT
from services.client import Client, chord, group, sig
from services.core import policy
from services.core.settings import Settings
from services.tasks import catalog
from tests.conftest import AppStack, StartApps

KEY = "dashboard-key"
SCREENSHOT = REPO_ROOT / "build" / "dashboard.png"
# Flags a headless Chromium needs on a machine with no network beyond loopback.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium is required (make tools installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def apps(start_apps: StartApps, namespace: str) -> AppStack:
    schedule = {"name": "nightly", "task": "noop", "cron": "0 3 * * *", "timezone": "Europe/Paris"}
    return start_apps(
        namespace,
        env={"KT_API_KEYS": json.dumps([KEY]), "KT_SCHEDULES": json.dumps([schedule])},
    )


def test_the_dashboard_shows_a_task_move_to_complete_live(apps: AppStack, browser: Browser) -> None:
    assert apps.api is not None
    page: Page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{apps.api.url}/dashboard")

    # Protected like the API: the page asks for the key before it shows any data.
    expect(page.locator("#login")).to_be_visible()
    page.fill("#api-key", "not-the-key")
    page.click("#login button")
    expect(page.locator("#login-error")).to_have_text("that key was refused")
    page.fill("#api-key", KEY)
    page.click("#login button")
    expect(page.locator("#board")).to_be_visible()

    with Client(apps.api.url, api_key=KEY) as tasks:
        record = tasks.submit("sleep", {"seconds": 3, "steps": 6})
        row = page.locator(f'#recent tr[data-task-id="{record.id}"]')
        # Live, without a reload: the row appears, runs, then completes.
        expect(row.locator("td").nth(2)).to_have_text("PROGRESS", timeout=15_000)
        expect(row.locator("td").nth(2)).to_have_text("COMPLETE", timeout=30_000)
        tasks.submit("fail", {"message": "shown with its traceback"})
        later = tasks.submit("noop", {}, countdown=3600)
        held = page.locator(f'#recent tr[data-task-id="{later.id}"] td').nth(2)
        expect(held).to_contain_text("PENDING until", timeout=10_000)
        expect(held).to_contain_text("(eta)")

    expect(page.locator('[data-state="COMPLETE"] b')).to_have_text("1", timeout=10_000)
    expect(page.locator('[data-state="FAILURE"] b')).to_have_text("1", timeout=15_000)
    topics = len(policy.all_task_topics(catalog, Settings())) + 1  # the retry topic too
    expect(page.locator("#lag tbody tr")).to_have_count(topics, timeout=15_000)
    nightly = page.locator('#schedules tr[data-schedule="nightly"]')
    expect(nightly).to_contain_text("cron 0 3 * * * (Europe/Paris)")

    row.locator("a").click()
    expect(page.locator("#detail")).to_be_visible()
    expect(page.locator("#detail-history tbody tr").last).to_contain_text("COMPLETE")
    expect(page.locator("#detail-outcome")).to_contain_text("slept_seconds")
    # A workflow member's detail shows its workflow: n of m done, every member and result.
    with Client(apps.api.url, api_key=KEY) as tasks:
        flow = tasks.submit_workflow(
            chord(group(sig("add", {"x": 1}), sig("add", {"x": 2})), sig("tally"))
        )
        tasks.wait_workflow(flow.id, timeout=60)
    member = page.locator(f'#recent tr[data-task-id="{flow.members[0].task_id}"] a')
    member.click()
    expect(page.locator("#workflow-title")).to_contain_text("(chord): COMPLETE, 2 of 2 done")
    callback = page.locator('#workflow-members tr[data-step="2"]')
    expect(callback).to_contain_text("callback")
    expect(callback).to_contain_text('"sum":3')
    assert KEY not in page.content(), "the page must never show a secret"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 10_000
    page.close()
