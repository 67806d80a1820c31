"""gunicorn settings shared by the three APIs (make run, docker-compose, production).

Threads per worker serve concurrent requests cheaply (the work is I/O on the database);
connections are opened after fork, never inherited.
"""

import os

bind = os.environ.get("NOCONTACT_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("NOCONTACT_WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("NOCONTACT_WEB_THREADS", "4"))
timeout = 30
graceful_timeout = 20
keepalive = 5
accesslog = None  # requests are logged as JSON by the app, with correlation ids
errorlog = "-"
loglevel = os.environ.get("NOCONTACT_LOG_LEVEL", "info").lower()
# The service code is imported once in the master: less memory, faster worker restarts.
preload_app = False


def post_fork(server, worker):
    from shared.db import dispose_all

    dispose_all()


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
