"""Idempotency-Key over real HTTP, on PostgreSQL and SQLite (CONTRACT v1.1, "Requests partners
retry"; shared.idempotency).

The commitment service, served by a real HTTP server on each store: a POST sent again with
its key gets the first answer and creates nothing; another body with the key is a 422
naming the header; a repeat while the first runs is a 409 with Retry-After; a request that
crashed before its command leaves a key that is taken over once its lease runs out, one
that crashed after it is never carried out twice; keys expire after 24 hours; stored
answers are sealed, and a member's erasure leaves no readable answer about them.
"""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text, update

from shared import idempotency
from shared.db import engine_for
from shared.schema import events
from tests.integration.commitment.conftest import Client, start

LABEL = "Label-" + uuid.uuid4().hex[:8]
MOTIVATION = "Motivation-" + uuid.uuid4().hex[:8]


def _body(member_id: str = "m-1", **overrides: Any) -> dict[str, Any]:
    return {"member_id": member_id, "contact": {"label": LABEL, "relationship": "romantic"},
            "timezone": "Europe/Berlin", "duration_days": 30, "motivation": MOTIVATION, **overrides}


def _created(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(events)
                                .where(events.c.type == "commitment.created")).scalar_one())


def _key(key: str | bytes) -> dict[str, Any]:
    return {"Idempotency-Key": key}


@pytest.fixture
def client(database_url: str, stack_factory: Any) -> Client:
    return start(stack_factory, database_url).tenant()


@pytest.fixture
def store(database_url: str) -> Engine:
    return engine_for(database_url)


