"""``GET /``: the web console (forget sets, audit, A/B compare). The page itself needs no key; it asks
for one and calls the API with it. Files come from the installed package (``service/static``)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from service.errors import ApiError

router = APIRouter(include_in_schema=False)

_TYPES = {"console.js": "text/javascript; charset=utf-8", "console.css": "text/css; charset=utf-8",
          "favicon.svg": "image/svg+xml"}
# The page handles API keys: no inline script, nothing from other origins, no framing.
_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def _static(name: str) -> bytes:
    return (resources.files("service") / "static" / name).read_bytes()


@router.get("/")
def console() -> HTMLResponse:
    """The console page."""
    return HTMLResponse(_static("index.html"), headers=_HEADERS)


@router.get("/favicon.ico")
def favicon() -> Response:
    """The icon browsers ask for by default (an SVG, which they accept under this name)."""
    return Response(_static("favicon.svg"), media_type=_TYPES["favicon.svg"], headers=_HEADERS)


@router.get("/static/{name}")
def static(name: str) -> Response:
    """The console's script, style sheet and icon (a fixed list: no path is ever read from the request)."""
    if name not in _TYPES:
        raise ApiError(404, "not_found", f"expected one of {sorted(_TYPES)}, found {name!r:.60}")
    return Response(_static(name), media_type=_TYPES[name], headers=_HEADERS)
