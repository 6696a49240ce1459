"""The one table of settings: read from newsroom.toml, overridden by NEWSROOM_<SECTION>_<KEY>."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from newsroom import textfiles
from newsroom import theme as themes
from newsroom.errors import ConfigError, Problem

CONFIG_FILE = "newsroom.toml"
ENV_FILE = ".env"
MAX_FILE_BYTES = 1024 * 1024  # newsroom.toml, .env: a few KB; never read a huge file whole


def _url(value: Any) -> str | None:
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "must be an http:// or https:// address, such as https://news.example.org"
    return None


RATE = re.compile(r"\s*(\d+)\s*/\s*(second|minute|hour)\s*")
UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0}


def parse_rate(text: str) -> tuple[int, float] | None:
    """`N/second|minute|hour` as (N, the window in seconds); None unless N is above 0. The one
    reading of a rate: sending.rate, sending.domain_rates and web.subscribe_rate all use it, so
    that a setting this accepts is never refused later (`0/minute` once passed here)."""
    match = RATE.fullmatch(text)
    if not match or int(match.group(1)) == 0:
        return None
    return int(match.group(1)), UNITS[match.group(2)]


def _rate(value: Any) -> str | None:
    if parse_rate(str(value)) is None:
        return "must look like 600/minute (a number above 0, then /second, /minute or /hour)"
    return None


def _zone(value: Any) -> str | None:
    try:
        ZoneInfo(str(value))
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return "must be a time zone name, such as Europe/London"
    return None


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _days_or_zero(value: Any) -> str | None:
    return None if value >= 0 else "must be a number of days, or 0 to keep them for good"


def _fraction(value: Any) -> str | None:
    return None if 0 <= value <= 1 else "must be between 0 and 1 (0.1 is 10 %)"


@dataclass(frozen=True)
class Setting:
    """One row of the settings table."""

    section: str
    key: str
    type: type
    default: Any
    help: str
    secret: bool = False  # only from the environment or .env, never newsroom.toml
    choices: tuple[str, ...] = ()
    check: Callable[[Any], str | None] | None = None

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"NEWSROOM_{self.section.upper()}_{self.key.upper()}"


S = Setting
SETTINGS: tuple[Setting, ...] = (
    S("site", "name", str, "Our Newsroom", "Name shown in every email, web page and feed"),
    S("site", "base_url", str, "http://localhost:8000", "Public address of the web side; links in emails point here", check=_url),
    S("site", "lang", str, "en-GB", "Language of the content (BCP 47), set as <html lang>"),
    S("site", "timezone", str, "Europe/London", "Time zone of issue dates and meeting times that do not name one", check=_zone),
    S("site", "sender", str, "Newsroom <newsroom@example.org>", "From: address of every email"),
    S("site", "reply_to", str, "", "Reply-To: address (empty: replies go to the sender)"),
    S("site", "postal_address", str, "", "Who sends the emails, shown in every footer"),
    S("site", "description", str, "News from our campaign", "One line describing the site, for feeds and the archive"),
    S("site", "local", bool, False, "This site is for local testing and training only: mailings may go out with placeholder settings to any relay"),
    S("database", "url", str, "sqlite:///newsroom.db", "SQLAlchemy URL; relative SQLite paths are inside the site folder"),
    S("smtp", "host", str, "localhost", "SMTP relay host (the default matches `newsroom dev-smtp`)"),
    S("smtp", "port", int, 8025, "SMTP relay port", check=_positive),
    S("smtp", "security", str, "none", "Transport security: none, starttls or tls", choices=("none", "starttls", "tls")),
    S("smtp", "username", str, "", "SMTP login name (empty: no login)"),
    S("smtp", "password", str, "", "SMTP password", secret=True),
    S("smtp", "connections", int, 4, "SMTP connections open at once while sending", check=_positive),
    S("smtp", "timeout", float, 30.0, "Seconds to wait for the relay before giving up on a command", check=_positive),
    S("sending", "rate", str, "600/minute", "Most messages the site sends per second, minute or hour, all its senders together", check=_rate),
    S("sending", "domain_rates", str, "", "Per-domain limits, e.g. 'gmail.com=100/minute, outlook.com=60/minute'"),
    S("sending", "retry_hours", float, 48.0, "How long deferred (4xx) deliveries are retried", check=_positive),
    S("sending", "retry_first", float, 300.0, "Seconds before a deferred delivery's first retry; each later one waits twice as long (×0.5–1.5), at most 6 hours", check=_positive),
    S("sending", "max_consecutive_errors", int, 10, "Errors in a row that pause a mailing", check=_positive),
    S("sending", "batch", int, 100, "Deliveries a sender claims at once, their outcomes committed together (sending.journal off: after a crash at most this many per sender are uncertain)", check=_positive),
    S("sending", "journal", bool, True, "Journal each message as it is handed to the relay, so a crash leaves at most one per connection uncertain (false: a whole batch)"),
    S("sending", "processes", int, 1, "Sender processes `newsroom send` and `newsroom worker` run on this machine", check=_positive),
    S("sending", "bounce_address", str, "bounces@example.org", "Envelope sender; a signed token is added to its local part (VERP)"),
    S("subscribe", "confirm_hours", float, 72.0, "How long a confirmation link stays valid", check=_positive),
    S("subscribe", "consent_text", str, "I want to receive emails from {site} on the lists I chose. I can leave at any time with the link in every email.", "The consent statement shown on the subscribe page and recorded with every consent"),
    S("subscribe", "consent_version", str, "1", "Version of the consent text; change it whenever the text changes"),
    S("subscribe", "sync_max_removal", float, 0.1, "Largest share of a list `subscribers import --sync` unsubscribes without --yes (a truncated file cannot empty a list)", check=_fraction),
    S("web", "host", str, "127.0.0.1", "Address `newsroom serve` listens on"),
    S("web", "port", int, 8000, "Port `newsroom serve` listens on", check=_positive),
    S("web", "subscribe_rate", str, "10/hour", "Most subscribe requests per client address", check=_rate),
    S("dkim", "domain", str, "", "DKIM signing domain (d=); empty: no signature"),
    S("dkim", "selector", str, "", "DKIM selector (s=)"),
    S("dkim", "key_file", str, "", "Path to the DKIM private key (PEM), relative to the site folder"),
    S("bounces", "hard_score", float, 1.0, "Score of a permanent failure"),
    S("bounces", "soft_score", float, 0.5, "Score of a temporary failure (at most once a day)"),
    S("bounces", "threshold", float, 3.0, "Score within the window that marks a subscription bounced", check=_positive),
    S("bounces", "window_days", int, 30, "Days over which bounce scores add up", check=_positive),
    S("bounces", "imap_password", str, "", "Password for an imaps:// bounce mailbox", secret=True),
    S("retention", "deliveries_days", int, 730, "Days after a mailing that its delivery records keep the address each went to; `newsroom subscribers prune` then removes it, keeping the counts (UK GDPR Art. 5(1)(e), storage limitation; 0: keep for good)", check=_days_or_zero),
    S("retention", "bounces_days", int, 180, "Days a bounce or complaint record keeps who it was about and the diagnostic; `newsroom subscribers prune` then deletes it, leaving only the count in its mailing's report (UK GDPR Art. 5(1)(e); at least bounces.window_days; 0: keep for good)", check=_days_or_zero),
    S("theme", "logo", str, "", "Logo shown with the name atop every email and page: a PNG, JPEG or GIF in the site folder, e.g. theme/logo.png (at most 256 KB)"),
    S("theme", "logo_height", int, 48, "Height of the logo in CSS pixels (a file twice as tall stays sharp on phones)", check=_positive),
    S("theme", "show_name", bool, True, "Show the site's name beside the logo (false: the logo alone, the name its alt text, for a logo that spells the name)"),
    S("theme", "font", str, themes.DEFAULT_FONT, "Font stack of emails and pages: fonts on readers' own devices, never a font host", check=themes.check_font),
    S("theme", "about", str, "", "One sentence about the group, in every footer", check=themes.check_about),
    S("theme", "links", str, "", "The group's other places, with icons in every footer: 'website=https://…, mastodon=https://…' (also bluesky, facebook, instagram, x, youtube, linkedin, tiktok)", check=themes.check_links),
    S("theme", "accent", str, "#b00020", "Colour of buttons and of the rule beside quotes", check=themes.check_colour),
    S("theme", "accent_text", str, "#ffffff", "Colour of the text on buttons", check=themes.check_colour),
    S("theme", "header", str, "#ffffff", "Background of the header with the logo and name (the background's colour: no band)", check=themes.check_colour),
    S("theme", "header_text", str, "#1a1a1a", "Colour of the site's name in the header", check=themes.check_colour),
    S("theme", "background", str, "#ffffff", "Background of the email's card and of the web pages", check=themes.check_colour),
    S("theme", "text", str, "#1a1a1a", "Colour of the text", check=themes.check_colour),
    S("theme", "muted", str, "#4d4d4d", "Colour of dates, labels and footers", check=themes.check_colour),
    S("theme", "link", str, "#b00020", "Colour of links", check=themes.check_colour),
    S("theme", "surround", str, "#f2f2f2", "Background around the email's card, behind its footer", check=themes.check_colour),
    S("theme", "dark_accent", str, "", "Dark mode: buttons (empty: theme.accent lightened to read on the dark background)", check=themes.check_derived_colour),
    S("theme", "dark_accent_text", str, "", "Dark mode: text on buttons (empty: whichever reads best)", check=themes.check_derived_colour),
    S("theme", "dark_header", str, "", "Dark mode: the header's background (empty: a coloured header stays, a plain one turns dark)", check=themes.check_derived_colour),
    S("theme", "dark_header_text", str, "", "Dark mode: the site's name in the header (empty: as the header needs)", check=themes.check_derived_colour),
    S("theme", "dark_background", str, "#1e1e1e", "Dark mode: background of the email's card and of the web pages", check=themes.check_colour),
    S("theme", "dark_text", str, "#eeeeee", "Dark mode: text", check=themes.check_colour),
    S("theme", "dark_muted", str, "#bdbdbd", "Dark mode: dates, labels and footers", check=themes.check_colour),
    S("theme", "dark_link", str, "", "Dark mode: links (empty: theme.link lightened to read on the dark background)", check=themes.check_derived_colour),
    S("theme", "dark_surround", str, "#121212", "Dark mode: background around the email's card", check=themes.check_colour),
    S("secret", "key", str, "", "Signs every token (links in emails); `newsroom init` writes one to .env", secret=True),
    S("secret", "old_keys", str, "", "Earlier secret keys, space-separated, still accepted for old links", secret=True),
)  # fmt: skip
del S

BY_NAME: dict[str, Setting] = {s.name: s for s in SETTINGS}
SECTIONS: dict[str, list[Setting]] = {}
for _s in SETTINGS:
    SECTIONS.setdefault(_s.section, []).append(_s)


class Config:
    """Settings of one site, resolved: defaults < newsroom.toml < .env < environment."""

    def __init__(self, site_dir: Path, values: Mapping[str, Any], sources: Mapping[str, str]):
        self.site_dir = site_dir
        self._values = dict(values)
        self.sources = dict(sources)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def text(self, name: str) -> str:
        return str(self._values[name])

    def integer(self, name: str) -> int:
        return int(self._values[name])

    def number(self, name: str) -> float:
        return float(self._values[name])

    @property
    def secret_key(self) -> str:
        key = self.text("secret.key")
        if not key:
            raise ConfigError(
                "no secret key: set NEWSROOM_SECRET_KEY in the environment or in .env "
                "(`newsroom init` writes one; or run: python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))')"
            )
        return key

    @property
    def database_url(self) -> str:
        """The database URL with a relative SQLite path made absolute inside the site folder."""
        url = self.text("database.url")
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
            return prefix + str(self.site_dir / url[len(prefix) :])
        return url

    def path(self, name: str) -> Path:
        return self.site_dir / self.text(name)

    def where(self, name: str) -> str:
        """Where setting NAME was set, for an error: `newsroom.toml:LINE`, the variable that set
        it, or `newsroom.toml` for a default."""
        source = self.sources.get(name, "default")
        if source == CONFIG_FILE:
            text = textfiles.read(self.site_dir / CONFIG_FILE, CONFIG_FILE, MAX_FILE_BYTES)
            section, _, key = name.partition(".")
            return f"{CONFIG_FILE}:{toml_line(text, section, key)}"
        return CONFIG_FILE if source == "default" else BY_NAME[name].env

    @cached_property
    def theme(self) -> themes.Theme:
        """The [theme]: colours contrast-checked, logo read (theme.py)."""
        return themes.Theme.from_config(self)


def load(site_dir: Path | str, environ: Mapping[str, str] | None = None) -> Config:
    """Read the site's newsroom.toml, then .env, then the environment."""
    site_dir = Path(site_dir).resolve()
    config_path = site_dir / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {site_dir}: run `newsroom init {site_dir}` to make a site"
        )
    environ = os.environ if environ is None else environ
    values = {s.name: s.default for s in SETTINGS}
    sources = {s.name: "default" for s in SETTINGS}
    for name, value in read_file(config_path).items():
        values[name], sources[name] = value, CONFIG_FILE
    for source, env in ((ENV_FILE, read_env_file(site_dir / ENV_FILE)), ("environment", environ)):
        for setting in SETTINGS:
            if setting.env in env:
                values[setting.name] = _from_env(setting, env[setting.env])
                sources[setting.name] = source
    config = Config(site_dir, values, sources)
    config.theme  # noqa: B018 -- a theme below WCAG AA contrast, or a bad logo, is an error now
    return config


