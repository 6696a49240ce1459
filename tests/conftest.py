"""The test rig every test uses: a temporary site, the database (SQLite, or PostgreSQL when
NEWSROOM_TEST_POSTGRES_URL is set), a real SMTP server that can be told to fail, and the CLI."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from newsroom import site as sites
from newsroom.cli.main import main
from newsroom.models import Base
from newsroom.site import Site
from tests.sendhelp import Workers
from tests.smtpserver import TestSMTPServer

POSTGRES_URL = os.environ.get("NEWSROOM_TEST_POSTGRES_URL", "")
TEST_SECRET = "test-secret-key-not-for-production"


@pytest.fixture(autouse=True)
def hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NEWSROOM_* setting of the developer's shell leaks into a test."""
    for name in list(os.environ):
        if name.startswith("NEWSROOM_") and name != "NEWSROOM_TEST_POSTGRES_URL":
            monkeypatch.delenv(name)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not POSTGRES_URL:
        pytest.skip("NEWSROOM_TEST_POSTGRES_URL is not set")
    name = f"newsroom_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database of one test: a new SQLite file, or the session's PostgreSQL database emptied
    after the test."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path / 'newsroom.db'}"
        return
    url = request.getfixturevalue("postgres_database")
    yield url
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        if conn.execute(text("SELECT to_regclass('lists')")).scalar() is not None:
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def site_dir(tmp_path: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A freshly initialised site folder, its database migrated. It is a local test site
    (`site.local`): its mailings go to the tests' own SMTP servers with the placeholder settings
    of a new site; the tests of that refusal set NEWSROOM_SITE_LOCAL=false."""
    root = tmp_path / "site"
    monkeypatch.setenv("NEWSROOM_DATABASE_URL", database_url)
    monkeypatch.setenv("NEWSROOM_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("NEWSROOM_SITE_LOCAL", "true")
    sites.init(root, "Test Newsroom")
    return root


@pytest.fixture
def site(site_dir: Path) -> Iterator[Site]:
    opened = Site.open(site_dir)
    yield opened
    opened.close()


EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "issues"


@pytest.fixture
def examples(site: Site) -> Path:
    """The project's example issues, and the files they name, copied into the site's issues/
    (where every file an issue names must be); returns that folder."""
    for example in EXAMPLES_DIR.iterdir():
        shutil.copy(example, site.issues_dir / example.name)
    return site.issues_dir


@pytest.fixture
def smtp_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestSMTPServer]:
    """A real SMTP server on 127.0.0.1; the site's smtp.host and smtp.port point at it."""
    server = TestSMTPServer().start()
    monkeypatch.setenv("NEWSROOM_SMTP_HOST", server.host)
    monkeypatch.setenv("NEWSROOM_SMTP_PORT", str(server.port))
    yield server
    server.stop()


@pytest.fixture
def workers(site_dir: Path) -> Iterator[Workers]:
    """Starts `newsroom worker` processes of the test's site; kills any the test left."""
    team = Workers(site_dir)
    yield team
    team.close()


CHROMIUM = "/usr/bin/chromium"  # Debian's: the project never downloads a browser of its own
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",  # the machine has no network: don't let it try
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright; skipped without it, except in CI where it fails."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: CI must run the browser tests")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


Run = Callable[..., Result]


@pytest.fixture
def cli(site_dir: Path) -> Run:
    """Run `newsroom --site SITE ARGS...` in-process; returns click's Result. With `now`, the
    command runs at that time (the CLI's clock), so that nothing depends on today's date."""

    def run(*args: str, input: str | None = None, now: datetime | None = None) -> Result:
        clock = (lambda: now) if now is not None else None
        return CliRunner().invoke(main, ["--site", str(site_dir), *args], input=input, obj=clock)

    return run


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed TLS certificate for localhost and 127.0.0.1, and its key (PEM files)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, bytes]:
    """A 2048-bit RSA key (PEM) and the DNS TXT record that publishes its public half."""
    key = tmp_path_factory.mktemp("dkim") / "key.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return key.read_bytes(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
