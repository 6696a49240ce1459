"""`newsroom init`, `newsroom db upgrade` and opening a site's database."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import inspect, text

from newsroom import database
from newsroom import site as sites
from newsroom.cli.main import main
from newsroom.errors import NewsroomError
from newsroom.site import Site
from tests.conftest import Run


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_init_makes_a_complete_site(tmp_path: Path) -> None:
    root = tmp_path / "campaign"
    code, out, err = invoke("init", str(root), "--name", "Campaign News")
    assert code == 0, err
    for made in ("newsroom.toml", "subscribers/lists.toml", "issues/", ".env", ".gitignore"):
        assert f"created {root / made}" in out
    assert "database migrated to 0001" in out
    lists = (root / "subscribers" / "lists.toml").read_text()
    for slug in ("[all-members]", "[disability-group]", "[clp-secretaries]"):
        assert slug in lists
    assert 'name = "Campaign News"' in (root / "newsroom.toml").read_text()
    ignored = (root / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and "*.pem" in ignored  # secrets: the key file and DKIM keys
    site = Site.open(root)
    assert database.current_revision(site.engine) == database.head_revision()


def test_init_twice_changes_nothing_and_says_so(tmp_path: Path) -> None:
    root = tmp_path / "site"
    assert invoke("init", str(root))[0] == 0
    before = {
        p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "newsroom.db" not in p.name
    }
    code, out, _ = invoke("init", str(root))
    assert code == 0
    assert out.strip() == f"{root} is already a newsroom site: nothing to do."
    after = {
        p: p.read_bytes() for p in root.rglob("*") if p.is_file() and "newsroom.db" not in p.name
    }
    assert before == after


def test_init_refuses_a_file(tmp_path: Path) -> None:
    taken = tmp_path / "notes.txt"
    taken.write_text("mine", encoding="utf-8")
    code, _, err = invoke("init", str(taken))  # click's own check of the argument
    assert code == 2 and f"Directory '{taken}' is a file." in err
    with pytest.raises(NewsroomError, match="is a file, not a folder"):
        sites.init(taken)  # the library's, for code that builds on it
    assert taken.read_text(encoding="utf-8") == "mine"


def test_init_refuses_a_folder_holding_a_different_site(tmp_path: Path) -> None:
    root = tmp_path / "site"
    invoke("init", str(root), "--name", "Socialist Network")
    code, _, err = invoke("init", str(root), "--name", "Disability Group News")
    assert code == 1
    assert "holds a different site ('Socialist Network', not 'Disability Group News')" in err
    assert "Traceback" not in err


def test_init_refuses_a_folder_with_another_sites_lists(tmp_path: Path) -> None:
    (tmp_path / "subscribers").mkdir()
    (tmp_path / "subscribers" / "lists.toml").write_text("[x]\nname='x'\n")
    code, _, err = invoke("init", str(tmp_path))
    assert code == 1
    assert "already holds files of another site" in err
    assert not (tmp_path / "newsroom.toml").exists()


def test_init_with_a_broken_existing_config_reports_its_line(tmp_path: Path) -> None:
    (tmp_path / "newsroom.toml").write_text("[site]\nname = \n")
    code, _, err = invoke("init", str(tmp_path))
    assert code == 1
    assert err.startswith("Error: newsroom.toml:2: ")
    assert not (tmp_path / "issues").exists()


def test_db_upgrade_on_a_current_database(cli: Run) -> None:
    result = cli("db", "upgrade")
    assert result.exit_code == 0, result.stderr
    assert "the database is up to date (0009)" in result.stdout


def test_db_upgrade_migrates_an_empty_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("init", str(tmp_path / "s"))
    monkeypatch.setenv("NEWSROOM_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    code, out, err = invoke("--site", str(tmp_path / "s"), "db", "upgrade")
    assert code == 0, err
    assert "applied 0001" in out


def test_unreachable_database_is_one_clear_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("init", str(tmp_path / "s"))
    monkeypatch.setenv("NEWSROOM_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    code, _, err = invoke("--site", str(tmp_path / "s"), "db", "upgrade")
    assert code == 1
    assert err.startswith(
        "Error: cannot open the database postgresql+psycopg://nobody@127.0.0.1:1/none"
    )
    assert len(err.strip().splitlines()) == 1


def test_not_a_database_url(tmp_path: Path) -> None:
    with pytest.raises(NewsroomError, match="database.url: 'newsroom.db' is not a database URL"):
        database.connect("newsroom.db")


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: Path) -> None:
    engine = database.connect(f"sqlite:///{tmp_path / 'x.db'}")
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_the_site_database_has_every_table(site: Site) -> None:
    tables = set(inspect(site.engine).get_table_names())
    assert {
        "lists",
        "subscribers",
        "subscriptions",
        "consent_events",
        "mailings",
        "deliveries",
    } <= tables


def test_commands_without_a_site_say_run_init(tmp_path: Path) -> None:
    code, _, err = invoke("--site", str(tmp_path), "settings")
    assert code == 1
    assert "no newsroom.toml in" in err and "newsroom init" in err


def test_postgres_url_is_used_when_set(site: Site) -> None:
    backend = site.engine.dialect.name
    assert backend == ("postgresql" if os.environ.get("NEWSROOM_TEST_POSTGRES_URL") else "sqlite")
