"""Signing in to the coach dashboard over real HTTP on PostgreSQL + RabbitMQ: sign-in links
work once and not after they expire, the session cookie's attributes, writes refused without
the page's header or from another origin, logout and key revocation counting at once, and the
coach's private notes (sealed, theirs alone, If-Match by version)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from services.checkin.dashboard.tables import sign_in_links
from shared import keyring
from shared.db import read
from shared.testing import wait_until
from tests.integration.checkin.conftest import CheckinStack
from tests.integration.checkin.support import api

PAGE = {"X-Nocontact-Dashboard": "1"}


def _link(client: httpx.Client, headers: dict[str, str], coach_id: str = "coach-1") -> str:
    minted = client.post("/v1/dashboard/sign-in-links", json={"coach_id": coach_id}, headers=headers)
    assert minted.status_code == 201, minted.text
    return str(minted.json()["url"]).split("#link=", 1)[1]


def _open(base_url: str, link: str) -> httpx.Response:
    return httpx.post(f"{base_url}/dashboard/session", json={"link": link}, headers=PAGE, timeout=10)


def _cookie(response: httpx.Response) -> dict[str, str]:
    header = response.headers["set-cookie"]
    name, _, rest = header.partition("=")
    return {name: rest.split(";", 1)[0]}


@pytest.fixture(params=["pg_stack", "embedded_stack"])
def any_stack(request: pytest.FixtureRequest) -> CheckinStack:
    """PostgreSQL + RabbitMQ, and SQLite + the filesystem broker (the server-less default)."""
    stack: CheckinStack = request.getfixturevalue(request.param)
    return stack


def test_a_sign_in_link_opens_one_session_and_logout_ends_it_at_once(any_stack: CheckinStack) -> None:
    pg_stack = any_stack
    tenant = pg_stack.tenant()
    commitment_id = pg_stack.commitment(tenant, starts_on=date.today() - timedelta(days=3), coach_id="coach-1")
    with api(pg_stack.base_url) as client:
        # Only an admin key mints links; a coach's token does not.
        refused = client.post("/v1/dashboard/sign-in-links", json={"coach_id": "coach-1"},
                              headers=tenant.headers("coach", "coach-1"))
        assert refused.status_code == 403
        link = _link(client, tenant.headers())

    opened = _open(pg_stack.base_url, link)
    assert opened.status_code == 201, opened.text
    assert opened.json()["role"] == "coach" and opened.json()["coach_id"] == "coach-1"
    attributes = opened.headers["set-cookie"].lower()
    assert "httponly" in attributes and "samesite=strict" in attributes and "path=/dashboard" in attributes
    assert "secure" not in attributes  # plain http here; behind https see the next test
    again = _open(pg_stack.base_url, link)
    assert again.status_code == 401 and "already used" in again.json()["detail"]
    assert _open(pg_stack.base_url, "x" * 43).json()["detail"] == "this sign-in link is not valid"

    cookie = _cookie(opened)
    with httpx.Client(base_url=pg_stack.base_url, cookies=cookie, timeout=10) as browser:
        clients = browser.get("/dashboard/api/clients")
        assert clients.status_code == 200 and clients.json()["items"][0]["member_id"] == "m-1"
        assert browser.get(f"/dashboard/api/commitments/{commitment_id}").json()["commitment"]["member_id"] == "m-1"
        # Writes need the page's header and the page's origin.
        assert browser.put("/dashboard/api/members/m-1/note", json={"note": "x", "version": 0}).status_code == 403
        other_site = browser.put("/dashboard/api/members/m-1/note", json={"note": "x", "version": 0},
                                 headers={**PAGE, "Origin": "https://evil.example"})
        assert other_site.status_code == 403
        assert browser.delete("/dashboard/session").status_code == 403
        # The /v1/ API never takes the cookie for a credential.
        assert browser.get("/v1/coaches/coach-1/clients").status_code == 401

        assert browser.delete("/dashboard/session", headers=PAGE).status_code == 204
        ended = httpx.get(f"{pg_stack.base_url}/dashboard/api/clients", cookies=cookie, timeout=10)
        assert ended.status_code == 401 and "signed out" in ended.json()["detail"]


def test_an_expired_link_opens_nothing(pg_stack: CheckinStack) -> None:
    tenant = pg_stack.tenant()
    with api(pg_stack.base_url) as client:
        expired = _link(client, tenant.headers())
        too_long = client.post("/v1/dashboard/sign-in-links", json={"coach_id": "c", "ttl_seconds": 86401},
                               headers=tenant.headers())
        assert too_long.status_code == 422
    with pg_stack.engine.begin() as conn:
        conn.execute(update(sign_in_links).where(sign_in_links.c.tenant_id == tenant.tenant_id)
                     .values(expires_at=sign_in_links.c.created_at))
    answer = _open(pg_stack.base_url, expired)
    assert answer.status_code == 401 and "expired" in answer.json()["detail"]


def test_the_cli_mints_a_link_with_an_admin_key(pg_stack: CheckinStack, postgres_url: str) -> None:
    tenant = pg_stack.tenant()
    env = {**os.environ, "NOCONTACT_DATABASE_URL": postgres_url, "NOCONTACT_API_KEY": tenant.api_key,
           "NOCONTACT_CHECKIN_URL": pg_stack.base_url}
    done = subprocess.run([sys.executable, "-m", "services.cli", "checkin", "sign-in-link", "--coach", "coach-1"],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    url = done.stdout.strip().splitlines()[-1]
    assert url.startswith(f"{pg_stack.base_url}/dashboard#link=")
    assert _open(pg_stack.base_url, url.split("#link=", 1)[1]).status_code == 201
    bad = subprocess.run([sys.executable, "-m", "services.cli", "checkin", "sign-in-link", "--coach", "c"],
                         env={**env, "NOCONTACT_API_KEY": "nck_" + "x" * 43}, capture_output=True, text=True,
                         timeout=60, check=False)
    assert bad.returncode != 0 and "not a valid admin API key" in bad.stderr


def test_a_coachs_note_is_sealed_theirs_alone_and_versioned(any_stack: CheckinStack) -> None:
    pg_stack = any_stack
    tenant = pg_stack.tenant()
    pg_stack.commitment(tenant, starts_on=date.today() - timedelta(days=3), coach_id="coach-1", member_id="m-7")
    pg_stack.commitment(tenant, starts_on=date.today() - timedelta(days=3), coach_id="coach-2", member_id="m-8")

    def session(coach_id: str, headers: dict[str, str] | None = None, body: dict[str, Any] | None = None) -> Any:
        if headers is None:
            with api(pg_stack.base_url) as client:
                opened = _open(pg_stack.base_url, _link(client, tenant.headers(), coach_id))
        else:
            opened = httpx.post(f"{pg_stack.base_url}/dashboard/session", json=body or {},
                                headers={**PAGE, **headers}, timeout=10)
        assert opened.status_code == 201, opened.text
        return httpx.Client(base_url=pg_stack.base_url, cookies=_cookie(opened), headers=PAGE, timeout=10)

    with session("coach-1") as coach:
        assert coach.get("/dashboard/api/members/m-7/note").json() == {"member_id": "m-7", "note": "", "version": 0,
                                                                     "updated_at": None}
        saved = coach.put("/dashboard/api/members/m-7/note", json={"note": "calls on Sundays", "version": 0})
        assert saved.status_code == 200, saved.text
        assert saved.json()["version"] == 1
        stale = coach.put("/dashboard/api/members/m-7/note", json={"note": "older tab", "version": 0})
        assert stale.status_code == 412
        assert coach.get("/dashboard/api/members/m-7/note").json()["note"] == "calls on Sundays"
        # Not a client of this coach: 404, whoever it is.
        assert coach.put("/dashboard/api/members/m-8/note", json={"note": "x", "version": 0}).status_code == 404
        too_long = coach.put("/dashboard/api/members/m-7/note", json={"note": "x" * 4001, "version": 1})
        assert too_long.status_code == 422
    with session("coach-2") as other:
        assert other.get("/dashboard/api/members/m-7/note").status_code == 404
    with session("coach-1", headers=tenant.headers(), body={"coach_id": "coach-1"}) as admin:
        assert admin.get("/dashboard/api/members/m-7/note").status_code == 403

    with read(pg_stack.engine) as conn:
        stored = conn.exec_driver_sql("SELECT note FROM checkin_coach_notes WHERE member_id = 'm-7'").scalar()
        data = str(conn.exec_driver_sql("SELECT data FROM events WHERE type = 'coach_note.saved'").scalar())
    assert stored.startswith(keyring.PREFIX) and "Sundays" not in stored and "Sundays" not in data

    # The member's export carries the note about them; their erasure deletes it.
    from services.checkin.members import export_member, scrub
    from shared.clock import utcnow

    exported = export_member(pg_stack.engine, tenant.tenant_id, "m-7", utcnow())
    assert exported is not None
    assert [n["note"] for n in exported["data"]["coach_notes"]] == ["calls on Sundays"]
    assert exported["data"]["profile"] == {"display_name": None}
    with pg_stack.engine.begin() as conn:
        scrub(conn, tenant.tenant_id, "m-7", utcnow())
    with read(pg_stack.engine) as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM checkin_coach_notes WHERE member_id = 'm-7'").scalar() == 0


@pytest.mark.parametrize("proxies", ["1"])
def test_a_session_behind_https_gets_a_secure_host_cookie(postgres_url: str, amqp_url: str, stack_factory: Any,
                                                          proxies: str) -> None:
    from tests.integration.checkin.conftest import _start

    stacks = _start(postgres_url, lambda url, services: stack_factory(
        url, services, env={"NOCONTACT_TRUSTED_PROXIES": proxies}))
    stack = next(stacks)
    try:
        tenant = stack.tenant()
        with api(stack.base_url) as client:
            minted = client.post("/v1/dashboard/sign-in-links", json={"coach_id": "coach-1"},
                                 headers={**tenant.headers(), "X-Forwarded-Proto": "https"})
        assert minted.json()["url"].startswith("https://")
        link = minted.json()["url"].split("#link=", 1)[1]
        opened = httpx.post(f"{stack.base_url}/dashboard/session", json={"link": link},
                            headers={**PAGE, "X-Forwarded-Proto": "https"}, timeout=10)
        assert opened.status_code == 201, opened.text
        attributes = opened.headers["set-cookie"]
        assert attributes.startswith("__Host-nocontact_dashboard=")
        assert "Secure" in attributes and "Path=/;" in attributes and "SameSite=Strict" in attributes
    finally:
        next(stacks, None)


def test_display_names_set_before_are_learnt_by_a_rebuild_and_stay_sealed(pg_stack: CheckinStack) -> None:
    from datetime import UTC, datetime

    from services.checkin.profiles import display_names, profiles_projection
    from shared import eventstore
    from shared.events import Metadata, NewEvent
    from shared.projection import rebuild

    tenant = pg_stack.tenant()
    now = datetime.now(UTC)
    keyring.ensure_key(pg_stack.engine, tenant.tenant_id, "m-9", now=now)
    for name in ("Sam", "Samira"):  # one append per transaction, its first write
        with pg_stack.engine.begin() as conn:
            event = keyring.seal_event(keyring.member_key(conn, tenant.tenant_id, "m-9"),
                                       NewEvent("member.profile_updated", {"member_id": "m-9", "display_name": name}),
                                       ("display_name",))
            eventstore.append(conn, f"member-{tenant.tenant_id}:m-9", [event],
                              metadata=Metadata(tenant_id=tenant.tenant_id, actor="tests"), now=now)
    assert rebuild(pg_stack.engine, profiles_projection()).events >= 2
    with read(pg_stack.engine) as conn:
        assert display_names(conn, tenant.tenant_id, ["m-9"]) == {"m-9": "Samira"}
        stored = conn.exec_driver_sql("SELECT display_name FROM checkin_member_profiles WHERE member_id = 'm-9'")
        assert stored.scalar().startswith(keyring.PREFIX)
    with pg_stack.engine.begin() as conn:
        keyring.destroy(conn, tenant.tenant_id, "m-9", now=now)

    def erased() -> bool:  # a process's key cache lives at most NOCONTACT_KEYRING_CACHE_TTL_S
        with read(pg_stack.engine) as conn:
            return display_names(conn, tenant.tenant_id, ["m-9"]) == {"m-9": None}

    wait_until(erased, 10, message="the name to read as nothing once the key is destroyed")
