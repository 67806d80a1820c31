"""The coach dashboard: one HTML page and its static assets, served by the check-in service.

The page holds no data of its own. It signs in once per browser (`sessions`: a sign-in
link, a coach token or an admin key exchanged for a session cookie) and reads what it
shows from its own origin, `/dashboard/api/...` (`data`): the check-in service's data, and
the coach's feed, which this service fetches from the notification service for it.
"""

import flask

from .data import blueprint as data_blueprint
from .page import blueprint
from .sessions import links_blp

# The page's data routes live under the page's prefix (/dashboard/session, /dashboard/api/):
# a plain Flask blueprint nested in the documented one, so they stay out of /openapi.json.
flask.Blueprint.register_blueprint(blueprint, data_blueprint)

__all__ = ["blueprint", "links_blp"]
