"""A site's own templates (issue #14, item 2): a file in the site's templates/ folder wins over
the package's in the email, the text part, the web page, the web app and the confirmation email;
`newsroom check` renders them and names a mistake as templates/FILE:LINE, as do build, preview,
send and serve, which refuse to go on; docs/templates.md names every template and variable."""

from __future__ import annotations

import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import jinja2
import jinja2.meta
import pytest
from starlette.testclient import TestClient

from newsroom.compose import blocks, rendering, templating
from newsroom.compose.issues import load_issue
from newsroom.compose.markup import FieldTable
from newsroom.compose.views import Audience
from newsroom.people import confirmation, lists, subscribers
from newsroom.site import Site
from newsroom.web.app import create_app
from tests.conftest import Run
from tests.smtpserver import TestSMTPServer

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "newsroom" / "templates"
DOCS = ROOT / "docs" / "templates.md"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
BULLETIN = "2022-10-03-sln-bulletin.md"  # a meeting, a motion, an only block
STATEMENTS = "2020-12-24-save-our-socialists.md"


def override(site_dir: Path, name: str, text: str) -> Path:
    path = site_dir / "templates" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_site_templates_win_in_the_email_and_the_web_page(site: Site, examples: Path) -> None:
    override(
        site.root,
        "email/statement.mjml.j2",
        '<mj-section><mj-column><mj-text><p class="mine">Quoted: {{ item.attribution }}</p>'
        "{{ item.html|safe }}</mj-text></mj-column></mj-section>\n",
    )
    override(site.root, "web/page.html.j2", "<!doctype html><title>{{ title }}</title>Ours\n")
    issue = load_issue(examples / STATEMENTS, site.config)
    email = rendering.render(issue, site.config).variants["email"].html
    assert 'class="mine"' in email and "Quoted: — " in email
    assert rendering.web_page(issue, site.config).endswith("</title>Ours")
    (site.root / "templates" / "email" / "statement.mjml.j2").unlink()  # gone: ours again
    assert 'class="mine"' not in rendering.render(issue, site.config).variants["email"].html


def test_overrides_in_the_web_app_whole_or_extending_the_packages_own(
    site_dir: Path, smtp_server: TestSMTPServer
) -> None:
    base = (PACKAGE / "web" / "base.html").read_text(encoding="utf-8")
    override(site_dir, "web/base.html", base.replace("<footer>", "<footer><p>Our own footer</p>"))
    override(
        site_dir,
        "web/index.html",
        '{% extends "newsroom/web/index.html" %}\n'
        '{% block main %}<p class="banner">{{ site_name }} says hello</p>{{ super() }}{% endblock %}\n',
    )
    override(site_dir, "web/site.css", "body { color: #000000; }\n")
    site = Site.open(site_dir)
    lists.sync(site, NOW)
    with TestClient(create_app(site, clock=lambda: NOW)) as client:
        home, subscribe, css = client.get("/"), client.get("/subscribe"), client.get("/style.css")
    assert '<p class="banner">Test Newsroom says hello</p>' in home.text
    assert '<h2 id="issues-heading">Issues</h2>' in home.text  # the package's page after it
    assert "Our own footer" in home.text and "Our own footer" in subscribe.text
    assert 'class="banner"' not in subscribe.text and 'name="form_token"' in subscribe.text
    assert css.text == "body { color: #000000; }"  # a template now: Jinja drops the last newline
    site.close()


def test_the_confirmation_email_uses_the_sites_templates(
    site_dir: Path, smtp_server: TestSMTPServer
) -> None:
    override(site_dir, "confirm.txt", "Say yes to {{ site_name }} at {{ link }}\n")
    site = Site.open(site_dir)  # after smtp_server pointed the settings at it
    lists.sync(site, NOW)
    subscribers.subscribe(
        site, "ann@example.org", "Ann", ["all-members"], ip=None, user_agent=None, now=NOW
    )
    (message,) = smtp_server.wait_for("ann@example.org")
    text = message.body()
    assert text.startswith("Say yes to Test Newsroom at http://localhost:8000/confirm/"), text
    assert "Yes, subscribe me" in message.body("html")  # the package's HTML part, not overridden
    site.close()


