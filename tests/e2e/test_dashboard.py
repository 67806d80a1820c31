"""The coach dashboard in a real browser (Debian's chromium through Playwright).

Against the running commitment, checkin and notification services on PostgreSQL +
RabbitMQ, seeded by `services.demo` (the same seed `make run` uses): a sign-in link opens
a session every tab shares, and signing out ends it at once; the page shows the seeded
streaks, at-risk clients first with their reasons, the day counts agreeing, the feed with
an SOS on top that arrives without a reload and stays acknowledged across reloads, a new
check-in without a reload, filters and search by keyboard, one client's full history with
its mood and urge charts, never a note, never another coach's clients; axe-core finds no
violation on any view, and a phone's width never scrolls sideways. Screenshots are kept
under var/artifacts/ (and NOCONTACT_SCREENS_DIR when set).
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import demo
from services.checkin import coach_notes
from shared import config, keyring, testing
from shared.db import engine_for
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
SCREENS = os.environ.get("NOCONTACT_SCREENS_DIR")
NOTES = ("Walked instead of scrolling.", "Hard evening.", "Called my sister.", "Better today.")
DESKTOP = {"width": 1440, "height": 900}
PHONE = {"width": 390, "height": 844}


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
    if SCREENS:
        Path(SCREENS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENS) / name), full_page=True)
    return path


def _no_axe_violations(page: Any, view: str) -> None:
    """axe-core (the copy axe-playwright-python ships, run through the DevTools protocol, so
    the page's CSP needs no exception for it): no violation of any rule."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    violations = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in results.response["violations"]]
    assert not violations, f"{view}: {violations}"


def _seen(page: Any, requests: list[str], path: str) -> int:
    """How many requests to `path` the page sent; a round trip to the browser first lets
    Playwright hand over the events that arrived meanwhile (they come only on its calls)."""
    page.evaluate("0")
    return sum(path in url for url in requests)


def _no_sideways_scroll(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def _sign_in_link(checkin_url: str, api_key: str, coach_id: str) -> str:
    with _api(api_key) as admin:
        minted = admin.post(f"{checkin_url}/v1/dashboard/sign-in-links", json={"coach_id": coach_id})
    assert minted.status_code == 201, minted.text
    url = minted.json()["url"]
    assert url.startswith(f"{checkin_url}/dashboard#link=")
    return url.split("#link=", 1)[1]


def _member_token(commitment_url: str, api_key: str, member_id: str) -> str:
    with _api(api_key) as admin:
        minted = admin.post(f"{commitment_url}/v1/tokens", json={"role": "member", "subject_id": member_id,
                                                                 "ttl_seconds": 600})
    assert minted.status_code == 201, minted.text
    return str(minted.json()["token"])


def test_coach_dashboard_in_a_real_browser(postgres_url: str, amqp_url: str, stack_factory: Any, browser: Any) -> None:
    stack = stack_factory(postgres_url, ["commitment", "checkin", "notification"])
    commitment_url, checkin_url = stack.url("commitment"), stack.url("checkin")
    tenant, reported = demo.seed(commitment_url=commitment_url, checkin_url=checkin_url)
    assert reported > 100
    admin = _api(tenant.api_key)

    # What the service says, to compare the page against.
    clients = admin.get(f"{checkin_url}/v1/coaches/{tenant.coach_id}/clients").json()["items"]
    views = {c["commitment_id"]: c for item in clients for c in item["commitments"]}
    assert len(views) == len(demo.STORIES)
    ids = {key: entry["id"] for key, entry in tenant.commitments.items()}
    assert views[ids["lee-taylor"]]["at_risk"] and "not_checking_in" in views[ids["lee-taylor"]]["reasons"]
    # Ana has a display name (a personal value: sealed in the events and read models).
    assert admin.put(f"{commitment_url}/v1/members/ana.g", json={"display_name": "Ana García"}).status_code == 200

    # -- signing in: a single-use link, a session every tab shares ------------------------------
    link = _sign_in_link(checkin_url, tenant.api_key, tenant.coach_id)
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))

    page.goto(f"{checkin_url}/dashboard?refresh=1#link={link}")
    page.wait_for_selector("#clients > li.client")
    members = {story.member_id for story in demo.STORIES}
    wait_until(lambda: page.locator("#clients > li.client").count() == len(members), 10)
    assert "#link" not in page.url  # the secret leaves the address bar once read
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert link not in cookie["value"]
    assert page.locator("#who-text").inner_text() == f"Coach {tenant.coach_id}"

    other_tab = context.new_page()
    other_tab.goto(f"{checkin_url}/dashboard?refresh=1")
    other_tab.wait_for_selector("#clients > li.client")  # no second sign-in

    elsewhere = browser.new_page()
    elsewhere.goto(f"{checkin_url}/dashboard#link={link}")
    elsewhere.wait_for_selector("#sign-in-error:not([hidden])")
    assert "already used" in elsewhere.locator("#sign-in-error").inner_text()
    elsewhere.fill("#token", "not-a-token-at-all")
    elsewhere.click("button[type=submit]")
    wait_until(lambda: "not valid" in elsewhere.locator("#sign-in-error").inner_text(), 10)
    assert "expired" not in elsewhere.locator("#sign-in-error").inner_text()
    _no_axe_violations(elsewhere, "sign-in")
    _screenshot(elsewhere, "dashboard-sign-in.png")
    elsewhere.close()

    # The page's data routes refuse a write without the page's header, whatever the cookie.
    with httpx.Client(cookies={cookie["name"]: cookie["value"]}) as forged:
        assert forged.get(f"{checkin_url}/dashboard/api/session").status_code == 200
        assert forged.post(f"{checkin_url}/dashboard/api/feed/1/acknowledge").status_code == 403
        assert forged.get(f"{checkin_url}/dashboard/api/session", cookies={cookie["name"]: "x"}).status_code == 401

    # -- the seeded streaks, per commitment, as the service computes them ------------------------------
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
    # One day count: "no check-in for N days" and "Last check-in: N days ago" are the same N.
    silent = re.search(r"no check-in for (\d+) days", lee.locator(".reasons").inner_text())
    assert silent and lee.locator(".last-check-in").inner_text() == f"{silent.group(1)} days ago"
    assert "slipped in the last 7 days" in page.locator('li.client[data-member="jordan.k"] .reasons').inner_text()
    # A display name instead of the id, the id beside it; the service keeps it sealed.
    ana_head = page.locator('li.client[data-member="ana.g"] .client-head h2')
    wait_until(lambda: ana_head.locator(".name").inner_text() == "Ana García", 15)
    assert ana_head.locator(".id").inner_text() == "ana.g"
    with engine_for(postgres_url).connect() as conn:
        stored = conn.exec_driver_sql("SELECT display_name FROM checkin_member_profiles WHERE member_id = 'ana.g'")
        assert stored.scalar().startswith(keyring.PREFIX)
    # The summary counts clients, each number of them.
    summary = page.locator("#summary").inner_text()
    assert f"{len(members)} clients" in summary and "commitment" not in summary
    assert not any(note in page.content() for note in NOTES)

    # -- the feed: an SOS arrives on top without a reload; acknowledging it persists -------------------------
    page.evaluate("window.__notReloaded = true")
    sam = next(item for item in clients if item["member_id"] == "sam.r")
    message = f"please call me {uuid.uuid4().hex[:6]}"
    with _api(_member_token(commitment_url, tenant.api_key, "sam.r")) as sam_client:
        sent = sam_client.post(f"{checkin_url}/v1/commitments/{sam['commitments'][0]['commitment_id']}/sos",
                               json={"message": message})
    assert sent.status_code == 202, sent.text
    first = page.locator("#sos-items > li").first
    wait_until(lambda: first.count() and first.get_attribute("data-kind") == "sos", 20,
               message="the SOS on top of the page")
    assert message in first.inner_text() and "sam.r" in first.inner_text()
    assert page.evaluate("window.__notReloaded") is True
    sos_box = page.locator("#sos").bounding_box()
    assert sos_box is not None and sos_box["y"] < page.locator("#feed").bounding_box()["y"]
    assert sos_box["y"] < page.locator("#clients").bounding_box()["y"]
    # The rest of the feed: the newest few, then all of them on request.
    assert 0 < page.locator("#feed-items > li").count() <= 6
    page.click("#feed-more")
    wait_until(lambda: page.locator("#feed-items > li").count() > 6, 5)
    page.click("#feed-more")
    _no_axe_violations(page, "overview with the feed")
    _screenshot(page, "dashboard.png")

    sos_id = first.get_attribute("data-item")
    first.locator("button.ack").focus()
    page.keyboard.press("Enter")
    wait_until(lambda: page.locator(f'#feed-seen > li[data-item="{sos_id}"]').count() == 1, 10)
    assert page.locator(f'#sos-items > li[data-item="{sos_id}"]').count() == 0
    assert page.locator("#sos").is_hidden()
    page.reload()
    page.wait_for_selector("#clients > li.client")
    wait_until(lambda: page.locator(f'#feed-seen > li[data-item="{sos_id}"]').count() == 1, 10)
    with _api(tenant.api_key) as reader:
        item = next(i for i in reader.get(f"{stack.url('notification')}/v1/coaches/{tenant.coach_id}/notifications")
                    .json()["items"] if str(i["id"]) == sos_id)
    assert item["acknowledged_by"] == f"coach:{tenant.coach_id}" and not item["pinned"]

    # -- a check-in arrives: the page shows it without reloading ----------------------------------------------
    page.evaluate("window.__notReloaded = true")
    lee_view = views[ids["lee-taylor"]]
    with _api(_member_token(commitment_url, tenant.api_key, "lee.m")) as lee_client:
        response = lee_client.post(f"{checkin_url}/v1/commitments/{ids['lee-taylor']}/check-ins",
                                   json={"outcome": "kept", "urge": 8, "mood": 3, "note": "Back on track."})
    assert response.status_code == 201, response.text
    today_cell = f'section.commitment[data-commitment="{ids["lee-taylor"]}"] .strip .day.today'
    wait_until(lambda: page.locator(today_cell).get_attribute("data-state") == "kept", 15)
    block = page.locator(f'section.commitment[data-commitment="{ids["lee-taylor"]}"]')
    assert block.locator(".last-check-in").inner_text() == "today"
    assert int(block.locator(".streak-current b").inner_text()) > lee_view["streak"]["current_days"]
    # An urge of 8/10 (the tenant's high mark) reads "high", never a calm "steady".
    assert block.locator(".urges").get_attribute("data-level") == "high"
    assert "high" in block.locator(".urges .latest").inner_text()
    assert page.evaluate("window.__notReloaded") is True
    assert "Back on track." not in page.content()

    # -- filters and search, by keyboard ---------------------------------------------------------------------------
    at_risk = sum(1 for item in admin.get(f"{checkin_url}/v1/coaches/{tenant.coach_id}/clients").json()["items"]
                  if item["at_risk"])
    page.locator('#summary button[data-filter="at_risk"]').focus()
    page.keyboard.press("Enter")
    wait_until(lambda: page.locator("#clients > li.client").count() == at_risk, 5)
    assert page.locator('#summary button[data-filter="at_risk"]').get_attribute("aria-pressed") == "true"
    assert all(cards.nth(i).evaluate("n => n.classList.contains('at-risk')") for i in range(cards.count()))
    # The polls that follow leave the keyboard where it was.
    polled = _seen(page, requests, "/dashboard/api/clients")
    wait_until(lambda: _seen(page, requests, "/dashboard/api/clients") >= polled + 2, 15)
    assert page.evaluate("document.activeElement.dataset.filter") == "at_risk"
    page.keyboard.press("Space")  # the same chip again: everyone
    wait_until(lambda: page.locator("#clients > li.client").count() == len(members), 5)
    page.locator("#search").focus()
    page.keyboard.type("jordan")
    wait_until(lambda: page.locator("#clients > li.client").count() == 1, 5)
    assert page.locator('li.client[data-member="jordan.k"]').count() == 1
    page.keyboard.press("Control+A")
    page.keyboard.press("Backspace")
    wait_until(lambda: page.locator("#clients > li.client").count() == len(members), 5)

    # -- one client's full history: heatmap, charts, slips with channel and initiator, runs, milestones --------------
    with _api(_member_token(commitment_url, tenant.api_key, "ana.g")) as ana_client:
        logged = ana_client.post(f"{checkin_url}/v1/commitments/{ids['ana-robin']}/urges", json={
            "intensity": 9, "outcome": "passed", "trigger": "Saw their photo", "coping": "Called my sister",
            "note": "only mine"})
    assert logged.status_code == 201, logged.text
    page.locator(f'section.commitment[data-commitment="{ids["ana-robin"]}"] a.more').click()
    page.wait_for_selector("table.slips")
    streak = admin.get(f"{checkin_url}/v1/commitments/{ids['ana-robin']}/streak").json()
    runs_json = admin.get(f"{checkin_url}/v1/commitments/{ids['ana-robin']}/runs").json()["items"]
    slips = page.locator("table.slips tbody tr")
    assert slips.count() == streak["slipped_days"] == 3
    slip_rows = [slips.nth(i).inner_text() for i in range(slips.count())]
    assert any("in person" in row and "the other person" in row for row in slip_rows)
    assert any("email" in row and "the client" in row for row in slip_rows)
    runs = page.locator("table.runs tbody tr")
    assert runs.count() == len(runs_json) == 4
    lengths = [int(runs.nth(i).locator("td b").inner_text()) for i in range(runs.count())]
    assert lengths == [run["days"] for run in reversed(runs_json)]
    assert max(lengths) == streak["longest_days"] and lengths[0] == streak["current_days"]
    assert page.locator(".heatmap .day.slipped").count() == 3
    assert page.locator(".heatmap .day.today").count() == 1
    assert page.locator(".milestones li").count() >= 4
    # Mood and urges, day by day: labelled value axes (0-10, 1-5) and dates along the bottom.
    for chart, lowest, highest in ((".urge-chart", "0", "10"), (".mood-chart", "1", "5")):
        texts = page.locator(f"{chart} svg text").evaluate_all("nodes => nodes.map(n => n.textContent)")
        assert {lowest, highest, "today"} <= set(texts), texts
        assert any(re.fullmatch(r"\d{1,2} [A-Z][a-z]{2}", text) for text in texts), texts
        assert page.locator(f"{chart} svg circle").count() > 10
    assert page.locator(".member-id").inner_text() == "ana.g"
    # The urge logged between check-ins: in its table and on the chart, its level, time and
    # outcome; the member's own words (trigger, coping, note) never reach the coach.
    urge_rows = page.locator("table.urges-logged tbody tr")
    assert urge_rows.count() == 1
    assert all(text in urge_rows.first.inner_text() for text in ("9/10", "passed"))
    assert not any(words in page.content() for words in ("only mine", "Saw their photo", "Called my sister"))
    assert page.locator(".urge-chart svg path.logged").count() == 1
    assert page.locator("#detail-title").inner_text().startswith("Ana García")

    # A private note on the client: saved, there again after a reload, sealed at rest.
    note = "Prefers a call after 6pm; sister is her support."
    page.fill("#note-text", note)
    page.locator("#note-save").focus()
    page.keyboard.press("Enter")
    wait_until(lambda: page.locator("#note-status").inner_text().startswith("Saved"), 10)
    page.reload()
    page.wait_for_selector("table.slips")
    wait_until(lambda: page.locator("#note-text").input_value() == note, 10)
    with engine_for(postgres_url).connect() as conn:
        sealed = conn.exec_driver_sql("SELECT note FROM checkin_coach_notes WHERE member_id = 'ana.g'").scalar()
        assert sealed.startswith(keyring.PREFIX) and note not in sealed
        assert note not in str(conn.exec_driver_sql("SELECT data FROM events WHERE type = 'coach_note.saved'").all())
    assert not any(note in page.content() for note in NOTES)
    _no_axe_violations(page, "detail")
    _screenshot(page, "dashboard-detail.png")
    page.set_viewport_size(PHONE)
    assert _no_sideways_scroll(page)
    _no_axe_violations(page, "detail, phone")
    _screenshot(page, "dashboard-detail-phone.png")
    page.set_viewport_size(DESKTOP)

    # -- the calendar: a held-firm day, paused days and an SOS, each by shape and by name ----------------------------
    lee_id = ids["lee-taylor"]
    lee_today = date.fromisoformat(admin.get(f"{checkin_url}/v1/commitments/{lee_id}/streak").json()["as_of"])
    held_on, paused_on = lee_today - timedelta(days=3), [lee_today - timedelta(days=n) for n in (2, 1)]
    reason, sos_message = f"hospital {uuid.uuid4().hex[:6]}", f"help {uuid.uuid4().hex[:6]}"
    with _api(_member_token(commitment_url, tenant.api_key, "lee.m")) as lee_client:
        # Lee's last silent days: one reported late as kept, held firm against a text and a call...
        held = lee_client.post(f"{checkin_url}/v1/commitments/{lee_id}/check-ins", json={
            "date": held_on.isoformat(), "outcome": "kept",
            "contact_attempts": [{"channel": "texts"}, {"channel": "calls"}]})
        assert held.status_code == 201, held.text
        # ...the next two paused (never reported: excused), and an SOS today.
        pause = lee_client.post(f"{checkin_url}/v1/commitments/{lee_id}/pauses", json={
            "from": paused_on[0].isoformat(), "to": paused_on[-1].isoformat(), "reason": reason})
        assert pause.status_code == 201, pause.text
        sos = lee_client.post(f"{checkin_url}/v1/commitments/{lee_id}/sos", json={"message": sos_message})
        assert sos.status_code == 202, sos.text
    streak = admin.get(f"{checkin_url}/v1/commitments/{lee_id}/streak").json()
    assert streak["held_firm_days"] >= 1 and streak["excused_days"] == 2
    page.goto(f"{checkin_url}/dashboard?refresh=1#/c/{lee_id}")
    page.wait_for_selector(".heatmap .day.sos")

    def day(on: date) -> Any:
        return page.locator(f'.heatmap .day[data-date="{on.isoformat()}"]')

    assert day(held_on).evaluate("n => n.classList.contains('held-firm')")
    for paused in paused_on:
        assert day(paused).get_attribute("data-state") == "excused"
    assert day(lee_today).get_attribute("data-sos") == "1"
    # Each by its accessible name (what a screen reader says, and the tooltip), not its colour.
    calendar = page.locator(".heatmap")

    def named(words: str) -> list[str]:
        found = calendar.get_by_role("listitem", name=re.compile(re.escape(words)))
        return [str(found.nth(i).get_attribute("data-date")) for i in range(found.count())]

    assert held_on.isoformat() in named("kept, held firm against 2 contact attempts (texts, calls)")
    assert len(named("held firm")) == streak["held_firm_days"]
    assert named("paused (excused)") == [on.isoformat() for on in paused_on]
    assert named("SOS sent at ") == [lee_today.isoformat()]
    key = page.locator(".heatmap-key")
    assert f"held firm: reached out to, did not answer · {streak['held_firm_days']} day" in key.inner_text()
    assert "paused (excused) · 2 days" in key.inner_text() and "SOS sent · 1 call" in key.inner_text()
    # That and when: never the SOS's message nor the pause's reason, on the page or in what it reads.
    assert sos_message not in page.content() and reason not in page.content()
    with httpx.Client(cookies={cookie["name"]: cookie["value"]}) as reader:
        detail = reader.get(f"{checkin_url}/dashboard/api/commitments/{lee_id}")
    assert detail.status_code == 200 and sos_message not in detail.text and reason not in detail.text
    (paused_json,) = detail.json()["pauses"]
    assert paused_json["from"] == paused_on[0].isoformat() and paused_json["reason"] is None
    assert [set(call) for call in detail.json()["sos"]] == [{"sos_id", "commitment_id", "member_id", "sent_at"}]
    _no_axe_violations(page, "detail calendar")
    _screenshot(page, "dashboard-detail-calendar.png")
    page.set_viewport_size(PHONE)
    assert _no_sideways_scroll(page)
    _no_axe_violations(page, "detail calendar, phone")
    _screenshot(page, "dashboard-detail-calendar-phone.png")

    # -- phone width: no sideways scrolling on the overview, cards or table ------------------------------------------
    page.goto(f"{checkin_url}/dashboard?refresh=1")  # the session cookie keeps the coach signed in
    page.wait_for_selector("#clients > li.client")
    assert _no_sideways_scroll(page)
    _no_axe_violations(page, "overview, phone")
    _screenshot(page, "dashboard-phone.png")
    page.click("#view-table")
    page.wait_for_selector("table.compact")
    assert _no_sideways_scroll(page)
    _no_axe_violations(page, "table, phone")
    page.click("#view-cards")
    page.set_viewport_size(DESKTOP)

    # -- the service in trouble: the banner at the top, in its own words; offline "as of hh:mm" ----------------------
    page.route("**/dashboard/api/clients", lambda route: route.fulfill(
        status=503, content_type="application/problem+json",
        body='{"type": "about:blank", "title": "Service Unavailable", "status": 503, "detail": "database is resting"}'))
    page.wait_for_selector("#error:not([hidden])")
    assert "database is resting" in page.locator("#error").inner_text()
    assert page.locator("#error").bounding_box()["y"] < page.locator("#overview-title").bounding_box()["y"]
    page.unroute("**/dashboard/api/clients")
    page.route("**/dashboard/api/**", lambda route: route.abort("internetdisconnected"))
    page.wait_for_selector("#offline:not([hidden])")
    assert page.locator("#error").is_hidden()  # one banner: the latest trouble
    assert re.search(r"as of \d\d:\d\d", page.locator("#offline").inner_text())
    assert page.locator("#offline").bounding_box()["y"] < page.locator("#overview-title").bounding_box()["y"]
    _no_axe_violations(page, "offline")
    _screenshot(page, "dashboard-offline.png")
    page.unroute("**/dashboard/api/**")
    page.wait_for_selector("#offline", state="hidden")

    # -- signing out ends the session at once, in every tab -----------------------------------------------------------
    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")
    with httpx.Client(cookies={cookie["name"]: cookie["value"]}) as stale:
        refused = stale.get(f"{checkin_url}/dashboard/api/clients")
    assert refused.status_code == 401 and "signed out" in refused.json()["detail"]
    other_tab.wait_for_selector("#sign-in:not([hidden])", timeout=15000)
    assert "signed out" in other_tab.locator("#sign-in-error").inner_text()

    # Everything the page loaded came from the service itself: no CDN, no third party.
    assert requests and all(url.startswith(checkin_url) for url in requests)
    assert not errors, errors


