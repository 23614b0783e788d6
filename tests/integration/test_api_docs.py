"""/docs works without internet: Swagger UI's assets come from the API itself (a package,
not a CDN), every one the page references is served, and the page's own
Content-Security-Policy allows them and nothing else."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest

from services.aggregator.app import create_app
from services.aggregator.config import Settings
from windpark.bootstrap import SetupSettings


class _References(HTMLParser):
    """Every src and href of a page, and the text of its inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts: list[str] = []
        self._in_inline_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value for name, value in attrs if name in ("src", "href") and value}
        self.urls.extend(v for v in found.values() if v)
        self._in_inline_script = tag == "script" and not found

    def handle_endtag(self, tag: str) -> None:
        self._in_inline_script = False

    def handle_data(self, data: str) -> None:
        if self._in_inline_script:
            self.inline_scripts.append(data)


def _policy(header: str) -> dict[str, list[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: sources for name, *sources in directives}


@pytest.fixture(scope="module")
async def http(prepared: SetupSettings) -> AsyncIterator[httpx.AsyncClient]:
    # No lifespan, no token: the docs need neither.
    transport = httpx.ASGITransport(app=create_app(Settings()))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def test_docs_reference_only_local_assets_and_they_are_served(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/docs")
    assert page.status_code == 200
    assert not re.search(r"(https?:)?//", page.text.replace("window.location.origin", "")), (
        "the page names another origin"
    )
    references = _References()
    references.feed(page.text)
    assert len(references.urls) >= 3  # the script, the stylesheet, the icon
    # What the inline start-up script loads: the document and the OAuth2 redirect page.
    script = "".join(references.inline_scripts)
    loaded = re.findall(r"url: '([^']+)'", script) + re.findall(r"\+ '([^']+)'", script)
    assert "/openapi.json" in loaded
    expected_types = {".js": "javascript", ".css": "text/css", ".png": "image/png"}
    for url in references.urls + loaded:
        assert url.startswith("/"), url
        answer = await http.get(url)
        assert answer.status_code == 200, url
        assert answer.content, url
        for suffix, kind in expected_types.items():
            if url.endswith(suffix):
                assert kind in answer.headers["content-type"], (url, answer.headers)
    # The OAuth2 redirect page's own script, referenced relatively.
    redirect = next(u for u in loaded if "oauth2-redirect" in u)
    redirect_page = (await http.get(redirect)).text
    assert '<script src="oauth2-redirect.js">' in redirect_page
    assert (await http.get(redirect.rsplit("/", 1)[0] + "/oauth2-redirect.js")).status_code == 200
    bundle = await http.get(next(u for u in references.urls if u.endswith("bundle.js")))
    assert b"SwaggerUIBundle" in bundle.content


async def test_the_docs_content_security_policy_allows_its_assets_and_nothing_else(
    http: httpx.AsyncClient,
) -> None:
    page = await http.get("/docs")
    policy = _policy(page.headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    references = _References()
    references.feed(page.text)
    # Scripts: this origin, and each inline script by its hash (no 'unsafe-inline').
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'self'" in policy["script-src"]
    assert references.inline_scripts
    for script in references.inline_scripts:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    for directive in ("style-src", "img-src"):
        assert "'self'" in policy[directive]
    # No directive names another origin.
    assert all(
        source.startswith("'") or source == "data:"
        for sources in policy.values()
        for source in sources
    ), policy
    # The other answers keep the app-wide headers.
    openapi = await http.get("/openapi.json")
    assert openapi.headers["content-security-policy"] == "frame-ancestors 'none'"
