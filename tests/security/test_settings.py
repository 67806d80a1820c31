"""`PUT /v1/settings` answers what a careless client sends: a body naming no setting is
refused and changes nothing (no event, no commitment made due); what `GET` returned can be
sent back as it is, its `version` being the version the change is based on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa

from services.checkin import tables
from shared.testing import bearer, eventually, wait_until
from tests.support.suite import Suite, Tenant, commitment_body, create_tenant


@dataclass
class SettingsTenant:
    suite: Suite
    tenant: Tenant
    client: httpx.Client

    @property
    def url(self) -> str:
        return self.suite.url("checkin", "/v1/settings")

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.tenant.api_key)

    def settings(self) -> dict:
        answer = self.client.get(self.url, headers=self.admin)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def due_times(self) -> dict[str, datetime]:
        """When the scheduler looks at each of the tenant's commitments next."""
        engine = sa.create_engine(self.suite.database_url)
        try:
            with engine.connect() as conn:
                table = tables.commitments
                rows = conn.execute(sa.select(table.c.commitment_id, table.c.scheduler_due_at)
                                    .where(table.c.tenant_id == self.tenant.id)).all()
        finally:
            engine.dispose()
        return {row.commitment_id: row.scheduler_due_at for row in rows}


@pytest.fixture
def settings_tenant(security_suite: Suite) -> Iterator[SettingsTenant]:
    """A tenant of its own (these tests change settings) with one commitment the check-in
    service knows and its scheduler has looked at (due again only in the future)."""
    with httpx.Client(timeout=15) as client:
        tenant = create_tenant(security_suite, client, f"settings-{uuid.uuid4().hex[:6]}")
        side = SettingsTenant(security_suite, tenant, client)
        day = (date.today() - timedelta(days=1)).isoformat()
        created = client.post(security_suite.url("commitment", "/v1/commitments"), headers=side.admin,
                              json=commitment_body(f"m-{uuid.uuid4().hex[:8]}", day))
        assert created.status_code == 201, created.text
        commitment_id = created.json()["id"]
        eventually(lambda: client.get(security_suite.url("checkin", f"/v1/commitments/{commitment_id}/streak"),
                                      headers=side.admin), 200)

        def looked_at() -> bool:
            due = side.due_times()
            return bool(due) and all(at > datetime.now(at.tzinfo) for at in due.values())

        wait_until(looked_at, 30, message="the scheduler to look at the new commitment")
        yield side


@pytest.mark.parametrize("body", [None, {}, "version only"], ids=["no body", "empty object", "version only"])
def test_a_put_naming_no_setting_is_refused_and_changes_nothing(settings_tenant: SettingsTenant,
                                                                 body: object) -> None:
    side = settings_tenant
    before, due_before = side.settings(), side.due_times()
    if body == "version only":
        body = {"version": before["version"]}
    kwargs = {} if body is None else {"json": body}

    answer = side.client.put(side.url, headers=side.admin, **kwargs)

    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "setting" in answer.json()["detail"], answer.json()
    assert side.settings() == before, "a refused PUT changed the settings"
    assert side.due_times() == due_before, "a refused PUT made commitments due"


def test_a_put_of_what_get_returned_is_accepted_and_changes_nothing(settings_tenant: SettingsTenant) -> None:
    side = settings_tenant
    # A changed setting first, so that the settings have a stream and a version above 0.
    changed = side.client.put(side.url, headers=side.admin, json={"backdate_days": 5})
    assert changed.status_code == 200, changed.text
    wait_until(lambda: all(at > datetime.now(at.tzinfo) for at in side.due_times().values()), 30,
               message="the scheduler to look at the commitment again")
    current, due_before = side.settings(), side.due_times()

    again = side.client.put(side.url, headers=side.admin, json=current)

    assert again.status_code == 200, again.text
    assert again.json() == current, "the same settings sent back are the same settings, at the same version"
    assert again.headers["ETag"] == changed.headers["ETag"]
    assert side.settings() == current
    assert side.due_times() == due_before, "settings sent back unchanged made commitments due"


def test_the_version_of_a_sent_back_document_is_the_version_the_change_is_based_on(
        settings_tenant: SettingsTenant) -> None:
    side = settings_tenant
    read = side.settings()
    based_on_read = side.client.put(side.url, headers=side.admin, json={**read, "backdate_days": 3})
    assert based_on_read.status_code == 200, based_on_read.text
    assert based_on_read.json()["backdate_days"] == 3
    assert based_on_read.json()["version"] == read["version"] + 1

    # A second client still holding the first read: its change would undo the one above unseen.
    stale = side.client.put(side.url, headers=side.admin, json={**read, "backdate_days": 9})
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"].startswith("application/problem+json")
    assert side.settings()["backdate_days"] == 3

    # Body and If-Match name the same precondition: both must hold.
    current = side.settings()
    mixed = side.client.put(side.url, headers={**side.admin, "If-Match": based_on_read.headers["ETag"]},
                            json={**current, "version": read["version"], "backdate_days": 4})
    assert mixed.status_code == 412, mixed.text
    for bad in (-1, "3", 1.5, None):
        refused = side.client.put(side.url, headers=side.admin, json={**current, "version": bad})
        assert refused.status_code == 422, (bad, refused.text)
        assert "version" in refused.json()["errors"], refused.json()
