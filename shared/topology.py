"""Who consumes what on the bus: the one place the broker topology is declared.

One durable topic exchange, ``nocontact.events``, with the event type as routing key.
Each consuming component owns one durable queue (a quorum queue on RabbitMQ) bound to
the event types it needs, and a dead-letter queue for messages it gave up on. The relay
declares all of it before publishing, so no event is ever published before the queue
that needs it exists.
"""

from __future__ import annotations

from dataclasses import dataclass

EXCHANGE = "nocontact.events"
DEAD_LETTER_EXCHANGE = "nocontact.dead-letter"

CREDENTIAL_EVENTS = ("tenant.created", "api_key.issued", "api_key.revoked")


@dataclass(frozen=True)
class Component:
    """A consuming component: a service's handler of some event types."""

    name: str
    routing_keys: tuple[str, ...]

    @property
    def queue_name(self) -> str:
        return f"nocontact.{self.name}"

    @property
    def dead_letter_queue_name(self) -> str:
        return f"nocontact.{self.name}.dead-letter"


CHECKIN_INBOX = Component(
    "checkin.inbox",
    (*CREDENTIAL_EVENTS, "commitment.*", "coach.*"),
)
NOTIFICATION_INBOX = Component(
    "notification.inbox",
    # Webhooks and the coach feed react to almost everything; credentials authorise it.
    (*CREDENTIAL_EVENTS, "commitment.*", "coach.*", "checkin.*", "streak.*", "client.*"),
)

COMPONENTS: tuple[Component, ...] = (CHECKIN_INBOX, NOTIFICATION_INBOX)


def component(name: str) -> Component:
    for candidate in COMPONENTS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no consuming component named {name!r}")