def test_site_templates_keep_escaping_html_and_not_text(site_dir: Path) -> None:
    (site_dir / "newsroom.toml").write_text('[site]\nname = "<b>Us</b> & Co"\n', encoding="utf-8")
    override(site_dir, "confirm.txt", "From {{ site_name }}\n")
    override(site_dir, "confirm.mjml", "<mjml><mj-body><mj-text>{{ site_name }}</mj-text>"
             "</mj-body></mjml>\n")  # fmt: skip
    site = Site.open(site_dir)
    html, text = confirmation.render(site.config, confirmation.sample_context(site.config, NOW))
    assert "&lt;b&gt;Us&lt;/b&gt; &amp; Co" in html and "<b>Us" not in html
    assert text == "From <b>Us</b> & Co"


def test_check_names_a_syntax_error_and_an_undefined_variable_at_their_lines(
    cli: Run, site_dir: Path
) -> None:
    override(site_dir, "web/preferences.html", '{% extends "web/base.html" %}\n{% block main %}\n')
    override(site_dir, "email/issue.mjml.j2", "<mjml>\n<mj-body>{{ titel }}</mj-body>\n</mjml>\n")
    result = cli("check", now=NOW)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        "templates/email/issue.mjml.j2:2: 'titel' is undefined: docs/templates.md lists the "
        "variables each template gets",
        "templates/web/preferences.html:2: template syntax: Unexpected end of template. Jinja "
        "was looking for the following tags: 'endblock'. The innermost block that needs to be "
        "closed is 'block'.",
    ]
    assert "Traceback" not in result.output


def test_check_renders_a_block_template_no_issue_uses_yet(cli: Run, site_dir: Path) -> None:
    override(site_dir, "email/motion.mjml.j2", "<mj-section>\n{{ item.mover }}\n</mj-section>\n")
    result = cli("check", now=NOW)  # the site has no issue, let alone a motion
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "templates/email/motion.mjml.j2:2: 'dict object' has no attribute 'mover'"
    )


def test_check_names_mjml_that_does_not_compile(cli: Run, site_dir: Path) -> None:
    override(site_dir, "confirm.mjml", "<mjml><mj-body><mj-section>\n")
    result = cli("check", now=NOW)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        "templates/confirm.mjml: the MJML these templates make does not compile: "
    )


def test_build_preview_send_and_serve_refuse_a_broken_template(
    cli: Run, site_dir: Path, tmp_path: Path, smtp_server: TestSMTPServer
) -> None:
    shutil.copy(ROOT / "issues" / BULLETIN, site_dir / "issues" / BULLETIN)
    override(site_dir, "email/issue.mjml.j2", "<mjml>\n\n{{ nope }}</mjml>\n")
    said = "templates/email/issue.mjml.j2:3: 'nope' is undefined"
    for args in (
        ("build", "--out", str(tmp_path / "public")),
        ("preview", str(site_dir / "issues" / BULLETIN), "--out", str(tmp_path / "preview")),
        ("send", "sln-bulletin", "--test", "me@example.org"),
        ("serve", "--port", "1"),  # refused before it listens
    ):
        result = cli(*args, now=NOW)
        assert result.exit_code == 1, args
        assert said in result.stderr and "Traceback" not in result.output, (args, result.output)
    assert not (tmp_path / "public").exists()
    assert smtp_server.messages == []


def test_a_huge_or_non_utf8_template_is_named(cli: Run, site_dir: Path) -> None:
    override(site_dir, "web/index.html", "x" * (templating.MAX_TEMPLATE_BYTES + 1))
    path = override(site_dir, "web/erase.html", "")
    path.write_bytes(b"caf\xe9\n")
    result = cli("check", now=NOW)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        "templates/web/erase.html:1: not UTF-8 (byte 0xE9 at column 4): save the file as UTF-8",
        "templates/web/index.html: the file is larger than 256 KB, the most newsroom reads: "
        "shorten it or split it in two",
    ]


def test_a_file_that_overrides_nothing_is_a_warning_unless_included(
    cli: Run, site_dir: Path
) -> None:
    override(site_dir, "web/bsae.html", "typo\n")
    override(site_dir, "web/logo.html", "<p>Our logo</p>\n")
    override(site_dir, "web/index.html", '{% extends "newsroom/web/index.html" %}\n'
             '{% block main %}{% include "web/logo.html" %}{{ super() }}{% endblock %}\n')  # fmt: skip
    result = cli("check", "--json", now=NOW)
    assert result.exit_code == 0, result.output
    assert '"templates/web/bsae.html: warning: newsroom has no template web/bsae.html' in (
        result.stdout
    )
    assert "logo.html: warning" not in result.stdout
    assert cli("check", "--strict", now=NOW).exit_code == 1