def test_a_large_caseload_in_the_compact_table(postgres_url: str, amqp_url: str, stack_factory: Any,
                                               browser: Any) -> None:
    stack = stack_factory(postgres_url, ["commitment", "checkin", "notification"])
    commitment_url, checkin_url = stack.url("commitment"), stack.url("checkin")
    tenant, _ = demo.seed(commitment_url=commitment_url, checkin_url=checkin_url)
    coach = "coach-busy"
    with _api(tenant.api_key) as admin:
        for n in range(40):
            created = admin.post(f"{commitment_url}/v1/commitments", json={
                "member_id": f"client-{n:02d}", "contact": {"label": f"Contact {n:02d}", "relationship": "romantic"},
                "timezone": "Europe/Berlin", "duration_days": 90})
            assert created.status_code == 201, created.text
            assert admin.put(f"{commitment_url}/v1/coaches/{coach}/clients/client-{n:02d}").status_code == 204
        wait_until(lambda: len(admin.get(f"{checkin_url}/v1/coaches/{coach}/clients").json()["items"]) == 40, 30)

    page = browser.new_page(viewport=DESKTOP)
    page.goto(f"{checkin_url}/dashboard#link={_sign_in_link(checkin_url, tenant.api_key, coach)}")
    page.wait_for_selector("#clients > li.client")
    page.locator("#view-table").focus()
    page.keyboard.press("Enter")
    page.wait_for_selector("table.compact")
    assert page.locator("table.compact tbody tr").count() == 40
    _no_axe_violations(page, "table of 40")
    _screenshot(page, "dashboard-table-40.png")

    # Sort by name descending is not offered; by name ascending, the first is client-00.
    page.locator("#sort").focus()
    page.keyboard.press("ArrowDown")  # At risk first -> Name
    assert page.locator("#sort").input_value() == "name"
    page.locator("#search").focus()
    page.keyboard.type("client-3")
    wait_until(lambda: page.locator("table.compact tbody tr").count() == 10, 5)
    assert page.locator("table.compact tbody tr th").first.inner_text().startswith("client-30")
    assert "Showing 10 of 40 clients" in page.locator("#count").inner_text()
    page.set_viewport_size(PHONE)
    assert _no_sideways_scroll(page)
    _screenshot(page, "dashboard-table-phone.png")
    # An erased client: the name and the coach's note become unreadable (their key is gone).
    with _api(tenant.api_key) as admin:
        assert admin.put(f"{commitment_url}/v1/members/client-30", json={"display_name": "Zed"}).status_code == 200
        wait_until(lambda: page.locator('table.compact tr[data-member="client-30"] .name').inner_text() == "Zed", 15)
        page.locator('table.compact tr[data-member="client-30"] a').click()
        page.wait_for_selector("#note:not([hidden])")
        page.fill("#note-text", "Talked about moving out.")
        page.click("#note-save")
        wait_until(lambda: page.locator("#note-status").inner_text().startswith("Saved"), 10)
        assert admin.delete(f"{commitment_url}/v1/members/client-30").status_code == 202
    page.reload()
    # The page either says the note cannot be read any more, or (once the check-in service has
    # scrubbed the client's rows too) that the client is gone; it never shows the note again.
    wait_until(lambda: "erased" in page.locator("#note-status").inner_text()
               or "no such" in page.locator("#error").inner_text(), 15)
    assert "Talked about moving out." not in page.content() and "Zed" not in page.content()
    with engine_for(postgres_url).connect() as conn:
        assert all(n["note"] is None for n in coach_notes.notes_of_member(conn, tenant.tenant_id, "client-30"))
    page.goto(f"{checkin_url}/dashboard")
    page.wait_for_selector("table.compact")

    # Back to cards (the choice is remembered per browser): a card per client the service lists
    # (the erased one gone once its rows are scrubbed), still no sideways scroll.
    page.click("#view-cards")
    with _api(tenant.api_key) as admin:
        def cards_match() -> bool:
            listed = len(admin.get(f"{checkin_url}/v1/coaches/{coach}/clients").json()["items"])
            return listed in (39, 40) and page.locator("#clients > li.client").count() == listed

        wait_until(cards_match, 15, message="a card per client the service lists")
    assert _no_sideways_scroll(page)


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
    # Without the notification service, the feed says so; the clients still show.
    wait_until(lambda: "cannot be shown" in page.locator("#feed-state").inner_text(), 10)
    commitment_id = created.json()["id"]
    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")

    # Maria's token naming the other coach: the service refuses, the page says so.
    page.goto(f"{checkin_url}/dashboard#token={maria}&coach=coach-other")
    page.wait_for_selector("#sign-in-error:not([hidden])")
    assert "Not allowed" in page.locator("#sign-in-error").inner_text()
    assert page.locator('li.client[data-member="zoe.x"]').count() == 0

    # Nor can she read the other coach's client's check-ins, directly or through her session.
    with _api(maria) as coach:
        assert coach.get(f"{checkin_url}/v1/commitments/{commitment_id}/check-ins").status_code == 404
        assert coach.get(f"{checkin_url}/v1/coaches/coach-other/clients").status_code == 403
    page.goto(f"{checkin_url}/dashboard#token={maria}")
    page.wait_for_selector("#clients > li.client")
    session = page.context.cookies()[0]
    with httpx.Client(cookies={session["name"]: session["value"]}) as browser_session:
        assert browser_session.get(f"{checkin_url}/dashboard/api/commitments/{commitment_id}").status_code == 404
    page.click("#sign-out")
    page.wait_for_selector("#sign-in:not([hidden])")

    # An admin picks a coach on the sign-in form.
    page.fill("#token", tenant.api_key)
    page.fill("#coach-id", "coach-other")
    page.click("button[type=submit]")
    page.wait_for_selector('li.client[data-member="zoe.x"]')
    assert page.locator("#clients > li.client").count() == 1
    assert "Admin" in page.locator("#who-text").inner_text()

    # Revoking the key that minted a sign-in link ends the session it opened, at once.
    issued = admin.post(f"{commitment_url}/v1/api-keys", json={})
    assert issued.status_code == 201, issued.text
    context = browser.new_context()
    page = context.new_page()
    link = _sign_in_link(checkin_url, issued.json()["api_key"], "coach-other")
    page.goto(f"{checkin_url}/dashboard?refresh=1#link={link}")
    page.wait_for_selector('li.client[data-member="zoe.x"]')
    assert admin.delete(f"{commitment_url}/v1/api-keys/{issued.json()['id']}").status_code == 204
    page.wait_for_selector("#sign-in-error:not([hidden])", timeout=15000)
    assert "revoked" in page.locator("#sign-in-error").inner_text()
