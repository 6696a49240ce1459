"""Settings: newsroom.toml, environment overrides, secrets, and errors that name the key."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from newsroom import settings
from newsroom.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "newsroom.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_defaults_file_and_environment_in_that_order(tmp_path: Path) -> None:
    write(tmp_path, '[site]\nname = "Socialist Network"\n[smtp]\nport = 2525\n')
    config = settings.load(tmp_path, {"NEWSROOM_SMTP_PORT": "2626"})
    assert config.text("site.name") == "Socialist Network"
    assert config.sources["site.name"] == "newsroom.toml"
    assert config.integer("smtp.port") == 2626
    assert config.sources["smtp.port"] == "environment"
    assert config.text("site.lang") == "en-GB"
    assert config.sources["site.lang"] == "default"


def test_env_file_sits_between_file_and_environment(tmp_path: Path) -> None:
    write(tmp_path, "")
    (tmp_path / ".env").write_text(
        "# secrets\nNEWSROOM_SECRET_KEY='from-dotenv'\nNEWSROOM_SMTP_TIMEOUT=5\n"
    )
    config = settings.load(tmp_path, {"NEWSROOM_SMTP_TIMEOUT": "7.5"})
    assert config.secret_key == "from-dotenv"
    assert config.sources["secret.key"] == ".env"
    assert config.number("smtp.timeout") == 7.5


def test_malformed_toml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path, '[site]\nname = "ok"\nlang = en-GB\n')
    with pytest.raises(ConfigError, match=r"^newsroom.toml:3: "):
        settings.load(tmp_path, {})


def test_unknown_setting_names_line_and_lists_known_keys(tmp_path: Path) -> None:
    write(tmp_path, '[site]\nname = "x"\n\n[smtp]\nhots = "mail.example.org"\n')
    with pytest.raises(ConfigError) as info:
        settings.load(tmp_path, {})
    assert str(info.value).startswith(
        "newsroom.toml:5: unknown setting smtp.hots; [smtp] takes: host, port"
    )


def test_unknown_section(tmp_path: Path) -> None:
    write(tmp_path, "[mailchimp]\nkey = 1\n")
    with pytest.raises(ConfigError, match=r"^newsroom.toml:1: unknown section \[mailchimp\]"):
        settings.load(tmp_path, {})


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    write(tmp_path, '[smtp]\nport = "twenty-five"\n')
    with pytest.raises(ConfigError) as info:
        settings.load(tmp_path, {})
    assert str(info.value) == "newsroom.toml:2: smtp.port must be a whole number, not 'twenty-five'"


def test_bool_is_not_a_number(tmp_path: Path) -> None:
    write(tmp_path, "[smtp]\nconnections = true\n")
    with pytest.raises(ConfigError, match="smtp.connections must be a whole number"):
        settings.load(tmp_path, {})


def test_bad_choice_and_bad_check(tmp_path: Path) -> None:
    write(tmp_path, '[smtp]\nsecurity = "ssl"\n')
    with pytest.raises(
        ConfigError, match="smtp.security must be one of none, starttls, tls, not 'ssl'"
    ):
        settings.load(tmp_path, {})
    write(tmp_path, '[sending]\nrate = "fast"\n')
    with pytest.raises(
        ConfigError, match=r"newsroom.toml:2: sending.rate must look like 600/minute"
    ):
        settings.load(tmp_path, {})
    write(tmp_path, '[site]\nbase_url = "news.example.org"\n')
    with pytest.raises(ConfigError, match="site.base_url must be an http"):
        settings.load(tmp_path, {})


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    write(tmp_path, "")
    with pytest.raises(ConfigError) as info:
        settings.load(tmp_path, {"NEWSROOM_SMTP_PORT": "abc"})
    assert str(info.value) == "NEWSROOM_SMTP_PORT: smtp.port must be a whole number, not 'abc'"


def test_secret_in_file_is_refused_with_what_to_do(tmp_path: Path) -> None:
    write(tmp_path, '[smtp]\nhost = "x"\npassword = "hunter2"\n')
    with pytest.raises(ConfigError) as info:
        settings.load(tmp_path, {})
    message = str(info.value)
    assert message.startswith("newsroom.toml:3: smtp.password is a secret")
    assert "NEWSROOM_SMTP_PASSWORD" in message
    assert "hunter2" not in message


def test_missing_secret_key_says_how_to_make_one(tmp_path: Path) -> None:
    config = settings.load(write(tmp_path, ""), {})
    with pytest.raises(ConfigError, match="no secret key: set NEWSROOM_SECRET_KEY.*newsroom init"):
        _ = config.secret_key


def test_missing_config_file_says_run_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no newsroom.toml in .*run `newsroom init"):
        settings.load(tmp_path, {})


def test_relative_sqlite_path_lives_in_the_site(tmp_path: Path) -> None:
    config = settings.load(write(tmp_path, ""), {})
    assert config.database_url == f"sqlite:///{tmp_path.resolve()}/newsroom.db"
    pg = "postgresql+psycopg://u@db/news"
    assert settings.load(tmp_path, {"NEWSROOM_DATABASE_URL": pg}).database_url == pg


def test_rendered_toml_lists_every_setting_and_parses(tmp_path: Path) -> None:
    text = settings.render_toml({"site.name": 'The "Quoted" Network'})
    for setting in settings.SETTINGS:
        assert (f"# {setting.key} = " in text or f"{setting.key} = " in text) != setting.secret
    write(tmp_path, text)
    assert settings.load(tmp_path, {}).text("site.name") == 'The "Quoted" Network'


def test_every_setting_has_help_and_a_default_of_its_type() -> None:
    for setting in settings.SETTINGS:
        assert setting.help, setting.name
        assert isinstance(setting.default, setting.type), setting.name


def test_env_file_written_by_init_is_private(site_dir: Path) -> None:
    mode = stat.S_IMODE((site_dir / ".env").stat().st_mode)
    assert mode == 0o600
    assert "NEWSROOM_SECRET_KEY=" in (site_dir / ".env").read_text()


def test_files_that_are_not_utf8_or_name_no_time_zone_are_one_line(site_dir: Path) -> None:
    from click.testing import CliRunner

    from newsroom.cli.main import main

    def run() -> tuple[int, str]:
        result = CliRunner().invoke(main, ["--site", str(site_dir), "settings"])
        return result.exit_code, result.output

    toml = site_dir / "newsroom.toml"
    toml.write_bytes(b'[site]\nname = "Caf\xe9 Socialists"\n')
    assert run() == (
        1,
        "newsroom.toml:2: not UTF-8 (byte 0xE9 at column 12): save the file as UTF-8\n",
    )
    toml.write_text('[site]\ntimezone = "Mars/Olympus"\n', encoding="utf-8")
    assert run() == (
        1,
        "Error: newsroom.toml:2: site.timezone must be a time zone name, such as Europe/London\n",
    )
    toml.write_text("", encoding="utf-8")
    (site_dir / ".env").write_bytes(b"NEWSROOM_SMTP_USERNAME=ren\xe9\n")
    assert run() == (1, ".env:1: not UTF-8 (byte 0xE9 at column 27): save the file as UTF-8\n")
    (site_dir / ".env").write_text("", encoding="utf-8")
    (site_dir / "subscribers" / "lists.toml").write_bytes(b'[a]\nname = "\xe9"\n')
    lists = CliRunner().invoke(main, ["--site", str(site_dir), "lists"])
    assert (lists.exit_code, lists.output) == (
        1,
        "subscribers/lists.toml:2: not UTF-8 (byte 0xE9 at column 9): save the file as UTF-8\n",
    )


@pytest.mark.parametrize("name", ["sending.rate", "web.subscribe_rate"])
def test_a_rate_of_nothing_is_refused_where_it_is_set(tmp_path: Path, name: str) -> None:
    """One reading of `N/minute` for every rate (issue #13): `0/minute` used to pass the
    settings and fail only when a sender or the web side read it."""
    section, key = name.split(".")
    write(tmp_path, f'[{section}]\n{key} = "0/minute"\n')
    with pytest.raises(ConfigError) as info:
        settings.load(tmp_path, {})
    assert str(info.value) == (
        f"newsroom.toml:2: {name} must look like 600/minute (a number above 0, then /second, "
        "/minute or /hour)"
    )


def test_the_sync_removal_limit_is_a_fraction(tmp_path: Path) -> None:
    write(tmp_path, "[subscribe]\nsync_max_removal = 10\n")
    with pytest.raises(ConfigError) as info:
        settings.load(tmp_path, {})
    assert str(info.value) == (
        "newsroom.toml:2: subscribe.sync_max_removal must be between 0 and 1 (0.1 is 10 %)"
    )
    write(tmp_path, "[subscribe]\n# sync_max_removal = 0.1\n")
    assert (
        settings.load(tmp_path, {"NEWSROOM_SUBSCRIBE_SYNC_MAX_REMOVAL": "0.25"}).number(
            "subscribe.sync_max_removal"
        )
        == 0.25
    )
