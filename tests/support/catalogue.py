"""Validating webhook data against the event catalogue (shared.catalogue), for the tests.

`closed` is the catalogue's schema with every object closed (no field it does not name):
the catalogue leaves objects open for partners, so that fields can be added, but a field
we send and do not document is a gap in the catalogue, and the tests find it that way.
"""

from __future__ import annotations

import copy
from typing import Any

from jsonschema import Draft202012Validator

from shared.catalogue import CATALOGUE


def closed(schema: Any) -> Any:
    """`schema` with ``additionalProperties: false`` on every object that lists properties."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) if key in ("items", "anyOf", "oneOf", "allOf") else copy.deepcopy(value)
              for key, value in schema.items() if key != "properties"}
    if "properties" in schema:
        result["properties"] = {name: closed(field) for name, field in schema["properties"].items()}
        result["additionalProperties"] = False
    return result


def problems(event_type: str, data: Any) -> list[str]:
    """What is wrong with `data` as the data of `event_type` (closed schema, formats checked):
    one line per error, naming the field; empty when it validates."""
    entry = CATALOGUE.get(event_type)
    if entry is None:
        return [f"{event_type}: not in the event catalogue (shared/catalogue.py)"]
    validator = Draft202012Validator(closed(entry.schema), format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [
        f"{event_type}: data.{'.'.join(str(part) for part in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(validator.iter_errors(data), key=lambda error: list(map(str, error.absolute_path)))
    ]
