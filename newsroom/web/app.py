"""The web side (Starlette): subscribe, confirm, one-click unsubscribe, preferences, and the
public archive and feeds. `create_app(site)` builds the app; `newsroom serve` hands it to uvicorn.

The handlers are thin: every rule (who may subscribe, what a token may do, the ledger) lives in
subscribers.py, preferences.py and erasure.py. A GET never changes anything, because mail
scanners follow links; every change is a POST.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import mimetypes
import re
import threading
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from newsroom import tokens
from newsroom.clock import Clock, utcnow
from newsroom.compose import templating
from newsroom.errors import ConfigError, NewsroomError
from newsroom.mail.smtp import RelayError
from newsroom.people import consent, lists, preferences, subscribers
from newsroom.site import Site
from newsroom.web import feeds, pages
from newsroom.web.archive import Archive, Published
from newsroom.web.clientwindows import ClientWindows
from newsroom.web.groupcommit import GroupCommit
from newsroom.web.security import CSP_HEADER, ClientLimit, FormGuard, SecurityHeaders

log = logging.getLogger(__name__)
T = TypeVar("T")
ONE_CLICK = ("List-Unsubscribe", "One-Click")  # RFC 8058 section 3.1: the POST body's one field
ONE_CLICK_BODY = b"List-Unsubscribe=One-Click"
URLENCODED = "application/x-www-form-urlencoded"


def stylesheet(site: Site) -> str:
    """/style.css: the web side's one stylesheet (the site's templates/web/site.css, or ours),
    in the site's theme colours."""
    config = site.config
    root = urlsplit(config.text("site.base_url")).path.rstrip("/")
    return templating.render(config, "web/site.css", theme=config.theme.context(root))


class Pages:
    """The site's own pages (its templates/ first), rendered with what every page shows (name,
    language, links: pages.base_context)."""

    def __init__(self, site: Site) -> None:
        self.config = site.config
        self.base = pages.base_context(site.config)
        self.root = str(self.base["root"])

    def html(self, name: str, **context: Any) -> str:
        return templating.render(self.config, f"web/{name}.html", **{**self.base, **context})

    def page(self, name: str, status: int = 200, **context: Any) -> HTMLResponse:
        return HTMLResponse(self.html(name, **context), status_code=status)

    def message(self, title: str, text: str, status: int = 200, **context: Any) -> HTMLResponse:
        return self.page("message", status, title=title, text=text, **context)


