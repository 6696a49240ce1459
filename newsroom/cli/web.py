"""`newsroom serve` (the web side on uvicorn), `newsroom build` (its public part as files), and
the local pages a volunteer reads on their own machine: `newsroom inbox` and `preview --serve`."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path
from typing import Any

import click

from newsroom.cli.common import State, pass_state
from newsroom.errors import NewsroomError
from newsroom.people import lists
from newsroom.web import archive
from newsroom.web.app import create_app, static_files
from newsroom.web.security import redact_access_log


@click.command()
@click.option("--host", help="Address to listen on (default: the web.host setting).")
@click.option("--port", type=int, help="Port to listen on (default: the web.port setting).")
@pass_state
def serve(state: State, host: str | None, port: int | None) -> None:
    """Run the web side: archive, feeds, subscribe, confirm, unsubscribe, preferences.

    Put it behind a reverse proxy that terminates HTTPS; link tokens are kept out of its
    access log.

    \b
    Example:
      newsroom serve --host 127.0.0.1 --port 8000
    """
    import uvicorn

    site = state.site
    app = create_app(
        site, clock=state.clock
    )  # refuses to start without a secret key, or with bad lists
    host = host or site.config.text("web.host")
    port = port or site.config.integer("web.port")
    listening = listen(host, port)
    config = uvicorn.Config(
        app,
        proxy_headers=True,  # the client's address from X-Forwarded-For of a local proxy
        server_header=False,
    )
    redact_access_log()  # after uvicorn.Config, which sets its logging up
    shown = f"[{host}]" if ":" in host else host
    click.echo(
        f"serving {site.config.text('site.name')} on http://{shown}:{port} (Ctrl-C to stop)",
        err=True,
    )
    uvicorn.Server(config).run(sockets=[listening])


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on HOST:PORT, or a one-line error saying why not (uvicorn would log
    it among its start-up lines and exit with status 3)."""
    where = f"cannot listen on {host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise NewsroomError(
            f"{where}: no such host ({exc.strerror}): set --host or [web] host"
        ) from None
    # The protocol number matters: asyncio sets TCP_NODELAY only on sockets made with
    # IPPROTO_TCP, and without it an answer's second write waits out a delayed ACK (40 ms).
    listening = socket.socket(family, kind, proto)
    try:
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
        listening.listen(2048)  # uvicorn's own backlog
        return listening
    except OSError as exc:
        hint = {
            errno.EADDRINUSE: "another server is using that port: choose another with --port "
            "or [web] port",
            errno.EACCES: "ports below 1024 need root: use a higher one behind your proxy",
            errno.EADDRNOTAVAIL: "this machine has no such address: try 127.0.0.1 or 0.0.0.0",
        }.get(exc.errno or 0, "")
        listening.close()
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        raise NewsroomError(f"{where}: {reason}" + (f"; {hint}" if hint else "")) from None


def run_local(app: Any, host: str, port: int, what: str) -> None:
    """Serve one of the local pages (the preview, the inbox) on HOST:PORT (0: a free port),
    printing where; no access log (the page asks for changes once a second)."""
    import uvicorn

    from newsroom.web.frames import is_loopback

    listening = listen(host, port)
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{listening.getsockname()[1]}/"
    click.echo(f"{what} on {url} (Ctrl-C to stop)", err=True)
    if not is_loopback(host):
        click.echo(
            f"warning: listening on {host}: anyone who can reach this machine can read it",
            err=True,
        )
    config = uvicorn.Config(app, access_log=False, server_header=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[listening])


@click.command()
@click.option(
    "--maildir",
    type=click.Path(path_type=Path),
    help="The Maildir `newsroom dev-smtp` keeps messages in (default: maildir/ in the site).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=0, help="Port to listen on (default: a free one).")
@pass_state
def inbox(state: State, maildir: Path | None, host: str, port: int) -> None:
    """Show what `newsroom dev-smtp` received on a local web page: HTML, text and headers.

    Lists the messages in its Maildir, newest first, and shows each one: its HTML part (run in
    a sandbox: no script, nothing loaded from elsewhere) at phone or desktop width, light or
    dark, its text part and its headers. New messages appear as they arrive.

    \b
    Example:
      newsroom inbox --port 8002
    """
    from newsroom.web import inbox as inboxes

    folder = maildir if maildir is not None else state.site.root / "maildir"
    if folder.exists() and not folder.is_dir():
        raise NewsroomError(f"{folder} is a file, not a Maildir folder: give --maildir DIR")
    run_local(inboxes.create_app(folder, host), host, port, f"the inbox of {folder}")


@click.command()
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder to write the site into (empty, new, or an earlier build).",
)
@pass_state
def build(state: State, out: Path) -> None:
    """Write the public archive and feeds as static files for any web host.

    The subscribe form, confirmation, unsubscribe and preference pages need `newsroom serve`:
    route /subscribe, /confirm/, /unsubscribe/ and /preferences/ to it.

    \b
    Example:
      newsroom build --out public/
    """
    site = state.site
    archive.check_out_folder(out)  # before any work: a wrong folder is refused at once
    archive.strict_issues(site)  # every problem of every issue, at once
    lists.sync(site)  # the per-list feeds follow lists.toml
    report = archive.build(site, out, static_files(site, state.now()))
    click.echo(f"wrote {report.files} files ({report.issues} issues) to {report.out}")
