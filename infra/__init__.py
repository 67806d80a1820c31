"""Deployment files that ship inside the nocontact package.

The Alembic migrations, the gunicorn settings and the RabbitMQ definitions are package
data (pyproject.toml), so an installed wheel carries them and code finds them here, through
importlib.resources, from any working directory. The rest of infra/ (Dockerfile,
PostgreSQL and RabbitMQ server files, Prometheus) is for the host and is not installed.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def path(name: str) -> Path:
    """The file or folder `name` (e.g. "migrations") as installed with this package.

    Wheels install unzipped, so the resource is a real path that gunicorn and Alembic can
    be handed.
    """
    return Path(str(files(__name__).joinpath(name)))
