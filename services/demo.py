"""The demo tenant `make run` seeds, so a newcomer opens a living coach dashboard at once.

One coach and a few clients with weeks of realistic history: mostly kept days, a few slips
(channel and who initiated), urges trending up or down, one client silent for three days.

The tenant is created in-process with the commitment service's handler (creating one over
HTTP needs the operator token, off by default); everything else goes over HTTP to the
running services, as a partner platform would do it. What was created is recorded in
``var/demo.json``: a restart reuses it and only reports the days that are missing since,
so the page stays alive across restarts without duplicating anything.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from shared import config
from shared.calendar import local_today
from shared.clock import utcnow

TENANT_NAME = "Harbour Support Circle (demo)"
COACH_ID = "coach-maria"
TOKEN_TTL_SECONDS = 7 * 86400
BACKDATE_DAYS = 90
STATE_FILE = "demo.json"
CREDENTIALS_FILE = "demo-credentials.json"  # what make run prints only to a terminal


@dataclass(frozen=True)
class Story:
    """One commitment of one client, as a script relative to its first day.

    ``slips`` maps a day number (0 = ``starts_on``) to (channel, initiated_by); day numbers
    stay fixed when the seed runs again later, so a restart never invents other slips.
    ``urge`` runs linearly from the first to the second value over ``length`` days.
    """

    key: str
    member_id: str
    label: str
    relationship: str
    timezone: str
    length: int
    duration_days: int | None
    channels: tuple[str, ...]
    urge: tuple[int, int]
    slips: dict[int, tuple[str, str]] = field(default_factory=dict)
    silent_days: int = 0
    reports_today: bool = True
    gap_rate: float = 0.04
    motivation: str = ""


STORIES: tuple[Story, ...] = (
    Story(
        key="sam-alex", member_id="sam.r", label="Alex (ex)", relationship="romantic",
        timezone="Europe/Berlin", length=55, duration_days=90,
        channels=("calls", "texts", "social_media", "in_person"), urge=(8, 2),
        slips={5: ("texts", "me"), 13: ("social_media", "them")},
        motivation="I want my mornings back.",
    ),
    Story(
        key="jordan-mum", member_id="jordan.k", label="Mum", relationship="family",
        timezone="America/New_York", length=38, duration_days=None,
        channels=("calls", "texts", "in_person"), urge=(3, 9),
        slips={8: ("calls", "them"), 34: ("in_person", "me")}, reports_today=False,
        motivation="Space to heal, on my terms.",
    ),
    Story(
        key="priya-chris", member_id="priya.n", label="Chris (former manager)", relationship="professional",
        timezone="Asia/Kolkata", length=22, duration_days=60,
        channels=("calls", "texts", "email"), urge=(5, 1), gap_rate=0.0,
        motivation="My new job deserves my full attention.",
    ),
    Story(
        key="lee-taylor", member_id="lee.m", label="Taylor (friend)", relationship="friend",
        timezone="Europe/London", length=33, duration_days=90,
        channels=("texts", "social_media", "in_person"), urge=(3, 6),
        slips={12: ("texts", "me")}, silent_days=3,
        motivation="I keep giving more than I get.",
    ),
    Story(
        key="ana-robin", member_id="ana.g", label="Robin (ex)", relationship="romantic",
        timezone="America/Sao_Paulo", length=60, duration_days=180,
        channels=("calls", "texts", "social_media", "email", "in_person"), urge=(7, 3),
        slips={7: ("in_person", "them"), 24: ("email", "me"), 41: ("social_media", "me")},
        motivation="Three years of on and off is enough.",
    ),
    Story(
        key="ana-robins-brother", member_id="ana.g", label="Robin's brother", relationship="other",
        timezone="America/Sao_Paulo", length=14, duration_days=30,
        channels=("texts", "social_media"), urge=(3, 1),
    ),
)


# -- the story of each day -----------------------------------------------------------------------


def report_for(story: Story, starts_on: date, day: date, today: date) -> dict[str, Any] | None:
    """The check-in body the member sends for ``day``, or None when they leave it unreported."""
    index = (day - starts_on).days
    if story.silent_days and (today - day).days <= story.silent_days:
        return None
    if day == today and not story.reports_today:
        return None
    # Seeded by member and date: the same day always gets the same report, run after run.
    rng = random.Random(f"{story.key}:{day.isoformat()}")  # demo data, not security
    slip = story.slips.get(index)
    if slip is None and index not in (0, (today - starts_on).days) and rng.random() < story.gap_rate:
        return None
    progress = min(index / max(story.length - 1, 1), 1.0)
    start, end = story.urge
    urge = round(start + (end - start) * progress + rng.uniform(-1.2, 1.2))
    if slip is not None or story.slips.get(index + 1) is not None:
        urge += 2  # urges peak around a slip
    urge = max(0, min(10, urge))
    body: dict[str, Any] = {
        "date": day.isoformat(),
        "outcome": "kept",
        "urge": urge,
        "mood": max(1, min(5, round(5 - urge / 2.5 + rng.uniform(-0.6, 0.6)))),
        # Private to the member: the dashboard must never show it (the seed proves it cannot).
        "note": rng.choice(["Walked instead of scrolling.", "Hard evening.", "Called my sister.", "Better today."]),
    }
    if slip is not None:
        body["outcome"] = "slipped"
        body["slip"] = {"channel": slip[0], "initiated_by": slip[1]}
    return body


# -- talking to the services ----------------------------------------------------------------------


class SeedError(RuntimeError):
    """The demo could not be seeded; the message says which step failed."""


@dataclass
class DemoTenant:
    """What the seed created (and ``var/demo.json`` remembers)."""

    tenant_id: str
    api_key: str
    coach_id: str
    database_url: str
    commitments: dict[str, dict[str, str]] = field(default_factory=dict)  # story key -> {id, starts_on}

    def as_json(self) -> dict[str, Any]:
        return {
            "tenant_id": self.tenant_id,
            "api_key": self.api_key,
            "coach_id": self.coach_id,
            "database_url": self.database_url,
            "commitments": self.commitments,
        }


def _state_path() -> Path:
    return config.var_dir() / STATE_FILE


def _load_state() -> DemoTenant | None:
    try:
        data = json.loads(_state_path().read_text())
        return DemoTenant(**data)
    except (OSError, ValueError, TypeError):
        return None


def _write_private(path: Path, text: str) -> None:
    """Write a file that only its owner can read, from its first byte (it holds credentials)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left by an older run may have looser bits
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def _save_state(demo: DemoTenant) -> None:
    _write_private(_state_path(), json.dumps(demo.as_json(), indent=2))  # it holds the admin key


