"""Benchmarks only: the check-in service WITHOUT sealing its members' notes, to measure what
sealing costs on the check-in path. Never deploy it: notes would be stored in clear.

Python imports ``sitecustomize`` at start-up from its path: a benchmarked suite started with
this directory on its ``PYTHONPATH`` (a variant of the check-in benchmark) runs every
process with `services.checkin.personal.seal` passing events through as they are. The
production code has no switch that turns sealing off; this directory is the only one, and
it is outside the package.

    NOCONTACT_BENCH_CHECKIN_NOTE_EVERY=1 make bench-checkin \\
        BENCH_ARGS="--variant sealed= --variant unsealed=PYTHONPATH=$PWD/benchmarks/unsealed"

(every check-in of the load carries a note: benchmarks.load). Each process says on stderr
that it runs unsealed, so its log shows which variant it was.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sqlalchemy import Connection

from services.checkin import personal
from shared.events import NewEvent


def _unsealed(conn: Connection, tenant_id: str, events: Sequence[NewEvent], *_: object) -> list[NewEvent]:
    return list(events)


personal.seal = _unsealed
print("[bench] unsealed: check-in notes are NOT sealed in this process (benchmarks/unsealed)", file=sys.stderr)