def read_file(path: Path) -> dict[str, Any]:
    """Parse and check newsroom.toml; every error names the file, the line and the key."""
    text = textfiles.read(path, path.name, MAX_FILE_BYTES)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line, message = toml_error(exc, text)
        raise ConfigError(f"{path.name}:{line}: {message}") from None
    values: dict[str, Any] = {}
    for section, table in data.items():
        if section not in SECTIONS or not isinstance(table, dict):
            known = ", ".join(f"[{s}]" for s in SECTIONS)
            line = toml_line(text, section, None)
            raise ConfigError(
                f"{path.name}:{line}: unknown section [{section}]; known sections: {known}"
            )
        for key, value in table.items():
            values[f"{section}.{key}"] = _check_file_value(path.name, text, section, key, value)
    return values


def _check_file_value(file: str, text: str, section: str, key: str, value: Any) -> Any:
    where = f"{file}:{toml_line(text, section, key)}"
    setting = BY_NAME.get(f"{section}.{key}")
    if setting is None:
        known = ", ".join(s.key for s in SECTIONS[section])
        raise ConfigError(f"{where}: unknown setting {section}.{key}; [{section}] takes: {known}")
    if setting.secret:
        raise ConfigError(
            f"{where}: {setting.name} is a secret and must not be in {file}: "
            f"set {setting.env} in the environment or in .env instead"
        )
    ok = isinstance(value, setting.type) and not (setting.type is int and isinstance(value, bool))
    if setting.type is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(
            f"{where}: {setting.name} must be {_type_name(setting.type)}, not {value!r}"
        )
    return _validate(setting, value, where)


