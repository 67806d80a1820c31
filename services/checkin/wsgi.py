"""gunicorn entry point: ``services.checkin.wsgi:app``."""

from services.checkin.app import create_app

app = create_app()
