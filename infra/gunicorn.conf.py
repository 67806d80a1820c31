"""gunicorn settings shared by the three APIs (make run, docker-compose, production).

Threads per worker serve concurrent requests cheaply (the work is I/O on the database);
connections are opened after fork, never inherited. The worker is gthread whose threads
only take requests that have arrived whole (shared/gunicorn_worker.py): a slow client costs
a buffer, not a thread, and is cut off after a head or body timeout.
"""

import os
import re

from gunicorn.glogging import Logger

# Not `config`: gunicorn reads every module-level name of this file that is one of its
# settings as that setting, and `config` is one.
from shared.config import number

bind = os.environ.get("NOCONTACT_BIND", "127.0.0.1:8000")
workers = number("NOCONTACT_WEB_WORKERS", 2, minimum=1)
worker_class = "shared.gunicorn_worker.RequestBufferingWorker"
threads = number("NOCONTACT_WEB_THREADS", 4, minimum=1)
timeout = 30
graceful_timeout = 20
keepalive = 5
# Requests are logged by the app (shared/web.py: one line each, with the route, the
# correlation id and the caller); gunicorn's own access log would only repeat them.
accesslog = None
errorlog = "-"
loglevel = os.environ.get("NOCONTACT_LOG_LEVEL", "info").lower()


class StructuredLogger(Logger):
    """gunicorn's logs (its error log: starting, "Booting worker", worker timeouts; its
    access log, if one is configured) in the format of every other line: JSON, or the
    console format on a terminal (shared.logging), under the name of the service served."""

    def setup(self, cfg):
        super().setup(cfg)
        from shared import logging as nclog

        # The app's module names the service: services.<service>.wsgi:app.
        served = re.match(r"services\.(\w+)\.wsgi", cfg.proc_name or "")
        nclog.configure(served.group(1) if served else "gunicorn")
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(nclog.formatter(getattr(handler, "stream", None)))


logger_class = StructuredLogger
# Not preloaded: each worker imports the app after fork, so no connection, thread or
# metric state is ever inherited from the master.
preload_app = False
# gunicorn's control socket lives in one file per user; several masters on one host (the
# three APIs of make run) would collide on it, and nothing here uses it.
control_socket_disable = True


def on_starting(server):
    # Metrics of a previous run's workers must not be summed into this one's: the
    # multiprocess directory starts empty (make run clears it too; containers need this).
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
        os.makedirs(directory, exist_ok=True)


def post_fork(server, worker):
    from shared.db import dispose_all

    dispose_all()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