def _validate(setting: Setting, value: Any, where: str) -> Any:
    if setting.choices and value not in setting.choices:
        raise ConfigError(
            f"{where}: {setting.name} must be one of {', '.join(setting.choices)}, not {value!r}"
        )
    problem = setting.check(value) if setting.check else None
    if problem:
        raise ConfigError(f"{where}: {setting.name} {problem}")
    return value


def _from_env(setting: Setting, raw: str) -> Any:
    value: Any = raw
    try:
        if setting.type is bool:
            lowered = raw.strip().lower()
            if lowered not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(raw)
            value = lowered in ("1", "true", "yes", "on")
        elif setting.type in (int, float):
            value = setting.type(raw)
    except ValueError:
        raise ConfigError(
            f"{setting.env}: {setting.name} must be {_type_name(setting.type)}, not {raw!r}"
        ) from None
    return _validate(setting, value, setting.env)


def _type_name(kind: type) -> str:
    return {str: "text in quotes", int: "a whole number", float: "a number", bool: "true or false"}[
        kind
    ]


def toml_error(exc: tomllib.TOMLDecodeError, text: str) -> tuple[int, str]:
    """The line and message of a TOML syntax error (tomllib puts the line inside its text)."""
    match = re.search(r"\(at line (\d+), column \d+\)", str(exc))
    message = re.sub(r"\s*\(at (line|end).*\)", "", str(exc))
    return (int(match.group(1)) if match else max(1, len(text.splitlines()))), message