class Web:
    """The handlers, sharing the site, the clock, the pages and the guards."""

    def __init__(self, site: Site, clock: Clock) -> None:
        self.site = site
        self.clock = clock
        self.pages = Pages(site)
        self.guard = FormGuard(site.config)
        # One server on SQLite keeps the limit in memory; on PostgreSQL, where several servers
        # may share the site, in the database (issue #17, item 2).
        rate = site.config.text("web.subscribe_rate")
        self.shared = site.engine.dialect.name == "postgresql"
        self.limiter = ClientWindows(site, rate) if self.shared else ClientLimit(rate)
        self.style = stylesheet(site)
        self.theme_files = site.config.theme.files()
        self.archive = Archive(site, clock)
        # One-click unsubscribes arriving together share a transaction; on SQLite in the event
        # loop when the write lock is free, else in a thread (groupcommit.py).
        self.leaving: GroupCommit[subscribers.Leaving, list[str] | tokens.TokenError]
        self.leaving = GroupCommit(
            partial(subscribers.unsubscribe_by_tokens, site),
            inline=site.engine.dialect.name == "sqlite",
        )
        self.welcoming = threading.Lock()  # one welcome sender at a time in this process

    async def write(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a library call that changes the database (and may send mail) in a worker thread."""
        return await run_in_threadpool(function, *args, **kwargs)

    async def welcome(self) -> None:
        """Send the welcomes just owed, after the answer has gone, as the confirmation email
        is sent after the subscribe form's: the request never waits for SMTP. Whatever stops
        it (another sender at work, the relay down) leaves them queued for `newsroom worker`."""
        await run_in_threadpool(self._welcome)

    def _welcome(self) -> None:
        from newsroom.delivery import welcomes  # the sending stack, loaded when first needed

        with self.welcoming:  # a later confirmation's welcome is queued by the next one in
            try:
                done = welcomes.send_now(self.site, self.clock())
            except (NewsroomError, RelayError) as exc:
                log.warning("welcome: left for `newsroom worker`: %s", exc)
                return
        for slug, (count, reason) in done.queued.waiting.items():
            log.warning("welcome: %d to %s wait: %s", count, slug, reason)

    # -- subscribe ---------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        issues = await run_in_threadpool(self.archive.issues)
        return await self._form(request, "index", issues=issues, dynamic=True)

    async def subscribe_page(self, request: Request) -> Response:
        if request.method == "POST":
            return await self.subscribe(request)
        return await self._form(request, "subscribe")

    async def _form(
        self,
        request: Request,
        name: str,
        status: int = 200,
        error: str = "",
        values: FormData | None = None,
        **context: Any,
    ) -> Response:
        cookie = self.guard.cookie_value(request.cookies.get(FormGuard.COOKIE))
        public = await run_in_threadpool(preferences.public_lists, self.site)
        form = pages.form_context(self.site.config, public, self.guard.field(cookie, self.clock()))
        form["error"] = error
        if values:
            form["values"] = {
                "email": values.get("email", ""),
                "name": values.get("name", ""),
                "lists": values.getlist("lists"),
            }
        response = self.pages.page(name, status, **form, **context)
        response.set_cookie(
            FormGuard.COOKIE,
            cookie,
            httponly=True,
            samesite="strict",
            secure=self.guard.secure,
            path="/",
        )
        return response

    async def subscribe(self, request: Request) -> Response:
        form = await _form_data(request)
        now = self.clock()
        if not self.guard.check(request.cookies.get(FormGuard.COOKIE), form.get("form_token"), now):
            return await self._form(
                request,
                "subscribe",
                400,
                "This form had expired or your browser did not send it back whole. "
                "Please try again.",
                form,
            )
        client = _client(request)
        if not await self._allowed(client, now.timestamp()):
            response = self.pages.message(
                "Too many requests",
                "Too many subscribe requests came from your network. Please try again later.",
                429,
            )
            response.headers["Retry-After"] = str(await self._retry_after(client, now.timestamp()))
            return response
        if form.get("website"):  # the honeypot: hidden from people, filled in by bots
            log.info("subscribe: honeypot filled, ignored")
            return self._check_inbox()
        chosen = [str(v) for v in form.getlist("lists")]
        if not chosen:
            return await self._form(request, "subscribe", 400, "Choose at least one list.", form)
        email, name = str(form.get("email", "")), str(form.get("name", ""))
        try:
            await run_in_threadpool(subscribers.check_request, self.site, email, name, chosen)
        except subscribers.InvalidInput as exc:
            return await self._form(request, "subscribe", 400, str(exc), form)
        # Everything that depends on the address's state (rows written or not, an email sent
        # or not) happens after the answer has gone: its timing would tell a stranger whether
        # the address is subscribed (a confirmed one answered in a fifth of the time).
        answer = self._check_inbox()
        answer.background = BackgroundTask(
            self._subscribe, email, name, chosen, client, request.headers.get("user-agent"), now
        )
        return answer

    async def _allowed(self, client: str, now: float) -> bool:
        if self.shared:  # a query: not in the event loop
            return await run_in_threadpool(self.limiter.allow, client, now)
        return self.limiter.allow(client, now)

    async def _retry_after(self, client: str, now: float) -> int:
        if self.shared:
            return await run_in_threadpool(self.limiter.retry_after, client, now)
        return self.limiter.retry_after(client, now)

    async def _subscribe(
        self,
        email: str,
        name: str,
        chosen: list[str],
        client: str,
        user_agent: str | None,
        now: datetime,
    ) -> None:
        try:
            report = await self.write(
                subscribers.subscribe,
                self.site,
                email,
                name,
                chosen,
                ip=client,
                user_agent=user_agent,
                now=now,
            )
        except (RelayError, ConfigError, subscribers.InvalidInput) as exc:
            # The relay failed or the DKIM key cannot be read (the library let the address try
            # again at once), or lists.toml changed since the check: the answer has gone, so the
            # log is the one place to say.
            log.warning("subscribe: not carried out: %s", exc)
            return
        if report.welcomes:  # a single opt-in list, confirmed at once by the person
            await self.welcome()

    def _check_inbox(self) -> Response:
        return self.pages.message(
            "Check your inbox",
            "If this address can be subscribed, an email is on its way with a link to confirm. "
            "Nothing happens until you open it. If no email comes within the hour, look in your "
            "spam folder, then try again tomorrow.",
        )

    # -- links from emails ---------------------------------------------------------------------

    def _invalid(self) -> Response:
        """The one answer to every bad token: forged, truncated, altered, of another purpose or
        for an erased address. It tells nothing about why."""
        return self.pages.message(
            "This link does not work",
            "The link is incomplete or has been altered. Copy the whole link from the email "
            "into your browser, or use the link in a more recent email.",
            400,
            token_page=True,
        )

    async def confirm(self, request: Request) -> Response:
        token = request.path_params["token"]
        now = self.clock()
        if request.method == "POST":
            form = await _form_data(request)
            if form.get("action") == "resend":
                return await self._resend(token, now)
            try:
                result = await self.write(
                    subscribers.confirm,
                    self.site,
                    token,
                    ip=_client(request),
                    user_agent=request.headers.get("user-agent"),
                    now=now,
                )
            except tokens.TokenExpired:
                return self._expired()
            except tokens.TokenError:
                return self._invalid()
            person = await run_in_threadpool(
                preferences.holder, self.site, "confirm", token, now=now, allow_expired=True
            )
            page = self.pages.page(
                "confirmed",
                token_page=True,
                email=person.email,
                lists=person.names(result.confirmed + result.already),
            )
            if result.welcomes:  # owed in the confirming transaction; sent after the answer
                page.background = BackgroundTask(self.welcome)
            return page
        try:
            person = await run_in_threadpool(
                preferences.holder, self.site, "confirm", token, now=now
            )
        except tokens.TokenExpired:
            return self._expired()
        except tokens.TokenError:
            return self._invalid()
        return self.pages.page(
            "confirm", token_page=True, email=person.email, lists=person.names(person.named)
        )

    def _expired(self) -> Response:
        return self.pages.page("expired", 410, token_page=True)

    async def _resend(self, token: str, now: datetime) -> Response:
        try:
            await self.write(subscribers.resend_confirmation, self.site, token, now=now)
        except tokens.TokenError:
            return self._invalid()
        except (RelayError, ConfigError) as exc:  # the relay, or the DKIM key
            log.warning("confirm: new confirmation email not sent: %s", exc)
        return self._check_inbox()

    async def unsubscribe(self, request: Request) -> Response:
        token = request.path_params["token"]
        now = self.clock()
        if request.method == "POST":
            # RFC 8058: the mail provider POSTs `List-Unsubscribe=One-Click` (urlencoded or
            # multipart), with no cookie and no CSRF token: the signed token is the authority.
            one_click = await _is_one_click(request)
            method = "one-click" if one_click else "link"
            origin = consent.Origin(
                "web", method, _client(request), request.headers.get("user-agent")
            )
            left = await self.leaving.submit(subscribers.Leaving(token, origin, now))
            if isinstance(left, tokens.TokenError):
                return self._invalid()
            if one_click:
                return PlainTextResponse("Unsubscribed.\n")
            return self.pages.page("unsubscribed", token_page=True, left=left)
        try:
            person = await run_in_threadpool(
                preferences.holder, self.site, "unsubscribe", token, now=now
            )
        except tokens.TokenError:
            return self._invalid()
        active = {c.slug for c in person.choices if c.active}
        named = [slug for slug in person.named if slug in active]
        return self.pages.page(
            "unsubscribe", token_page=True, email=person.email, lists=person.names(named)
        )

    async def preferences(self, request: Request) -> Response:
        token = request.path_params["token"]
        now = self.clock()
        try:
            if request.method == "POST":
                return await self._change_preferences(request, token, now)
            return await self._preferences_page(token, now)
        except tokens.TokenError:
            return self._invalid()

    async def _preferences_page(
        self, token: str, now: datetime, status: int = 200, notice: str = "", error: str = ""
    ) -> Response:
        person = await run_in_threadpool(
            preferences.holder, self.site, "preferences", token, now=now
        )
        return self.pages.page(
            "preferences",
            status,
            token_page=True,
            email=person.email,
            choices=person.choices,
            notice=notice,
            error=error,
        )

    async def _change_preferences(self, request: Request, token: str, now: datetime) -> Response:
        form = await _form_data(request)
        action = form.get("action")
        who = {"ip": _client(request), "user_agent": request.headers.get("user-agent")}
        if action == "save":
            wanted = [str(v) for v in form.getlist("lists")]
            try:
                choice = await self.write(
                    lambda: preferences.choose(self.site, token, wanted, now=now, **who)
                )
            except subscribers.InvalidInput as exc:
                return await self._preferences_page(token, now, 400, error=str(exc))
            except tokens.TokenError:
                raise
            except (RelayError, ConfigError) as exc:  # the relay, or the DKIM key
                log.warning("preferences: confirmation email not sent: %s", exc)
                return await self._preferences_page(
                    token, now, notice="Saved, but the confirmation email could not be sent."
                )
            page = await self._preferences_page(token, now, notice=_saved(choice))
            if choice.welcomes:
                page.background = BackgroundTask(self.welcome)
            return page
        if action == "leave":
            await self.write(lambda: preferences.leave_all(self.site, token, now=now, **who))
            return await self._preferences_page(
                token, now, notice="You have left every list. You will get no more emails."
            )
        if action == "download":
            data = await run_in_threadpool(preferences.export, self.site, token, now=now)
            return Response(
                json.dumps(data, indent=2, ensure_ascii=False),
                media_type="application/json",
                headers={"Content-Disposition": 'attachment; filename="my-data.json"'},
            )
        if action == "erase":
            person = await run_in_threadpool(
                preferences.holder, self.site, "preferences", token, now=now
            )
            return self.pages.page("erase", token_page=True, email=person.email)
        if action == "erase-confirmed":
            await self.write(preferences.erase, self.site, token, now=now)
            return self.pages.message(
                "Your data has been erased",
                "We have deleted your address, your name and your subscriptions. We keep only a "
                "one-way fingerprint of the address so that nobody can add it again without you.",
                token_page=True,
            )
        return await self._preferences_page(token, now, 400, error="Unknown action.")

    # -- archive and feeds ---------------------------------------------------------------------

    async def issue(self, request: Request) -> Response:
        published = await self._published(request)
        return HTMLResponse(
            published.page_html, headers={"Content-Security-Policy": page_csp(published.page_html)}
        )

    async def ics(self, request: Request) -> Response:
        published = await self._published(request)
        data = published.ics.get(f"{request.path_params['name']}.ics")
        if data is None:
            raise HTTPException(404)
        return Response(data, media_type="text/calendar; charset=utf-8")

    async def image(self, request: Request) -> Response:
        address = f"images/{request.path_params['digest']}/{request.path_params['name']}"
        found = await run_in_threadpool(self.archive.image, address)
        if found is None:
            raise HTTPException(404)
        path, media_type = found
        # The address changes with the content (images.py): a cache may keep it for ever.
        immutable = {"Cache-Control": "public, max-age=31536000, immutable"}
        return FileResponse(path, media_type=media_type, headers=immutable)

    async def _published(self, request: Request) -> Published:
        found = await run_in_threadpool(self.archive.get, request.path_params["slug"])
        if found is None:
            raise HTTPException(404)
        return found

    async def rss(self, request: Request) -> Response:
        issues = await run_in_threadpool(self.archive.issues)
        return _xml(feeds.rss(self.site.config, issues), "application/rss+xml")

    async def atom(self, request: Request) -> Response:
        issues = await run_in_threadpool(self.archive.issues)
        return _xml(feeds.atom(self.site.config, issues), "application/atom+xml")

    async def list_feed(self, request: Request) -> Response:
        slug = request.path_params["slug"]
        lists = await run_in_threadpool(preferences.public_lists, self.site)
        public = {row.slug: row.name for row in lists}
        if slug not in public:  # a private list's feed would say what was sent to it
            raise HTTPException(404)
        issues = await run_in_threadpool(self.archive.sent_to, slug)
        path = f"/lists/{slug}/feed.xml"
        return _xml(feeds.rss(self.site.config, issues, path, public[slug]), "application/rss+xml")

    # -- the rest ------------------------------------------------------------------------------

    async def stylesheet(self, request: Request) -> Response:
        return Response(
            self.style,
            media_type="text/css",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    async def theme_file(self, request: Request) -> Response:
        """The logo and the link icons that emails and pages show (theme.py: why from here)."""
        data = self.theme_files.get(request.url.path.removeprefix(self.pages.root).lstrip("/"))
        if data is None:
            raise HTTPException(404)
        kind = mimetypes.guess_type(request.path_params["name"])[0] or "application/octet-stream"
        return Response(data, media_type=kind, headers={"Cache-Control": "public, max-age=86400"})

    async def health(self, request: Request) -> Response:
        return PlainTextResponse("ok\n")

    async def http_error(self, request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status == 404:
            twin = slash_twin(request.app.router.routes, request.scope)
            if twin is not None:
                return self._redirect(twin, request.scope["query_string"])
            return self.pages.message("Page not found", "There is no page at this address.", 404)
        response = self.pages.message("Not allowed", "This request is not allowed here.", status)
        if isinstance(exc, HTTPException) and exc.headers:
            response.headers.update(exc.headers)  # a 405's Allow (RFC 9110 section 15.5.6)
        return response

    def _redirect(self, path: str, query: bytes) -> Response:
        """To PATH under site.base_url's path, with no host: Starlette's own slash redirect
        builds the address from the request's Host header, which anyone can write."""
        target = self.pages.root + "/" + path.lstrip("/")
        return RedirectResponse(target + (f"?{query.decode('latin-1')}" if query else ""))


def slash_twin(routes: list[BaseRoute], scope: Scope) -> str | None:
    """The request's path with its trailing slash added or taken away, if a route answers
    that path instead (`/issues/SLUG` for `/issues/SLUG/`)."""
    path = str(scope["path"])
    if path == "/":
        return None
    twin = path.rstrip("/") if path.endswith("/") else path + "/"
    probe = {**scope, "path": twin}
    if any(route.matches(probe)[0] is not Match.NONE for route in routes):
        return twin
    return None


def page_csp(html: str) -> str:
    """The CSP for an issue's page: its one inline <style> allowed by hash, still no script."""
    hashes = []
    for style in re.findall(r"<style>(.*?)</style>", html, re.DOTALL):
        digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
        hashes.append(f"'sha256-{digest}'")
    return CSP_HEADER.replace("style-src 'self'", " ".join(["style-src 'self'", *hashes]))


def _xml(data: bytes, kind: str) -> Response:
    return Response(data, media_type=f"{kind}; charset=utf-8")


def _saved(choice: preferences.Choice) -> str:
    parts = ["Saved."]
    if choice.left:
        parts.append(f"You have left {len(choice.left)} list(s).")
    if choice.confirmation_sent:
        parts.append("We have sent you an email: open its link to confirm the new lists.")
    elif choice.joined:
        parts.append("You asked to join new lists.")
    return " ".join(parts)


async def _is_one_click(request: Request) -> bool:
    """Whether the POSTed form is RFC 8058's `List-Unsubscribe=One-Click`. Providers send
    exactly that urlencoded body, recognised as it is (a form parser costs as much as the rest
    of the request); any other body, multipart included, goes through the parser."""
    urlencoded = request.headers.get("content-type", "").startswith(URLENCODED)
    if urlencoded and await request.body() == ONE_CLICK_BODY:
        return True
    form = await _form_data(request)
    return form.get(ONE_CLICK[0]) == ONE_CLICK[1]


async def _form_data(request: Request) -> FormData:
    """The POSTed form, urlencoded or multipart; no files, few fields."""
    try:
        return await request.form(max_files=0, max_fields=100)
    except (HTTPException, ValueError, KeyError):
        return FormData()


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def routes(web: Web) -> list[BaseRoute]:
    return [
        Route("/", web.index, methods=["GET"]),
        Route("/subscribe", web.subscribe_page, methods=["GET", "POST"]),  # one Allow for both
        Route("/confirm/{token}", web.confirm, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["GET", "POST"]),
        Route("/preferences/{token}", web.preferences, methods=["GET", "POST"]),
        Route("/issues/{slug}/", web.issue, methods=["GET"]),
        Route("/issues/{slug}/{name}.ics", web.ics, methods=["GET"]),
        Route("/images/{digest}/{name}", web.image, methods=["GET"]),
        Route("/feed.xml", web.rss, methods=["GET"]),
        Route("/atom.xml", web.atom, methods=["GET"]),
        Route("/lists/{slug}/feed.xml", web.list_feed, methods=["GET"]),
        Route("/style.css", web.stylesheet, methods=["GET"]),
        Route("/theme/{name}", web.theme_file, methods=["GET"]),
        Route("/theme/icons/{name}", web.theme_file, methods=["GET"]),
        Route("/healthz", web.health, methods=["GET"]),
    ]


def create_app(site: Site, *, clock: Clock = utcnow) -> Starlette:
    """The web app of SITE. Checks the secret key and brings the lists in step with lists.toml
    first, so a misconfigured site fails at start-up with one clear line."""
    site.config.secret_key  # noqa: B018 -- raises ConfigError naming the setting when unset
    lists.sync(site)
    pages.refuse_broken(site, clock())  # a mistake in the site's templates/, at its line
    web = Web(site, clock)
    app = Starlette(
        routes=routes(web),
        middleware=[Middleware(SecurityHeaders)],
        exception_handlers={HTTPException: web.http_error},
    )
    app.router.redirect_slashes = False  # it trusts the Host header: http_error redirects
    return app


def static_files(site: Site, now: datetime) -> dict[str, bytes | Path]:
    """The public part of the web side as files (`newsroom build`): index, issue pages and their
    calendar files, feeds, per-list feeds, the stylesheet, the images' copies (files in the
    site's image cache), the theme's logo and icons. The subscribe form itself stays on `newsroom serve` (it needs a CSRF
    cookie): the static index links to /subscribe."""
    pages.refuse_broken(site, now)  # a mistake in the site's templates/, at its line
    archive = Archive(site, lambda: now)
    issues = archive.issues()
    config = site.config
    files: dict[str, bytes | Path] = {
        "index.html": Pages(site).html("index", issues=issues, dynamic=False).encode(),
        "style.css": stylesheet(site).encode(),
        "feed.xml": feeds.rss(config, issues),
        "atom.xml": feeds.atom(config, issues),
        **config.theme.files(),  # the logo and icons emails show, at site.base_url
    }
    for published in issues:
        files[f"issues/{published.slug}/index.html"] = published.page_html.encode()
        for name, data in published.ics.items():
            files[f"issues/{published.slug}/{name}"] = data
    for row in preferences.public_lists(site):
        path = f"lists/{row.slug}/feed.xml"
        sent = archive.sent_to(row.slug)
        files[path] = feeds.rss(config, sent, f"/{path}", row.name)
    files |= archive.image_files()
    return files
