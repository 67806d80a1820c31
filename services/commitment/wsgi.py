"""gunicorn entry point: `gunicorn -c infra/gunicorn.conf.py services.commitment.wsgi:app`."""

from services.commitment.app import create_app

app = create_app()
