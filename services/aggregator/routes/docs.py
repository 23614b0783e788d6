"""``/docs``: Swagger UI served by the API itself, so it works on a machine without internet.

FastAPI's own page loads Swagger UI from a CDN (blank offline, and a third party's code
in a page that handles tokens). Here the assets come from the ``swagger-ui-bundle-v2``
package (Swagger UI 5, which reads OpenAPI 3.1), mounted under ``/docs/assets``: nothing
is copied into the repository. The page carries a Content-Security-Policy that allows
scripts, styles and requests from this origin only (the page's one inline script by its
hash), so a browser would refuse any other origin even if one crept in.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Final

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_PATH: Final = "/docs"
ASSETS_PATH: Final = "/docs/assets"
# The package's redirect page loads its script from a file (no inline code).
OAUTH2_REDIRECT: Final = f"{ASSETS_PATH}/oauth2-redirect.html"
# Inline <script> elements without attributes: the page's own start-up code.
_INLINE_SCRIPT: Final = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def content_security_policy(page: bytes) -> str:
    """This origin only; the page's inline scripts by their SHA-256. Swagger UI sets
    inline style attributes, hence 'unsafe-inline' for styles (not for scripts); its
    icons are data: URIs."""
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode()}'"
        for script in _INLINE_SCRIPT.findall(page)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def add_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its assets at /docs/assets (create the app with
    ``docs_url=None`` and ``redoc_url=None``: ReDoc has no packaged assets)."""
    app.mount(ASSETS_PATH, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui")
    openapi_url = app.openapi_url or "/openapi.json"

    async def swagger_ui(request: Request) -> HTMLResponse:
        root = str(request.scope.get("root_path", "")).rstrip("/")
        page = get_swagger_ui_html(
            openapi_url=root + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=root + OAUTH2_REDIRECT,
            init_oauth=app.swagger_ui_init_oauth,
            swagger_ui_parameters=app.swagger_ui_parameters,
        )
        page.headers["content-security-policy"] = content_security_policy(bytes(page.body))
        return page

    app.add_route(DOCS_PATH, swagger_ui, include_in_schema=False)
