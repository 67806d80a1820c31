"""Rate limits: requests per credential, and failed authentications per client address.

Algorithm: GCRA (the generic cell rate algorithm, a token bucket kept as one number per
bucket, its "theoretical arrival time"). A bucket may spend `burst` requests at once, then
one every 60/per_minute seconds; a refused request does not push the bucket further, and
the answer says exactly when the next one fits. No background refill.

Two kinds of bucket, both per service:
- a credential's: every request it makes (`key_of` names it by what the credential is,
  never by how a client spells it);
- a client address's: every request whose authentication fails. An address over that
  budget is refused (429) before its credential counts at all, whatever it presents, so a
  list of leaked or guessed keys cannot be tried at speed, valid ones included.

Where the buckets live: where every process of the service sees them, so one limit holds
across gunicorn workers and replicas.
- PostgreSQL: an UNLOGGED table, ``rate_limits``, spent by the very statement that
  authenticates the request (`shared.auth.admit`): no extra round trip, and no WAL, so its
  commit waits for no disk flush. A crash empties it, which a rate limit may lose.
- SQLite (the embedded setup): a file of its own, ``var/ratelimit.sqlite3``, so spending
  never waits on the store's write lock.

Configuration (read per request: tests and operators change it without a code path of
their own): NOCONTACT_RATE_LIMIT_PER_MINUTE (600; 0 turns the credential limit off),
NOCONTACT_RATE_LIMIT_BURST (the per-minute figure), NOCONTACT_AUTH_FAILURES_PER_MINUTE
(60, as burst too; 0 turns the address limit off), NOCONTACT_TRUSTED_PROXIES (how many
reverse proxies in front of the API set X-Forwarded-For; 0: the peer is the client).
"""

from __future__ import annotations

import ipaddress
import math
import random
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, text

from shared import config
from shared.db import engine_for
from shared.problems import Problem

if TYPE_CHECKING:
    from shared.auth import Principal

# Buckets whose time has passed are full again: the same as no row. Deleting them now and
# then (about one request in this many) keeps the table to the buckets in use.
SWEEP_ONE_IN = 1000


@dataclass(frozen=True)
class Quota:
    """`per_minute` requests per minute, at most `burst` of them at once."""

    per_minute: int
    burst: int

    @property
    def interval(self) -> float:
        return 60.0 / self.per_minute

    @property
    def tolerance(self) -> float:
        return self.interval * (self.burst - 1)


def credential_quota() -> Quota | None:
    """Each credential's quota (None: not limited)."""
    limit = config.rate_limit_per_minute()
    return Quota(limit, config.rate_limit_burst() or limit) if limit > 0 else None


def failure_quota() -> Quota | None:
    """Each client address's quota of failed authentications (None: not limited)."""
    limit = config.auth_failures_per_minute()
    return Quota(limit, limit) if limit > 0 else None


def spend(tat: float | None, now: float, quota: Quota) -> tuple[bool, float]:
    """GCRA: whether one more request fits in a bucket at `tat` (None: never used), and
    the bucket's time after it (unchanged when refused)."""
    if tat is not None and tat - now > quota.tolerance:
        return False, tat
    return True, max(tat if tat is not None else now, now) + quota.interval


@dataclass(frozen=True)
class Decision:
    """One bucket's answer to one request."""

    allowed: bool
    quota: Quota
    tat: float
    now: float

    @property
    def retry_after_s(self) -> float:
        """Seconds until the next request fits (0 when this one was allowed)."""
        return 0.0 if self.allowed else max(self.tat - self.quota.tolerance - self.now, 0.0)

    @property
    def remaining(self) -> int:
        """Requests that fit right now, after this one."""
        if not self.allowed:
            return 0
        room = (self.quota.tolerance + self.quota.interval - (self.tat - self.now)) / self.quota.interval
        return max(0, min(self.quota.burst, math.floor(room + 1e-6)))

    @property
    def reset_s(self) -> int:
        """Seconds until the whole burst is available again."""
        return max(math.ceil(self.tat - self.now - 1e-6), 0)

    def headers(self) -> dict[str, str]:
        """RateLimit-* (IETF httpapi draft names): the most at once, what is left, when full."""
        return {
            "RateLimit-Limit": str(self.quota.burst),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_s),
            "RateLimit-Policy": f"{self.quota.burst};w={math.ceil(self.quota.burst * self.quota.interval)}",
        }

    def refusal(self, detail: str, *, with_limit_headers: bool = True) -> Problem:
        """The 429 of a refused request, with Retry-After in whole seconds."""
        seconds = max(math.ceil(self.retry_after_s), 1)
        headers = self.headers() if with_limit_headers else {}
        headers["Retry-After"] = str(seconds)
        return Problem(429, f"{detail}; retry in {seconds} s", headers=headers)


