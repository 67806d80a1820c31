"""Who consumes what on the bus: the one place the broker topology is declared.

One durable topic exchange, ``nocontact.events``, with the event type as routing key.
Each consuming component owns one durable queue (a quorum queue on RabbitMQ) bound to
the event types it needs, and a dead-letter queue for messages it gave up on. The relay
declares all of it before publishing, so no event is ever published before the queue
that needs it exists.

Scale-out (opt-in per component): with ``NOCONTACT_<COMPONENT>_PARTITIONS=N`` (e.g.
``NOCONTACT_CHECKIN_INBOX_PARTITIONS=4``) or ``Component(..., partitions=N)`` the
component's events are spread over N partition queues by a stable hash of the stream id,
each a single-active-consumer quorum queue: any number of consumer processes may attach,
one of them at a time handles a partition, so a stream's events are still handled in
order while different partitions are handled in parallel. A commitment's check-in stream
hashes as its commitment stream (`partition_key`): what a consumer reads of the two
together stays in publish order too. Unpartitioned components keep
their one queue, unchanged. The embedded filesystem transport has no headers exchanges
and always uses the one queue (one consumer per queue is what it supports anyway).
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

from shared import config

EXCHANGE = "nocontact.events"
DEAD_LETTER_EXCHANGE = "nocontact.dead-letter"

CREDENTIAL_EVENTS = ("tenant.created", "api_key.issued", "api_key.revoked", "token.revoked")

# Every message carries its stream's slot (a stable hash of the stream id, modulo this) in
# the PARTITION_HEADER header; a partition queue is bound to the slots it owns. 64 slots
# bound the number of partitions per component, and keep the bindings few.
PARTITION_SLOTS = 64
# Not "x-" prefixed: RabbitMQ's headers exchange ignores such headers when matching.
PARTITION_HEADER = "partition_slot"


@dataclass(frozen=True)
class Component:
    """A consuming component: a service's handler of some event types."""

    name: str
    routing_keys: tuple[str, ...]
    # None: one plain queue (the default). N >= 1: N single-active-consumer partitions;
    # the environment (see `partition_count`) overrides it without a code change.
    partitions: int | None = None

    @property
    def queue_name(self) -> str:
        return f"nocontact.{self.name}"

    @property
    def dead_letter_queue_name(self) -> str:
        return f"nocontact.{self.name}.dead-letter"

    @property
    def partitions_variable(self) -> str:
        """The environment variable that sets this component's partition count."""
        return "NOCONTACT_" + self.name.upper().replace(".", "_").replace("-", "_") + "_PARTITIONS"

    def partition_count(self) -> int | None:
        """How many partition queues the component has (None: one plain queue)."""
        if os.environ.get(self.partitions_variable, "").strip():
            return config.number(self.partitions_variable, 1, minimum=1, maximum=PARTITION_SLOTS)
        if self.partitions is not None and not 1 <= self.partitions <= PARTITION_SLOTS:
            raise ValueError(f"{self.name}: partitions must be 1-{PARTITION_SLOTS}, not {self.partitions}")
        return self.partitions

    def partition_queue_name(self, partition: int) -> str:
        return f"nocontact.{self.name}.p{partition}"

    @property
    def partition_exchange_name(self) -> str:
        return f"nocontact.{self.name}.partitions"


#: Categories of streams named after a commitment (``checkin-<commitment id>``) whose events
#: a consumer reads together with the commitment's own stream (``commitment-<id>``): the
#: notification inbox files a check-in's or an SOS's feed item under the coach that the
#: commitment stream's ``coach.assigned`` named. Such a stream shares the commitment's
#: partition, so a partitioned consumer applies the two in the order they were published:
#: the check-in service can only append after it learnt the assignment, which was then
#: published already. In partitions of their own, an SOS could be applied before the coach
#: assignment it followed: kept from the new coach's feed, or put on the former coach's.
COMMITMENT_NAMED_CATEGORIES = ("checkin",)


def partition_key(stream_id: str) -> str:
    """What places the stream in a partition: its commitment's stream for the categories of
    `COMMITMENT_NAMED_CATEGORIES`, else the stream itself."""
    category, dash, rest = stream_id.partition("-")
    if dash and category in COMMITMENT_NAMED_CATEGORIES:
        return f"commitment-{rest}"
    return stream_id


def partition_slot(stream_id: str) -> int:
    """The stream's slot (of its `partition_key`): stable across processes and versions
    (crc32, not hash())."""
    return zlib.crc32(partition_key(stream_id).encode("utf-8")) % PARTITION_SLOTS


def partition_of(stream_id: str, count: int) -> int:
    """Which of `count` partitions handles the stream (all its events go there)."""
    return partition_slot(stream_id) % count


def slots_of(partition: int, count: int) -> list[int]:
    return [slot for slot in range(PARTITION_SLOTS) if slot % count == partition]


def parse_partitions(text: str, count: int) -> list[int]:
    """'0-3,6' -> [0, 1, 2, 3, 6]; empty -> all partitions."""
    if not text.strip():
        return list(range(count))
    chosen: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        low, _, high = part.partition("-")
        first, last = int(low), int(high or low)
        if first > last or first < 0 or last >= count:
            raise ValueError(f"partition range {part!r} is outside 0-{count - 1}")
        chosen.update(range(first, last + 1))
    return sorted(chosen)


CHECKIN_INBOX = Component(
    "checkin.inbox",
    # member.profile_updated: the display names the coach dashboard shows (sealed).
    (*CREDENTIAL_EVENTS, "commitment.*", "coach.*", "member.profile_updated"),
)
NOTIFICATION_INBOX = Component(
    "notification.inbox",
    # Webhooks and the coach feed react to almost everything; credentials authorise it.
    (*CREDENTIAL_EVENTS, "commitment.*", "coach.*", "checkin.*", "streak.*", "client.*",
     "member.erasure_requested", "member.erased", "member.sos", "urge.logged", "pause.*"),
)
# A member's erasure (shared.erasure): each service that holds copies scrubs them in a
# component of its own (its handler appends its report, so it is never batched with other
# work), and the commitment service's inbox collects the reports.
NOTIFICATION_ERASURE = Component("notification.erasure", ("member.erasure_requested",))
CHECKIN_ERASURE = Component("checkin.erasure", ("member.erasure_requested",))
COMMITMENT_INBOX = Component("commitment.inbox", ("member.erasure_completed",))

COMPONENTS: tuple[Component, ...] = (CHECKIN_INBOX, NOTIFICATION_INBOX, NOTIFICATION_ERASURE, CHECKIN_ERASURE,
                                     COMMITMENT_INBOX)


@config.setting
def _partition_counts() -> list[int | None]:
    return [component.partition_count() for component in COMPONENTS]


def component(name: str) -> Component:
    for candidate in COMPONENTS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no consuming component named {name!r}")
