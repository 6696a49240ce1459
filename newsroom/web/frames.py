"""The volunteer's own local pages (`preview --serve`, `newsroom inbox`): emails shown in
sandboxed frames with a colour scheme forced, answers that keep every page on this machine, and
the app that serves them on loopback only.

A frame cannot be put in dark mode from outside: Chromium evaluates `prefers-color-scheme`
inside an iframe by the browser's own preference, whatever `color-scheme` the iframe element
has (measured with Chromium 156). So the frame's document is served with its colour-scheme
media queries already decided: `(prefers-color-scheme: dark)` becomes `(color)` (true on every
screen) in a dark frame and `(monochrome)` (false) in a light one — what a mail client that
honours the email's own dark CSS (Apple Mail, Outlook.com) evaluates.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from importlib import resources
from typing import Literal

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

Scheme = Literal["light", "dark"]
SCHEMES: tuple[Scheme, ...] = ("light", "dark")
PHONE, DESKTOP = 375, 720  # px: an iPhone's width; wider than the 600 px card, so its edges show
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")

TEMPLATES = Environment(
    loader=PackageLoader("newsroom", "templates"),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

# The pages themselves: one stylesheet and one script, both from here (no third-party host).
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "frame-src 'self'; img-src 'self'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
# An email in a frame: no script at all (the sandbox), its inline styles, no fonts or frames of
# its own. IMAGES says which images may load: a preview shows the issue's own, as members see
# them; the inbox shows received messages, which load nothing from anywhere.
FRAME_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src {images}; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
)
PREVIEW_IMAGES = "https: http: data:"
NO_REMOTE_IMAGES = "data:"

_STYLE = re.compile(r"(<style\b[^>]*>)(.*?)(</style\s*>)", re.IGNORECASE | re.DOTALL)
_SCHEME_QUERY = re.compile(r"\(\s*prefers-color-scheme\s*:\s*(dark|light)\s*\)", re.IGNORECASE)
_SCHEME_META = re.compile(
    r"""<meta\s+name=["'](?:supported-)?color-schemes?["']\s+content=["'][^"']*["']\s*/?>""",
    re.IGNORECASE,
)


def force_scheme(html: str, scheme: Scheme) -> str:
    """HTML as a reader with SCHEME preferred sees it: the colour-scheme media queries of its
    style elements decided, and its color-scheme meta saying SCHEME alone (for the canvas and
    scroll bars). The text of the email itself is never touched."""

    def query(match: re.Match[str]) -> str:
        return "(color)" if match.group(1).lower() == scheme else "(monochrome)"

    def style(match: re.Match[str]) -> str:
        return match.group(1) + _SCHEME_QUERY.sub(query, match.group(2)) + match.group(3)

    html = _STYLE.sub(style, html)
    return _SCHEME_META.sub(f'<meta name="color-scheme" content="{scheme}">', html)


def no_store(headers: dict[str, str]) -> dict[str, str]:
    """Headers of every local answer: never cached (a page must show the file as it is now),
    never sniffed, and no Referer to the hosts an email links to."""
    return {
        **headers,
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def page(
    name: str,
    status: int = 200,
    *,
    watch: str = "",
    version: str = "",
    here: str = "",
    has_preview: bool = True,
    **context: object,
) -> HTMLResponse:
    """A local page; WATCH is the JSON address it polls, reloading when it no longer says
    VERSION ("" for a page that does not change)."""
    html = TEMPLATES.get_template(f"preview/{name}.html").render(
        context, watch=watch, version=version, here=here, has_preview=has_preview
    )
    headers = no_store({"Content-Security-Policy": PAGE_CSP, "X-Frame-Options": "DENY"})
    return HTMLResponse(html, status_code=status, headers=headers)


def frame(html: str, images: str) -> HTMLResponse:
    """An email document for a sandboxed iframe of our own pages."""
    headers = no_store({"Content-Security-Policy": FRAME_CSP.format(images=images)})
    return HTMLResponse(html, headers=headers)


def _asset(name: str, media_type: str) -> Route:
    text = resources.files("newsroom").joinpath(f"templates/preview/{name}").read_text("utf-8")

    async def answer(request: Request) -> Response:
        return Response(text, media_type=media_type, headers=no_store({}))

    return Route(f"/{name}", answer)


async def _no_icon(request: Request) -> Response:
    return Response(status_code=204, headers=no_store({}))


def asset_routes() -> list[Route]:
    """The pages' one stylesheet and one script (and no icon, which browsers ask for)."""
    return [
        _asset("preview.css", "text/css"),
        _asset("reload.js", "text/javascript"),
        Route("/favicon.ico", _no_icon),
    ]


def json(data: object) -> JSONResponse:
    return JSONResponse(data, headers=no_store({}))


def allowed_hosts(host: str) -> list[str]:
    """The Host headers a local page answers: loopback's names and HOST. A web page elsewhere
    can point a name of its own at 127.0.0.1 (DNS rebinding) and read what its browser loads
    from there; the Host header it sends still names its own site, and is refused. A wildcard
    HOST (0.0.0.0, ::) was asked for on purpose: any name then."""
    if host in ("0.0.0.0", "::", ""):
        return ["*"]
    return sorted({*LOOPBACK, host, f"[{host}]" if ":" in host else host})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")


def local_app(routes: Sequence[BaseRoute], host: str) -> Starlette:
    hosts = allowed_hosts(host)
    return Starlette(
        routes=list(routes),
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts, www_redirect=False)],
    )