@dataclass(frozen=True)
class Verdict:
    """What the buckets say about one request.

    `blocked`: the address had spent its failures before this request (refused whatever it
    presents). `address`: the failure just spent (authentication failed). `credential`:
    the request spent from its credential's bucket (authentication succeeded).
    """

    blocked: Decision | None = None
    address: Decision | None = None
    credential: Decision | None = None


def judge(*, now: float, address_tat: float | None, credential_tat: float | None, authenticated: bool,
          failures: Quota | None, requests: Quota | None) -> tuple[Verdict, float | None, float | None]:
    """The verdict on one request, and the new times of the address and credential buckets
    (None: unchanged). The PostgreSQL statement in `shared.auth` computes the same in SQL."""
    if failures is not None and address_tat is not None and address_tat - now > failures.tolerance:
        return Verdict(blocked=Decision(False, failures, address_tat, now)), None, None
    if not authenticated:
        if failures is None:
            return Verdict(), None, None
        allowed, tat = spend(address_tat, now, failures)
        return Verdict(address=Decision(allowed, failures, tat, now)), tat, None
    if requests is None:
        return Verdict(), None, None
    allowed, tat = spend(credential_tat, now, requests)
    return Verdict(credential=Decision(allowed, requests, tat, now)), None, tat


# -- whom a request is counted against ------------------------------------------------------


def normalise_subject(subject: str) -> str:
    """One spelling per subject: compatibility-normalised, case-folded, whitespace collapsed,
    so ``"ma1 "``, ``"MA1"`` and ``"ma1"`` share a bucket."""
    return " ".join(unicodedata.normalize("NFKC", subject).casefold().split())


def key_of(caller: Principal) -> str:
    """The bucket of a credential: an API key by its id (never its secret), a token by its
    tenant, role and normalised subject (so neither minting it again nor spelling the
    subject differently starts a fresh bucket), the operator as one."""
    if caller.role == "admin":
        return f"key:{caller.credential_id}"
    if caller.role == "operator":
        return "operator"
    return f"{caller.role}:{caller.tenant_id}:{normalise_subject(caller.subject_id or '')}"


def client_address(environ: Mapping[str, Any]) -> str:
    """The client's address, as the failure buckets count it.

    Behind NOCONTACT_TRUSTED_PROXIES reverse proxies the client is the address the
    outermost of them saw (X-Forwarded-For, counted from the right, as werkzeug's ProxyFix
    reads it); a shorter header than that falls back to the peer. IPv6 clients are counted
    per /64, the block one subscriber gets.
    """
    address = str(environ.get("REMOTE_ADDR") or "unknown")
    hops = config.trusted_proxies()
    if hops > 0:
        forwarded = [part.strip() for part in str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
        if len(forwarded) >= hops and forwarded[-hops]:
            address = forwarded[-hops]
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


# -- the embedded setup's buckets ------------------------------------------------------------


class FileBuckets:
    """Buckets in a SQLite file of their own, shared by the processes of one host.

    One short write transaction per request on this file, never on the store. The clock
    is wall time (`time.time`): every process must read the same one.
    """

    _created: set[str] = set()
    _lock = threading.Lock()

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock

    @classmethod
    def of_this_host(cls) -> FileBuckets:
        return cls(config.var_dir() / "ratelimit.sqlite3")

    def engine(self) -> Engine:
        engine = engine_for(f"sqlite:///{self.path}")
        with self._lock:
            if str(self.path) not in self._created:
                with engine.begin() as conn:
                    conn.execute(text("CREATE TABLE IF NOT EXISTS rate_limits "
                                      "(bucket TEXT PRIMARY KEY, tat REAL NOT NULL) WITHOUT ROWID"))
                self._created.add(str(self.path))
        return engine

    def judge(self, *, address: str, credential: str | None, failures: Quota | None,
              requests: Quota | None) -> Verdict:
        """`judge` on the stored buckets, writing back what it spent (one transaction)."""
        if failures is None and requests is None:
            return Verdict()  # nothing limited: the file is not touched
        with self.engine().begin() as conn:
            now = self.clock()
            verdict, address_tat, credential_tat = judge(
                now=now, address_tat=_tat(conn, address),
                credential_tat=_tat(conn, credential) if credential is not None else None,
                authenticated=credential is not None, failures=failures, requests=requests,
            )
            for bucket, tat in ((address, address_tat), (credential, credential_tat)):
                if bucket is not None and tat is not None:
                    conn.execute(text("INSERT INTO rate_limits (bucket, tat) VALUES (:bucket, :tat) "
                                      "ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat"),
                                 {"bucket": bucket, "tat": tat})
            if random.randrange(SWEEP_ONE_IN) == 0:
                conn.execute(text("DELETE FROM rate_limits WHERE tat < :now"), {"now": now})
        return verdict


def _tat(conn: Connection, bucket: str) -> float | None:
    value = conn.execute(text("SELECT tat FROM rate_limits WHERE bucket = :bucket"), {"bucket": bucket}).scalar()
    return None if value is None else float(value)
