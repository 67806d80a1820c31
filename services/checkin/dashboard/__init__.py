"""The coach dashboard: one HTML page and its static assets, served by the check-in service.

The page holds no data of its own. It signs in with a coach token (or an admin key plus
a coach id) kept in the tab's sessionStorage and reads the check-in service's own JSON
API from the browser, same origin: `GET /v1/coaches/{coach_id}/clients` for the list,
`GET /v1/commitments/{id}/check-ins` and `.../streak` for one client's detail.
"""

from .page import blueprint

__all__ = ["blueprint"]