def test_two_identical_posts_create_one_commitment_and_the_repeat_is_the_first_answer(
        client: Client, store: Engine) -> None:
    first = client.post("/v1/commitments", json=_body(), headers=_key("create-m-1"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    # The same request again, its JSON spelt differently (key order, spacing): the same body.
    spelt = json.dumps(dict(reversed(list(_body().items()))), indent=2)
    again = client.post("/v1/commitments", content=spelt, headers={**_key("create-m-1"),
                                                                    "Content-Type": "application/json"})
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["X-Correlation-ID"] != first.headers["X-Correlation-ID"]  # the replay's own
    assert _created(store) == 1
    assert len(client.get("/v1/commitments").json()["items"]) == 1
    # Another key is another request.
    assert client.post("/v1/commitments", json=_body(), headers=_key("create-m-1-bis")).status_code == 201
    assert _created(store) == 2


def test_the_key_with_another_body_is_a_422_naming_it_and_changes_nothing(client: Client, store: Engine) -> None:
    assert client.post("/v1/commitments", json=_body(), headers=_key("k-1")).status_code == 201
    other = client.post("/v1/commitments", json=_body(duration_days=60), headers=_key("k-1"))
    assert other.status_code == 422, other.text
    assert other.headers["Content-Type"] == "application/problem+json"
    assert list(other.json()["errors"]) == ["Idempotency-Key"]
    # Another operation with the key is another request too.
    commitment_id = client.get("/v1/commitments").json()["items"][0]["id"]
    elsewhere = client.post(f"/v1/commitments/{commitment_id}/end", json={}, headers=_key("k-1"))
    assert elsewhere.status_code == 422 and "Idempotency-Key" in elsewhere.json()["errors"]
    assert _created(store) == 1
    assert client.get(f"/v1/commitments/{commitment_id}").json()["status"] == "active"


@pytest.mark.parametrize("key", ["", "x" * 256, "clé".encode(), '""'],
                         ids=["empty", "256", "not-ascii", "quoted-empty"])
def test_an_invalid_key_is_a_422_naming_it(client: Client, store: Engine, key: str | bytes) -> None:
    refused = client.post("/v1/commitments", json=_body(), headers=_key(key))
    assert refused.status_code == 422, refused.text
    assert list(refused.json()["errors"]) == ["Idempotency-Key"]
    assert _created(store) == 0


def test_keys_of_255_characters_and_the_drafts_quoted_form_are_keys(client: Client, store: Engine) -> None:
    long_key = "k" * 255
    assert client.post("/v1/commitments", json=_body(), headers=_key(long_key)).status_code == 201
    assert client.post("/v1/commitments", json=_body(), headers=_key(long_key)).headers["Idempotent-Replayed"]
    quoted = client.post("/v1/commitments", json=_body("m-2"), headers=_key('"abc-123"'))
    bare = client.post("/v1/commitments", json=_body("m-2"), headers=_key("abc-123"))
    assert quoted.status_code == bare.status_code == 201 and bare.json() == quoted.json()
    assert _created(store) == 2


def test_keys_belong_to_the_tenant_and_a_token_to_its_subject(client: Client, store: Engine) -> None:
    first = client.post("/v1/commitments", json=_body(), headers=_key("shared-key"))
    other_tenant = Client(client.base, None).tenant("Other Support")
    theirs = other_tenant.post("/v1/commitments", json=_body(), headers=_key("shared-key"))
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in theirs.headers
    # Another admin key of the tenant may do what the first did: the same request, replayed.
    second_key = client.post("/v1/api-keys").json()["api_key"]
    replayed = client.as_(second_key).post("/v1/commitments", json=_body(), headers=_key("shared-key"))
    assert replayed.status_code == 201 and replayed.json() == first.json()
    # A member's token is not the admin: the same key and body are another request.
    member = client.token("member", "m-1")
    assert member.post("/v1/commitments", json=_body(), headers=_key("shared-key")).status_code == 422
    assert _created(store) == 2


def test_a_refused_request_releases_its_key(client: Client, store: Engine) -> None:
    refused = client.post("/v1/commitments", json=_body(timezone="Mars/Olympus"), headers=_key("retry-me"))
    assert refused.status_code == 422
    assert "Idempotency-Key" not in refused.json()["errors"]
    # Nothing was done, so nothing is kept: the corrected request with the key goes through.
    fixed = client.post("/v1/commitments", json=_body(), headers=_key("retry-me"))
    assert fixed.status_code == 201 and _created(store) == 1


def test_concurrent_repeats_carry_the_command_out_once(client: Client, store: Engine) -> None:
    barrier = threading.Barrier(8)
    answers: list[httpx.Response] = []
    lock = threading.Lock()

    def send() -> None:
        barrier.wait()
        answer = client.post("/v1/commitments", json=_body(), headers=_key("concurrent"))
        with lock:
            answers.append(answer)

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(answers) == 8
    assert {a.status_code for a in answers} <= {201, 409}, [a.text for a in answers]
    created = [a for a in answers if a.status_code == 201]
    assert created and all(a.json() == created[0].json() for a in created)
    for busy in (a for a in answers if a.status_code == 409):
        assert busy.headers["Retry-After"] == "1"
        assert "Idempotency-Key" in busy.json()["detail"]
    assert _created(store) == 1
    after = client.post("/v1/commitments", json=_body(), headers=_key("concurrent"))
    assert after.status_code == 201 and after.json() == created[0].json()


def _in_flight(client: Client, store: Engine, key: str, body: dict[str, Any], *, at: datetime
               ) -> idempotency.Reservation:
    """A reservation of the key for the request, as a request that started `at` holds it."""
    with store.connect() as conn:  # the test's one tenant
        scope = conn.execute(text("SELECT tenant_id FROM commitment_tenants")).scalar_one()
    keyed = idempotency.Keyed("commitment", scope, key, idempotency.fingerprint(
        "POST", "/v1/commitments?", "admin", json.dumps(body).encode()))
    reserved = idempotency.reserve(store, keyed, now=at)
    assert isinstance(reserved, idempotency.Reservation)
    return reserved


def test_a_repeat_while_the_first_runs_is_a_409_with_retry_after(client: Client, store: Engine) -> None:
    _in_flight(client, store, "in-flight", _body(), at=datetime.now(UTC))
    busy = client.post("/v1/commitments", json=_body(), headers=_key("in-flight"))
    assert busy.status_code == 409, busy.text
    assert busy.headers["Retry-After"] == "1"
    assert busy.headers["Content-Type"] == "application/problem+json"
    assert _created(store) == 0


def test_a_request_that_died_before_its_command_is_carried_out_by_the_next(client: Client, store: Engine) -> None:
    # Reserved long ago by a process that died before its command: the lease is over.
    _in_flight(client, store, "crashed-before", _body(), at=datetime.now(UTC) - 2 * idempotency.LEASE)
    taken_over = client.post("/v1/commitments", json=_body(), headers=_key("crashed-before"))
    assert taken_over.status_code == 201, taken_over.text
    assert _created(store) == 1
    assert client.post("/v1/commitments", json=_body(), headers=_key("crashed-before")).json() == taken_over.json()


def test_a_request_that_died_after_its_command_is_never_carried_out_twice(client: Client, store: Engine) -> None:
    reservation = _in_flight(client, store, "crashed-after", _body(), at=datetime.now(UTC) - 2 * idempotency.LEASE)
    with store.begin() as conn:  # what its command's transaction wrote after its append
        idempotency.mark_committed(conn, reservation)
    lost = client.post("/v1/commitments", json=_body(), headers=_key("crashed-after"))
    assert lost.status_code == 409, lost.text
    assert "Retry-After" not in lost.headers
    assert "lost" in lost.json()["detail"]
    assert _created(store) == 0  # the test stood in for the command: the key says it ran, so it is not run again


def test_the_command_marks_the_key_in_its_own_transaction(client: Client, store: Engine) -> None:
    assert client.post("/v1/commitments", json=_body(), headers=_key("marked")).status_code == 201
    with store.connect() as conn:
        row = conn.execute(select(idempotency.idempotency_keys)
                           .where(idempotency.idempotency_keys.c.key == "marked")).one()
    assert row.state == idempotency.DONE and row.answer


def test_keys_expire_after_24_hours(client: Client, store: Engine) -> None:
    first = client.post("/v1/commitments", json=_body(), headers=_key("daily"))
    table = idempotency.idempotency_keys
    with store.begin() as conn:  # as if it had been sent a day and a minute ago
        conn.execute(update(table).where(table.c.key == "daily").values(
            created_at=datetime.now(UTC) - timedelta(hours=24, minutes=1),
            expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    again = client.post("/v1/commitments", json=_body(), headers=_key("daily"))
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    assert "Idempotent-Replayed" not in again.headers
    assert _created(store) == 2
    # Another body is a new request too, once the key's day is over.
    with store.begin() as conn:
        conn.execute(update(table).where(table.c.key == "daily").values(
            expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    assert client.post("/v1/commitments", json=_body(duration_days=7), headers=_key("daily")).status_code == 201


def test_housekeeping_deletes_expired_keys_only(store: Engine) -> None:
    now = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
    for key, at in (("old", now - timedelta(hours=25)), ("young", now - timedelta(hours=1))):
        keyed = idempotency.Keyed("commitment", "tenant-a", key, "f" * 64)
        reservation = idempotency.reserve(store, keyed, now=at)
        assert isinstance(reservation, idempotency.Reservation)
        idempotency.keep(store, reservation, idempotency.Answer(201, b"{}"), now=at)
    assert idempotency.purge_expired(store, "checkin", now=now) == 0  # another service's keys
    assert idempotency.purge_expired(store, "commitment", now=now) == 1
    with store.connect() as conn:
        assert conn.execute(select(idempotency.idempotency_keys.c.key)).scalars().all() == ["young"]


def test_answers_are_sealed_and_a_members_erasure_leaves_none_readable(client: Client, store: Engine) -> None:
    about_member = client.post("/v1/commitments", json=_body("m-erased"), headers=_key("about-member"))
    assert about_member.status_code == 201
    issued = client.post("/v1/api-keys", headers=_key("new-key"))
    assert issued.status_code == 201
    with store.connect() as conn:
        stored = " ".join(str(value) for row in conn.execute(select(idempotency.idempotency_keys)) for value in row)
    for secret in (LABEL, MOTIVATION, "m-erased", issued.json()["api_key"]):
        assert secret not in stored
    # The member's erasure destroys their key: the answer about them is gone.
    assert client.delete("/v1/members/m-erased").status_code == 202
    gone = client.post("/v1/commitments", json=_body("m-erased"), headers=_key("about-member"))
    assert gone.status_code == 404, gone.text
    assert LABEL not in gone.text
    # An API key is shown once and stored only as its hash: its answer is not kept, even
    # sealed; a repeat is told the request was carried out, and no second key is issued.
    keys_before = client.get("/v1/api-keys").json()["items"]
    again = client.post("/v1/api-keys", headers=_key("new-key"))
    assert again.status_code == 409, again.text
    assert issued.json()["api_key"] not in again.text and "revoke" in again.json()["detail"]
    assert client.get("/v1/api-keys").json()["items"] == keys_before
    # Answers about no member and showing no credential stay replayable.
    token = client.post("/v1/tokens", json={"role": "coach", "subject_id": "c-1"}, headers=_key("a-token"))
    assert token.status_code == 201
    replayed = client.post("/v1/tokens", json={"role": "coach", "subject_id": "c-1"}, headers=_key("a-token"))
    assert replayed.status_code == 201 and replayed.json() == token.json()
