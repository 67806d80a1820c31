"""Running a service's background parts (relay, consumers, scheduler...) as one process.

Each part is a function taking a stop event. SIGTERM or SIGINT sets the event; every part
finishes what it holds (the message being handled, the batch being published) and returns.
A part that dies is restarted after a pause, so one bad moment does not stop the others.
With NOCONTACT_WORKER_METRICS_PORT set, the process serves its Prometheus metrics (relay
lag, consumer lag, dead letters, webhook attempts...) on that port for scraping.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Mapping
from wsgiref.simple_server import WSGIServer

from shared import config

log = logging.getLogger(__name__)

Part = Callable[[threading.Event], None]


def _supervise(name: str, part: Part, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            part(stop)
        except Exception:
            log.exception("worker part %s crashed; restarting in 2s", name)
            stop.wait(2)
        else:
            return


def run_parts(parts: Mapping[str, Part], stop: threading.Event | None = None,
              install_signals: bool = True) -> None:
    """Run `parts` in threads until stopped (by signal or by `stop`), then join them."""
    # A malformed setting stops the worker here, named, not in the part that reads it
    # later (which would crash and restart every 2 s, or spin).
    config.check()
    stop = stop or threading.Event()
    if install_signals:
        def _stop(signum: int, _frame: object) -> None:
            log.info("signal %s: stopping %s", signum, ", ".join(parts))
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    metrics_server = _serve_metrics()
    threads = [
        threading.Thread(target=_supervise, args=(name, part, stop), name=name, daemon=True)
        for name, part in parts.items()
    ]
    for thread in threads:
        thread.start()
    log.info("worker running: %s", ", ".join(parts))
    while not stop.is_set():
        stop.wait(0.5)
    for thread in threads:
        thread.join(timeout=30)
    if metrics_server is not None:
        metrics_server.shutdown()
    log.info("worker stopped")


def _serve_metrics() -> WSGIServer | None:
    """Serve /metrics on NOCONTACT_WORKER_METRICS_PORT (0.0.0.0 unless ..._ADDR says otherwise)."""
    port = config.number("NOCONTACT_WORKER_METRICS_PORT", 0, minimum=0, maximum=65535)
    if not port:
        return None
    from prometheus_client import start_http_server

    address = os.environ.get("NOCONTACT_WORKER_METRICS_ADDR", "0.0.0.0")  # noqa: S104 - scraped from outside
    server, _thread = start_http_server(port, addr=address)
    log.info("worker metrics on %s:%s/metrics", address, port)
    return server