def _wait(what: str, condition: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise SeedError(f"timed out waiting for {what}")


def _expect(response: httpx.Response, *statuses: int) -> httpx.Response:
    if response.status_code not in statuses:
        raise SeedError(f"{response.request.method} {response.request.url.path} answered "
                        f"{response.status_code}: {response.text[:300]}")
    return response


def _create_tenant(database_url: str, now: datetime) -> DemoTenant:
    from services.commitment.handlers import create_tenant
    from shared.db import engine_for

    tenant, key = create_tenant(engine_for(database_url), name=TENANT_NAME, now=now, actor="operator:demo")
    return DemoTenant(tenant_id=tenant.id, api_key=key.api_key, coach_id=COACH_ID, database_url=database_url)


def _key_works(client: httpx.Client, url: str) -> bool:
    try:
        return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def seed(now: datetime | None = None, *, commitment_url: str | None = None, checkin_url: str | None = None,
         timeout_s: float = 60.0) -> tuple[DemoTenant, int]:
    """Create (or top up) the demo tenant; returns it and how many check-ins were reported now."""
    now = now or utcnow()
    commitment_url = commitment_url or config.service_url("commitment")
    checkin_url = checkin_url or config.service_url("checkin")
    database_url = config.database_url("commitment")
    demo = _load_state()
    if demo is not None and demo.database_url != database_url:
        demo = None  # recorded for another database: seed this one afresh
    if demo is not None:
        with httpx.Client(timeout=10, headers={"Authorization": f"Bearer {demo.api_key}"}) as probe:
            if not _key_works(probe, f"{commitment_url}/v1/api-keys"):
                demo = None  # the database was wiped or the key revoked
    if demo is None:
        demo = _create_tenant(database_url, now)
        _save_state(demo)

    headers = {"Authorization": f"Bearer {demo.api_key}"}
    with httpx.Client(timeout=30, headers=headers) as client:
        # The checkin service learns the new key over the bus.
        _wait("the check-in service to learn the demo API key",
              lambda: _key_works(client, f"{checkin_url}/v1/settings"), timeout_s)
        _expect(client.put(f"{checkin_url}/v1/settings", json={"backdate_days": BACKDATE_DAYS}), 200)

        for story in STORIES:
            if story.key in demo.commitments:
                continue
            starts_on = local_today(story.timezone, now) - timedelta(days=story.length - 1)
            created = _expect(client.post(f"{commitment_url}/v1/commitments", json={
                "member_id": story.member_id,
                "contact": {"label": story.label, "relationship": story.relationship},
                "channels": list(story.channels),
                "timezone": story.timezone,
                "starts_on": starts_on.isoformat(),
                "duration_days": story.duration_days,
                "motivation": story.motivation or None,
            }), 201).json()
            demo.commitments[story.key] = {"id": created["id"], "starts_on": starts_on.isoformat()}
            _save_state(demo)
        for member_id in sorted({story.member_id for story in STORIES}):
            _expect(client.put(f"{commitment_url}/v1/coaches/{demo.coach_id}/clients/{member_id}"), 204)

        wanted = {entry["id"] for entry in demo.commitments.values()}

        def coach_sees_all() -> bool:
            response = client.get(f"{checkin_url}/v1/coaches/{demo.coach_id}/clients")
            if response.status_code != 200:
                return False
            seen = {c["commitment_id"] for item in response.json().get("items", []) for c in item["commitments"]}
            return wanted <= seen

        _wait("the check-in service to learn the demo commitments and their coach", coach_sees_all, timeout_s)

        reported = 0
        for story in STORIES:
            entry = demo.commitments[story.key]
            reported += _report_missing_days(client, checkin_url, story, entry, now)
    return demo, reported


def _report_missing_days(client: httpx.Client, checkin_url: str, story: Story, entry: dict[str, str],
                         now: datetime) -> int:
    base = f"{checkin_url}/v1/commitments/{entry['id']}/check-ins"
    starts_on = date.fromisoformat(entry["starts_on"])
    today = local_today(story.timezone, now)
    if story.duration_days is not None:
        today = min(today, starts_on + timedelta(days=story.duration_days - 1))
    first = max(starts_on, today - timedelta(days=BACKDATE_DAYS))
    existing = {item["date"] for item in _expect(client.get(base, params={"from": first.isoformat()}), 200)
                .json()["items"]}
    reported = 0
    day = first
    while day <= today:
        body = report_for(story, starts_on, day, today)
        if body is not None and day.isoformat() not in existing:
            # 409: reported meanwhile, or the commitment is over; 422: now outside the window.
            try:
                response = client.post(base, json=body)
            except httpx.TimeoutException:
                response = client.post(base, json=body)  # once more: a 409 then means the first one landed
            _expect(response, 201, 409, 422)
            reported += 1
        day += timedelta(days=1)
    return reported


def coach_token(demo: DemoTenant, *, commitment_url: str | None = None, coach_id: str | None = None,
                ttl_seconds: int = TOKEN_TTL_SECONDS) -> str:
    commitment_url = commitment_url or config.service_url("commitment")
    response = httpx.post(
        f"{commitment_url}/v1/tokens",
        json={"role": "coach", "subject_id": coach_id or demo.coach_id, "ttl_seconds": ttl_seconds},
        headers={"Authorization": f"Bearer {demo.api_key}"},
        timeout=10,
    )
    return _expect(response, 201).json()["token"]


def seed_demo(*, show_credentials: bool) -> str:
    """`make run`'s seed: the text to print about the demo tenant (see `report`)."""
    try:
        demo, reported = seed()
        token = coach_token(demo)
    except (SeedError, httpx.HTTPError) as error:
        return (f"\nThe demo tenant could not be seeded ({error}). "
                "The services run; `nocontact run --no-seed` skips the demo.")
    return report(demo, token, reported, show_credentials=show_credentials)


def report(demo: DemoTenant, token: str, reported: int, *, show_credentials: bool) -> str:
    """Write the demo credentials to var/demo-credentials.json (mode 600) and say where they are.

    The admin key and the coach token are in the returned text only with
    `show_credentials`, which `make run` sets when its standard output is a terminal: they
    never go through the logging pipeline, and never into a file that output is sent to.
    """
    dashboard = f"{config.service_url('checkin')}/dashboard"
    sign_in = f"{dashboard}#token={token}"
    path = config.var_dir() / CREDENTIALS_FILE
    _write_private(path, json.dumps({
        "tenant_id": demo.tenant_id,
        "tenant_name": TENANT_NAME,
        "admin_api_key": demo.api_key,
        "coach_id": demo.coach_id,
        "coach_token": token,
        "coach_token_ttl_days": TOKEN_TTL_SECONDS // 86400,
        "dashboard_sign_in_url": sign_in,
    }, indent=2))
    clients = len({story.member_id for story in STORIES})
    lines = [
        "",
        f"Demo tenant \"{TENANT_NAME}\": coach {demo.coach_id} with {clients} clients "
        f"({reported} check-ins reported just now).",
    ]
    if show_credentials:
        lines += [
            "  Sign in as the coach (the page takes the token from the link, then forgets the link):",
            f"    {sign_in}",
            f"  Coach token ({TOKEN_TTL_SECONDS // 86400} days): {token}",
            f"  Admin API key of the demo tenant: {demo.api_key}",
            f"  The same credentials, readable by you only: {path}",
        ]
    else:
        lines += [
            f"  Demo credentials (admin API key, coach token, sign-in link), readable by you only: {path}",
            "  (not printed here: standard output is not a terminal, and logs are no place for them)",
        ]
    lines += ["  Skip the demo next time: nocontact run --no-seed (make run ARGS=--no-seed)", ""]
    return "\n".join(lines)
