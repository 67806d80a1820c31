"""The coach dashboard in a real browser (Debian's chromium through Playwright).

Against the running commitment and checkin services on PostgreSQL + RabbitMQ, seeded by
`services.demo` (the same seed `make run` uses): the page shows the seeded streaks, the
at-risk clients first with their reasons, a new check-in without a reload, one client's
full history, never a note, and never another coach's clients. Screenshots are kept as
build artifacts under var/artifacts/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import demo
from shared import config, testing
from shared.testing import wait_until
from tests.support import debian

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("NOCONTACT_ARTIFACTS_DIR", config.REPO_ROOT / "var" / "artifacts"))
NOTES = ("Walked instead of scrolling.", "Hard evening.", "Called my sister.", "Better today.")


def _unavailable(reason: str) -> None:
    if testing.services_required():
        pytest.fail(f"required for the browser test (NOCONTACT_REQUIRE_SERVICES=1): {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium, installed with apt-get when missing."""
    if not debian.installed(CHROMIUM, "chromium"):
        _unavailable(f"{CHROMIUM} is missing and `apt-get install -y chromium` did not provide it")
    return CHROMIUM


@pytest.fixture
def browser(chromium: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium, headless=True, args=LAUNCH_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def _api(key: str) -> httpx.Client:
    return httpx.Client(timeout=10, headers={"Authorization": f"Bearer {key}"})


def _screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_coach_dashboard_in_a_real_browser(postgres_url: str, amqp_url: str, stack_factory: Any, browser: Any) -> None:
    stack = stack_factory(postgres_url, ["commitment", "checkin"])
    commitment_url, checkin_url = stack.url("commitment"), stack.url("checkin")
    tenant, reported = demo.seed(commitment_url=commitment_url, checkin_url=checkin_url)
    assert reported > 100
    token = demo.coach_token(tenant, commitment_url=commitment_url)
    admin = _api(tenant.api_key)

    # What the service says, to compare the page against.
    clients = admin.get(f"{checkin_url}/v1/coaches/{tenant.coach_id}/clients").json()["items"]
    views = {c["commitment_id"]: c for item in clients for c in item["commitments"]}
    assert len(views) == len(demo.STORIES)
    ids = {key: entry["id"] for key, entry in tenant.commitments.items()}
    assert views[ids["lee-taylor"]]["at_risk"] and "not_checking_in" in views[ids["lee-taylor"]]["reasons"]

    # The coach-facing JSON never carries a member's note.
    with _api(token) as coach:
        as_coach = coach.get(f"{checkin_url}/v1/coaches/{tenant.coach_id}/clients")
        history = coach.get(f"{checkin_url}/v1/commitments/{ids['sam-alex']}/check-ins")
    assert as_coach.status_code == 200 and history.status_code == 200
    assert not any(note in as_coach.text or note in history.text for note in NOTES)
    assert all(item.get("note") is None for item in history.json()["items"])

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    page.goto(f"{checkin_url}/dashboard?refresh=1#token={token}")
    page.wait_for_selector("#clients > li.client")
    members = {story.member_id for story in demo.STORIES}
    wait_until(lambda: page.locator("#clients > li.client").count() == len(members), 10)
    assert "#token" not in page.url  # the token leaves the address bar once read

    # The seeded streaks, per commitment, as the service computes them.
    for commitment_id, view in views.items():
        block = page.locator(f'section.commitment[data-commitment="{commitment_id}"]')
        assert block.locator(".streak-current b").inner_text() == str(view["streak"]["current_days"])
        assert block.locator(".streak-longest").inner_text() == f"{view['streak']['longest_days']} d"
        assert block.locator(".label").inner_text() == view["contact_label"]
        days = view["last_30_days"]
        today_missing = not days or days[-1]["date"] != view["streak"]["as_of"]
        assert block.locator(".strip .day:not(.none)").count() == min(len(days) + today_missing, 30)
        assert block.locator(".strip .day").count() == 30
        assert block.locator(".strip .day.today").count() == 1

    # At-risk clients first, flagged with words and a shape, not by colour alone.
    cards = page.locator("#clients > li.client")
    flags = [cards.nth(i).evaluate("n => n.classList.contains('at-risk')") for i in range(cards.count())]
    assert flags == sorted(flags, reverse=True) and flags[0]
    lee = page.locator('li.client[data-member="lee.m"]')
    assert "At risk" in lee.locator(".flag").text_content()
    assert "no check-in for 3 days" in lee.locator(".reasons").inner_text()
    assert "slipped in the last 7 days" in page.locator('li.client[data-member="jordan.k"] .reasons').inner_text()
    assert not any(note in page.content() for note in NOTES)
    _screenshot(page, "dashboard.png")

    # A check-in arrives: the page shows it without reloading.
    page.evaluate("window.__notReloaded = true")
    lee_view = views[ids["lee-taylor"]]
    member = httpx.post(f"{commitment_url}/v1/tokens", headers={"Authorization": f"Bearer {tenant.api_key}"},
                        json={"role": "member", "subject_id": "lee.m", "ttl_seconds": 600}).json()["token"]
    with _api(member) as lee_client:
        response = lee_client.post(f"{checkin_url}/v1/commitments/{ids['lee-taylor']}/check-ins",
                                   json={"outcome": "kept", "urge": 4, "mood": 3, "note": "Back on track."})
    assert response.status_code == 201, response.text
    today_cell = f'section.commitment[data-commitment="{ids["lee-taylor"]}"] .strip .day.today'
    wait_until(lambda: page.locator(today_cell).get_attribute("data-state") == "kept", 15)
    block = page.locator(f'section.commitment[data-commitment="{ids["lee-taylor"]}"]')
    assert block.locator(".last-check-in").inner_text() == "today"
    assert int(block.locator(".streak-current b").inner_text()) > lee_view["streak"]["current_days"]
    assert page.evaluate("window.__notReloaded") is True
    assert "Back on track." not in page.content()

    # One client's full history: heatmap, slips with channel and initiator, runs, milestones.
    page.locator(f'section.commitment[data-commitment="{ids["ana-robin"]}"] a.more').click()
    page.wait_for_selector("table.slips")
    streak = admin.get(f"{checkin_url}/v1/commitments/{ids['ana-robin']}/streak").json()
    slips = page.locator("table.slips tbody tr")
    assert slips.count() == streak["slipped_days"] == 3
    slip_rows = [slips.nth(i).inner_text() for i in range(slips.count())]
    assert any("in person" in row and "the other person" in row for row in slip_rows)
    assert any("email" in row and "the client" in row for row in slip_rows)
    runs = page.locator("table.runs tbody tr")
    assert runs.count() == 4
    lengths = [int(runs.nth(i).locator("td b").inner_text()) for i in range(runs.count())]
    assert max(lengths) == streak["longest_days"] and lengths[0] == streak["current_days"]
    assert page.locator(".heatmap .day.slipped").count() == 3
    assert page.locator(".heatmap .day.today").count() == 1
    assert page.locator(".milestones li").count() >= 4
    assert not any(note in page.content() for note in NOTES)
    _screenshot(page, "dashboard-detail.png")

    # Phone width: no horizontal scrolling on the overview.
    page.goto(f"{checkin_url}/dashboard?refresh=1")  # the session keeps the token
    page.set_viewport_size({"width": 390, "height": 844})
    page.wait_for_selector("#clients > li.client")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    _screenshot(page, "dashboard-phone.png")

    # Everything the page loaded came from the service itself: no CDN, no third party.
    assert requests and all(url.startswith(checkin_url) for url in requests)
    assert not errors, errors


def test_a_coach_sees_only_their_own_clients(postgres_url: str, amqp_url: str, stack_factory: Any,
                                             browser: Any) -> None:
    stack = stack_factory(postgres_url, ["commitment", "checkin"])
    commitment_url, checkin_url = stack.url("commitment"), stack.url("checkin")
    tenant, _ = demo.seed(commitment_url=commitment_url, checkin_url=checkin_url)
    admin = _api(tenant.api_key)
    created = admin.post(f"{commitment_url}/v1/commitments", json={
        "member_id": "zoe.x", "contact": {"label": "Kim (ex)", "relationship": "romantic"},
        "timezone": "Asia/Tokyo", "duration_days": 30,
    })
    assert created.status_code == 201, created.text
    assert admin.put(f"{commitment_url}/v1/coaches/coach-other/clients/zoe.x").status_code == 204
    wait_until(lambda: admin.get(f"{checkin_url}/v1/coaches/coach-other/clients").json()["items"], 20)
    maria = demo.coach_token(tenant, commitment_url=commitment_url)
    other = demo.coach_token(tenant, commitment_url=commitment_url, coach_id="coach-other")

    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(f"{checkin_url}/dashboard#token={other}")
    page.wait_for_selector("#clients > li.client")
    assert page.locator("#clients > li.client").count() == 1
    assert page.locator('li.client[data-member="zoe.x"] .label').inner_text() == "Kim (ex)"
    assert page.locator('li.client[data-member="sam.r"]').count() == 0

    # Maria's token naming the other coach: the service refuses, the page says so.
    page.goto(f"{checkin_url}/dashboard#token={maria}&coach=coach-other")
    page.wait_for_selector("#sign-in-error:not([hidden])")
    assert "Not allowed" in page.locator("#sign-in-error").inner_text()
    assert page.locator('li.client[data-member="zoe.x"]').count() == 0

    # Nor can she read the other coach's client's check-ins directly.
    with _api(maria) as coach:
        commitment_id = created.json()["id"]
        assert coach.get(f"{checkin_url}/v1/commitments/{commitment_id}/check-ins").status_code == 404
        assert coach.get(f"{checkin_url}/v1/coaches/coach-other/clients").status_code == 403

    # An admin picks a coach on the sign-in form.
    page.goto(f"{checkin_url}/dashboard")
    page.fill("#token", tenant.api_key)
    page.fill("#coach-id", "coach-other")
    page.click("button[type=submit]")
    page.wait_for_selector('li.client[data-member="zoe.x"]')
    assert page.locator("#clients > li.client").count() == 1
    assert "Admin" in page.locator("#who-text").inner_text()