def test_a_template_changed_while_running_is_used_at_once(site: Site, examples: Path) -> None:
    issue = load_issue(examples / BULLETIN, site.config)
    before = rendering.web_page(issue, site.config)
    page = override(site.root, "web/page.html.j2", "first\n")
    assert rendering.web_page(issue, site.config) == "first"
    page.write_text("second, a little longer\n", encoding="utf-8")
    assert rendering.web_page(issue, site.config) == "second, a little longer"
    page.unlink()
    assert rendering.web_page(issue, site.config) == before


def test_a_copy_of_every_template_changes_nothing(
    cli: Run, site: Site, examples: Path, smtp_server: TestSMTPServer
) -> None:
    """`check` renders every group (the specimen issue, each page in each case, the
    confirmation) and the samples fit every package template; the output is the same bytes."""
    issue = load_issue(examples / BULLETIN, site.config)
    sample = confirmation.sample_context(site.config, NOW)
    before = (
        rendering.render(issue, site.config).variants,
        rendering.web_page(issue, site.config),
        confirmation.render(site.config, sample),
    )
    tool_pages = shutil.ignore_patterns(templating.TOOL_PAGES.rstrip("/"))  # not the look
    shutil.copytree(PACKAGE, site.root / "templates", ignore=tool_pages)
    result = cli("check", now=NOW)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"templates/: ok — {len(templating.package_templates())} of")
    assert "templates/" not in result.stderr
    after = (
        rendering.render(issue, site.config).variants,
        rendering.web_page(issue, site.config),
        confirmation.render(site.config, sample),
    )
    assert after == before


# -- docs/templates.md --------------------------------------------------------------------------


def documented() -> dict[str, set[str]]:
    """Each row of docs/templates.md's tables: `template` -> the `names` the row gives."""
    rows: dict[str, set[str]] = {}
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        found = re.match(r"\| `([^`]+)` \|(.*)", line)
        if found:
            rows[found.group(1)] = set(re.findall(r"`([a-z_]+)`", found.group(2)))
    return rows


def used(name: str) -> set[str]:
    """The variables template NAME reads that it does not set itself (jinja2.meta)."""
    env = jinja2.Environment()
    env.filters["wrap"] = str  # newsroom's own filter, known to templating's environment
    source = (PACKAGE / name).read_text(encoding="utf-8")
    return set(jinja2.meta.find_undeclared_variables(env.parse(source)))


@pytest.mark.parametrize("name", templating.package_templates())
def test_the_docs_name_every_template_and_each_variable_it_uses(name: str) -> None:
    rows = documented()
    assert name in rows, f"docs/templates.md does not list {name}"
    group = "web/*.html" if re.fullmatch(r"web/[a-z]+\.html", name) else ""
    group = "email/TYPE.mjml.j2" if re.fullmatch(r"email/[a-z]+\.mjml\.j2", name) else group
    given = rows[name] | rows.get(group, set())
    if group == "email/TYPE.mjml.j2":
        given |= rows["email/issue.mjml.j2"]  # an included template sees its includer's
    if name in ("web/form.html",):
        given |= rows["web/*.html"] | rows["web/subscribe.html"]
    assert used(name) <= given, f"{name}: {sorted(used(name) - given)} not in docs/templates.md"


def test_the_docs_name_every_key_of_each_blocks_item(site: Site) -> None:
    rows = documented()
    fields = FieldTable()
    for audience in (Audience(False), Audience(True, frozenset({"all-members"}))):
        context = rendering.page_context(templating.specimen(), site.config, audience, fields)
        for item in context["items"]:
            key = f"item ({item['kind']})"
            assert key in rows, f"docs/templates.md has no row {key}"
            assert set(item) - {"kind"} <= rows[key] | rows["item"], (key, set(item))


def test_the_specimen_check_renders_holds_every_block_type() -> None:
    specimen = templating.specimen()
    assert {node.type for node in specimen.blocks} == set(blocks.SPECS)