def key_problems(
    label: str, text: str, section: str, table: Mapping[str, Any], keys: Mapping[str, type]
) -> list[Problem]:
    """The keys of TOML table `[SECTION]` (in file LABEL, read from TEXT) that KEYS (name →
    type) does not know, or whose value is of another type, each at its line: the one check of
    lists.toml's and segments.toml's tables."""
    problems = []
    for key, value in table.items():
        where = toml_line(text, section, key)
        if key not in keys:
            known = ", ".join(keys)
            problems.append(
                Problem(label, where, f"[{section}] unknown key {key!r}; known: {known}")
            )
        elif not isinstance(value, keys[key]):
            kind = "true or false" if keys[key] is bool else "text in quotes"
            problems.append(Problem(label, where, f"[{section}] {key} must be {kind}"))
    return problems


def toml_line(text: str, section: str, key: str | None) -> int:
    """The line of `[section]`, or of `key =` inside it, in TOML TEXT: for error messages
    (tomllib reports lines only for syntax errors)."""
    current = None
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.fullmatch(r"\[\s*([^\]]+?)\s*\]", stripped)
        if header:
            current = header.group(1).strip("\"'")
            if key is None and current == section:
                return number
        elif (
            current == section and key and re.match(rf"[\"']?{re.escape(key)}[\"']?\s*=", stripped)
        ):
            return number
    return 1


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; blank lines and # comments are skipped."""
    if not path.is_file():
        return {}
    env: dict[str, str] = {}
    for line in textfiles.lines(textfiles.read(path, path.name, MAX_FILE_BYTES)):
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        env[key.strip().removeprefix("export ").strip()] = value.strip().strip("\"'")
    return env


def render_toml(overrides: Mapping[str, Any] | None = None) -> str:
    """newsroom.toml for a new site: every setting, commented, with its help."""
    overrides = overrides or {}
    out = [
        "# newsroom site settings. Every setting is listed with its default, commented out.",
        "# Each can also be set in the environment as NEWSROOM_<SECTION>_<KEY>.",
        "# Secrets (NEWSROOM_SECRET_KEY, NEWSROOM_SMTP_PASSWORD, ...) never go here: see .env.",
    ]
    for section, settings in SECTIONS.items():
        rows = [s for s in settings if not s.secret]
        if not rows:
            continue
        out += ["", f"[{section}]"]
        for s in rows:
            out.append(f"# {s.help}")
            if s.name in overrides:
                out.append(f"{s.key} = {_toml_value(overrides[s.name])}")
            else:
                out.append(f"# {s.key} = {_toml_value(s.default)}")
    return "\n".join(out) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'
