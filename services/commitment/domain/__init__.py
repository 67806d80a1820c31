"""Pure domain of the commitment service: commitments, coach assignments, tenants, API keys
and token claims (`commitment`, `coaching`, `tenancy`).

No I/O here (no database, clock or network): handlers load events, pass ``now`` in, and
record the ``pending_events`` the aggregates collect (`shared.aggregate`). Errors are
`shared.errors` kinds, mapped to HTTP at the edge.
"""
