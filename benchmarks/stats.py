"""The figures of a load run, computed from its requests and webhook arrivals (pure).

A request is what a load client (`benchmarks.load`) wrote for it: when it was due, how
late it was sent, how long the answer took, the status, and its (commitment, date).
Latency counts from when the request was due, so an open-loop run that fell behind
shows it in its percentiles instead of hiding it (no coordinated omission); in a closed
loop a request is due when it is sent.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

LATE_S = 0.005
"""An open-loop request sent later than this after its due time counts as late."""


@dataclass(frozen=True)
class Request:
    due: float
    """Wall clock (s) the request was due; in a closed loop, when it was sent."""
    late: float
    """Seconds between due and sent: every connection of an open loop was busy."""
    elapsed: float
    """Seconds from sending to the whole answer."""
    status: int
    """HTTP status; 0 when the connection failed."""
    commitment_id: str
    day: str

    @classmethod
    def of(cls, row: Sequence[Any]) -> Request:
        due, late, elapsed, status, commitment_id, day = row
        return cls(float(due), float(late), float(elapsed), int(status), str(commitment_id), str(day))

    @property
    def latency(self) -> float:
        return self.late + self.elapsed

    @property
    def answered(self) -> float:
        return self.due + self.late + self.elapsed


def percentile(values: Iterable[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: a reported p99 is a latency that happened)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    # The epsilon keeps float noise (0.99 * n a hair above an integer) from moving a rank up.
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered) - 1e-9) - 1))
    return ordered[index]


@dataclass(frozen=True)
class LoadFigures:
    requests: int
    accepted: int
    """Answers 201."""
    statuses: dict[int, int]
    window_s: float
    """From the first request due to the last answer."""
    throughput: float
    """Accepted per second of the window."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    late: int
    """Requests sent more than `LATE_S` after they were due (open loop only)."""


def load_figures(requests: Sequence[Request]) -> LoadFigures:
    """Throughput and latency percentiles of the accepted requests of one run."""
    accepted = [request for request in requests if request.status == 201]
    if requests:
        window = max(request.answered for request in requests) - min(request.due for request in requests)
    else:
        window = 0.0
    latencies_ms = [request.latency * 1000 for request in accepted]
    return LoadFigures(
        requests=len(requests),
        accepted=len(accepted),
        statuses=dict(sorted(Counter(request.status for request in requests).items())),
        window_s=window,
        throughput=len(accepted) / window if window > 0 else 0.0,
        p50_ms=percentile(latencies_ms, 0.50),
        p95_ms=percentile(latencies_ms, 0.95),
        p99_ms=percentile(latencies_ms, 0.99),
        max_ms=max(latencies_ms, default=math.nan),
        late=sum(1 for request in requests if request.late > LATE_S),
    )


def per_second(requests: Sequence[Request]) -> list[int]:
    """Accepted answers in each whole second of the run (a partial last second is left out)."""
    if not requests:
        return []
    first = min(request.due for request in requests)
    last = max(request.answered for request in requests)
    buckets = Counter(int(request.answered - first) for request in requests if request.status == 201)
    return [buckets.get(second, 0) for second in range(int(last - first))]


Arrival = tuple[float, str, str, str, float]
"""A verified webhook: (received, webhook-id, commitment_id, date, event timestamp), wall clock."""


@dataclass(frozen=True)
class WebhookLatencies:
    from_event_ms: list[float]
    """Arrival minus the event's time (the API handler's clock when it took the request)."""
    from_answer_ms: list[float]
    """Arrival minus the moment the client had its 201 (matched by commitment and date)."""
    repeats: int
    """Deliveries of a webhook already received (at-least-once)."""


def webhook_latencies(arrivals: Iterable[Arrival], requests: Iterable[Request]) -> WebhookLatencies:
    """Latency of the first delivery of each webhook."""
    answered = {(r.commitment_id, r.day): r.answered for r in requests if r.status == 201}
    first: dict[str, Arrival] = {}
    count = 0
    for arrival in arrivals:
        count += 1
        webhook_id = arrival[1]
        if webhook_id not in first or arrival[0] < first[webhook_id][0]:
            first[webhook_id] = arrival
    from_event = [(received - stamp) * 1000 for received, _, _, _, stamp in first.values()]
    from_answer = [(received - answered[(commitment_id, day)]) * 1000
                   for received, _, commitment_id, day, _ in first.values() if (commitment_id, day) in answered]
    return WebhookLatencies(from_event, from_answer, count - len(first))


def ratio(numerator: float, denominator: float) -> float | None:
    """numerator / denominator; None when it means nothing (a zero or missing side)."""
    if not denominator or math.isnan(denominator) or math.isnan(numerator):
        return None
    return numerator / denominator


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """Round by round ratios of two alternating series (drifting load hits both sides of a pair alike)."""
    if len(numerators) != len(denominators):
        raise ValueError("paired series must have one figure per round each")
    return [value for n, d in zip(numerators, denominators, strict=True) if (value := ratio(n, d)) is not None]
