"""notification_0002 on a database with endpoints made before it: secrets sealed in place,
versions taken from the streams, failure clocks moved, and deliveries still signed.
notification_0005 on coach assignments made before it: version 0, the next event moves them."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic import command
from alembic.config import Config
from sqlalchemy import text

import infra
from services.notification.consumers import InboxHandler
from services.notification.domain.endpoints import secret_associated_data
from shared import crypto, eventstore
from shared.consumer import apply_once
from shared.db import engine_for, migrate
from shared.events import Metadata, NewEvent

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET, OLD_SECRET = "whsec_" + "A" * 43 + "=", "whsec_" + "B" * 43 + "="


def _upgrade(url: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(infra.path("migrations")))
    with engine_for(url).begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def test_legacy_endpoints_are_sealed_versioned_and_their_failure_clocks_kept(blank_url: str) -> None:
    _upgrade(blank_url, "notification_0001")
    engine = engine_for(blank_url)
    for endpoint_id, failing in (("e-1", T0), ("e-2", None)):
        with engine.begin() as conn:  # a transaction's append is its first write
            eventstore.append(
                conn,
                f"webhook_endpoint-{endpoint_id}",
                [NewEvent("webhook_endpoint.created", {"endpoint_id": endpoint_id}),
                 NewEvent("webhook_endpoint.secret_rotated", {"endpoint_id": endpoint_id})],
                metadata=Metadata(tenant_id="t1"),
            )
            conn.execute(
                text(
                    "INSERT INTO notification_endpoints (id, tenant_id, url, description, event_types, status, "
                    "secret, previous_secret, failing_since, created_at, updated_at) VALUES (:id, 't1', "
                    "'http://127.0.0.1:9/', '', '[\"*\"]', 'enabled', :secret, :old, :failing, :at, :at)"
                ),
                {"id": endpoint_id, "secret": SECRET, "old": OLD_SECRET, "failing": failing, "at": T0},
            )

    migrate(blank_url)

    with engine.connect() as conn:
        rows = {row.id: row for row in conn.execute(text("SELECT * FROM notification_endpoints"))}
        failing = conn.execute(text("SELECT endpoint_id FROM notification_failing_endpoints")).scalars().all()
    assert set(rows) == {"e-1", "e-2"} and all(row.version == 2 for row in rows.values())
    for endpoint_id, row in rows.items():
        assert not row.secret.startswith("whsec_") and not row.previous_secret.startswith("whsec_")
        assert crypto.unseal_text(row.secret, secret_associated_data(endpoint_id)) == SECRET
        assert crypto.unseal_text(row.previous_secret, secret_associated_data(endpoint_id)) == OLD_SECRET
        assert not hasattr(row, "failing_since")
    assert failing == ["e-1"]
    # Running the migrations again changes nothing (sealed values are not sealed twice).
    migrate(blank_url)
    with engine.connect() as conn:
        again = conn.execute(text("SELECT secret FROM notification_endpoints WHERE id = 'e-1'")).scalar()
    assert again == rows["e-1"].secret


def test_coach_assignments_from_before_their_versions_take_the_next_event(blank_url: str) -> None:
    """notification_0005: an assignment folded before it had a version gets 0, so the
    commitment's next coach.* event (any version) moves it as before."""
    _upgrade(blank_url, "notification_0004")
    engine = engine_for(blank_url)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO notification_coach_assignments (tenant_id, commitment_id, member_id, coach_id) "
                          "VALUES ('t1', 'c1', 'm-1', 'coach-a')"))

    migrate(blank_url)

    def assignment() -> tuple[str | None, int]:
        with engine.connect() as conn:
            return tuple(conn.execute(text(  # type: ignore[return-value]
                "SELECT coach_id, version FROM notification_coach_assignments WHERE commitment_id = 'c1'")).one())

    assert assignment() == ("coach-a", 0)
    with engine.begin() as conn:
        (unassigned,) = eventstore.append(conn, "commitment-c1", [NewEvent("coach.unassigned", {
            "commitment_id": "c1", "member_id": "m-1", "coach_id": "coach-a"})], metadata=Metadata(tenant_id="t1"))
    assert apply_once(engine, "notification.inbox", InboxHandler(), unassigned)
    assert assignment() == (None, 1)
