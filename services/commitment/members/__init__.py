"""Members in the commitment service: their profile, their export, their erasure.

The same tree as the service (handlers, projections, queries, api, consumers), for the
part of it that is about a member rather than a commitment. `export_member` is what
``nocontact members export`` reads (each service has one, see services/cli.py).
"""

from .queries import export_member

__all__ = ["export_member"]
