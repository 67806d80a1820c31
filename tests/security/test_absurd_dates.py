"""No commitment reaches a date the calendar code overflows on (issue 18: a commitment
extended to 9999-12-31 made the check-in scheduler fail at every tick).

The commitment service refuses, naming the field, any last day after ENDS_ON_LATEST,
however it is reached: by extending again and again, by a starting duration.
"""

from __future__ import annotations

from datetime import date

import httpx

from services.commitment.domain.commitment import ENDS_ON_LATEST
from tests.security.conftest import World
from tests.support.suite import commitment_body


def test_extending_again_and_again_stops_at_the_horizon(world: World) -> None:
    suite, a = world.suite, world.a
    with httpx.Client(timeout=15) as client:
        created = client.post(suite.url("commitment", "/v1/commitments"), headers=a.admin,
                              json=commitment_body("m-horizon", world.day, duration_days=3650))
        assert created.status_code == 201, created.text
        extend = suite.url("commitment", f"/v1/commitments/{created.json()['id']}/extend")
        ends_on = date.fromisoformat(created.json()["ends_on"])
        for _ in range(400):  # 3650 days at a time: the horizon is ~100 extends away, year 9999 ~290
            answer = client.post(extend, headers=a.admin, json={"additional_days": 3650})
            if answer.status_code != 200:
                break
            ends_on = date.fromisoformat(answer.json()["ends_on"])
            assert ends_on <= ENDS_ON_LATEST, f"extended to {ends_on}"
        assert answer.status_code == 422, answer.text
        assert answer.headers["Content-Type"] == "application/problem+json"
        assert list(answer.json()["errors"]) == ["additional_days"]
        assert ENDS_ON_LATEST.isoformat() in answer.json()["detail"]
        # Up to the horizon exactly is fine; one day more is not; indefinite remains the way on.
        room = (ENDS_ON_LATEST - ends_on).days
        assert client.post(extend, headers=a.admin, json={"additional_days": room + 1}).status_code == 422
        if room:
            last = client.post(extend, headers=a.admin, json={"additional_days": room})
            assert last.status_code == 200 and last.json()["ends_on"] == ENDS_ON_LATEST.isoformat(), last.text
        forever = client.post(extend, headers=a.admin, json={"indefinite": True})
        assert forever.status_code == 200 and forever.json()["ends_on"] is None
