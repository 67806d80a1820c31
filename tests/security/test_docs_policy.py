"""/docs carries a Content-Security-Policy, and Swagger UI (served locally) still works under
it: in a real browser (Debian's chromium through Playwright), every service's page renders
its operations with no policy violation; so does the combined reference at /reference."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.test_dashboard import browser, chromium  # noqa: F401 - the browser fixtures
from tests.security.conftest import World

pytestmark = pytest.mark.browser


def test_docs_policy_allows_only_this_origin_and_the_pages_own_script(world: World) -> None:
    page = httpx.get(world.suite.url("commitment", "/docs"), timeout=30)
    assert page.status_code == 200
    policy = {part.split()[0]: part.split()[1:] for part in page.headers["Content-Security-Policy"].split("; ")}
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"][0] == "'self'" and all(s.startswith("'sha256-") for s in policy["script-src"][1:])
    assert len(policy["script-src"]) == 2  # the one inline script that starts Swagger UI
    assert not any("unsafe" in value or value == "*" for values in policy.values() for value in values), policy
    assert policy["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize("path", ["/docs", "/reference"])
@pytest.mark.parametrize("service", ["commitment", "checkin", "notification"])
def test_swagger_ui_works_under_its_policy(world: World, browser: Any, service: str, path: str) -> None:  # noqa: F811
    page = browser.new_page()
    problems: list[str] = []
    # The browser's own request for /favicon.ico (there is none) is no problem of the page.
    page.on("console", lambda message: problems.append(f"{message.text} {message.location}")
            if message.type == "error" and not message.location.get("url", "").endswith("/favicon.ico") else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    outside: list[str] = []
    page.on("request", lambda request: outside.append(request.url)
            if not request.url.startswith(world.suite.url(service)) and not request.url.startswith("data:")
            else None)
    page.goto(world.suite.url(service, path))
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    assert page.locator(".opblock").count() >= 3
    # The operations come from this service's /openapi.json (or /openapi-all.json).
    assert page.locator(".info .title").inner_text().startswith("nocontact")
    assert not problems, problems  # a violation is reported as a console error ("Refused to ...")
    assert not outside, outside
    page.close()
