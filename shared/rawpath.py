"""Path segments as the client sent them: an id with a `/` in it (sent as `%2F`) stays one id.

Member and coach ids are any 1-128 characters (CONTRACT), and partners' pseudonymous ids
do contain `/`. WSGI servers decode PATH_INFO before the app sees it, so
`/v1/coaches/c%2F1/clients` reached routing as `/v1/coaches/c/1/clients`: no such
resource. The request target as sent (gunicorn's `RAW_URI`, `REQUEST_URI` of Werkzeug's
server and test client) still tells the two apart.

`RawPath` rebuilds PATH_INFO from it with every escape decoded except `%2F` and `%25` (so a
`/` and a `%` inside a segment stay escaped, and nothing else can be read as an escape);
`Segment`, the converter of every `<name>` and `<string:name>` rule, decodes those two.
Everything else sees the path it always saw.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, unquote_to_bytes, urlsplit

from werkzeug.routing import UnicodeConverter

__all__ = ["RawPath", "Segment"]

_KEPT = re.compile("%(2F|25)", re.IGNORECASE)


def _escaped(text: str) -> str:
    """WSGI path text (bytes as latin-1) with `%` and `/` escaped."""
    return text.replace("%", "%25").replace("/", "%2F")


class Segment(UnicodeConverter):
    """One path segment, `/` and `%` in it included (see `RawPath`)."""

    def to_python(self, value: str) -> str:
        return _KEPT.sub(lambda escape: "/" if escape.group(1).upper() == "2F" else "%", value)

    def to_url(self, value: Any) -> str:
        return quote(str(value), safe="!$&'()*+,:;=@")  # Werkzeug's, without "/"


class RawPath:
    """WSGI middleware: PATH_INFO from the raw request target, `%2F` and `%25` kept escaped."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        environ["PATH_INFO"] = self.path_info(environ)
        return self.app(environ, start_response)

    @staticmethod
    def path_info(environ: dict[str, Any]) -> str:
        decoded = environ.get("PATH_INFO", "")
        target = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        if target.startswith("/"):
            raw = target.partition("?")[0].partition("#")[0]
        elif "://" in target:  # absolute form (a proxy's request)
            raw = urlsplit(target).path
        else:
            raw = ""  # `*`, or a server that does not tell
        segments = [unquote_to_bytes(part.encode("latin-1")).decode("latin-1") for part in raw.split("/")]
        if raw and not environ.get("SCRIPT_NAME") and "/".join(segments) == decoded:
            return "/".join(_escaped(segment) for segment in segments)
        # No raw target to trust (mounted under a prefix, rewritten): the decoded path, its `%`
        # escaped so that `Segment` reads it back unchanged.
        return decoded.replace("%", "%25")
