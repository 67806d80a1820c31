"""The embedded broker's exchange tables under components binding at once: a starting
worker's consumers all bind to the events exchange together, and Kombu's own filesystem
transport lost bindings that way (a new table opened with "wb" before it is locked: two
binders both truncate it), and with a lost binding every message meant for that queue."""

from __future__ import annotations

import threading

from kombu import Exchange, Queue

from shared import bus


def test_components_binding_at_once_keep_every_binding(filesystem_broker_url: str) -> None:
    exchange = Exchange("nocontact.test-bindings", type="topic", durable=True)
    names = [f"nocontact.test-bindings.q{n}" for n in range(16)]
    start = threading.Barrier(len(names))

    def bind(name: str) -> None:
        with bus.connect(filesystem_broker_url) as connection:
            start.wait()
            Queue(name, exchange=exchange, routing_key=f"{name}.#")(connection.default_channel).declare()

    threads = [threading.Thread(target=bind, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    with bus.connect(filesystem_broker_url) as connection:
        table = connection.default_channel.get_table(exchange.name)
    assert sorted(entry.queue for entry in table) == sorted(names)
