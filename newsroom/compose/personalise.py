"""Filling merge fields per recipient: a template is split into parts once, then joined per person.

    personalise(variant.html, {"first_name": "Ann", "unsubscribe_url": url}, html=True)

This module is the one vocabulary of merge fields (`FIELDS`): markup.py checks an author's fields
against it, rendering.py and the web page say their public fallbacks, messages.py splices them
into encoded messages, and `values` fills them for one recipient, whoever sends or previews.

Placeholders are `{{name}}` or `{{name|fallback}}` for the fields in `FIELDS`; a missing or empty
value takes the fallback (already escaped for the part it sits in). Values are HTML-escaped in the
HTML part and never scanned again, so a name such as `<script>` or `{{email}}` is shown as typed,
never run or expanded. Compiling costs about a render; filling costs microseconds.
"""

from __future__ import annotations

import html as htmllib
import re
from collections.abc import Mapping
from dataclasses import dataclass

# The merge fields a volunteer may use, with what the public variant (web, feeds) says instead.
AUTHOR_FIELDS = {"first_name": "friend", "name": "friend", "email": ""}
# The footer's, filled by the sender for each recipient; not for authors.
FOOTER_FIELDS = ("unsubscribe_url", "preferences_url")
FIELDS = (*AUTHOR_FIELDS, *FOOTER_FIELDS)
PLACEHOLDER = re.compile(r"\{\{(" + "|".join(FIELDS) + r")(?:\|([^{}]*))?\}\}")
_CACHE_LIMIT = 64


def values(email: str, name: str, unsubscribe_url: str, preferences_url: str) -> dict[str, str]:
    """Every merge field's value for one recipient: the one filling, for the messages a mailing
    sends, `send --test` and `preview --as` alike."""
    return {
        "first_name": name.split()[0] if name.strip() else "",
        "name": name,
        "email": email,
        "unsubscribe_url": unsubscribe_url,
        "preferences_url": preferences_url,
    }


@dataclass(frozen=True)
class MergeTemplate:
    """A template split at its placeholders: literals[0], slot 0, literals[1], slot 1, …"""

    literals: tuple[str, ...]
    slots: tuple[tuple[str, str], ...]  # (field, fallback)
    html: bool

    def fill(self, fields: Mapping[str, str]) -> str:
        literals = self.literals
        out = [literals[0]]
        escape = self.html
        for index, (name, fallback) in enumerate(self.slots, 1):
            value = fields.get(name)
            if value:
                out.append(htmllib.escape(value) if escape else value)
            else:
                out.append(fallback)
            out.append(literals[index])
        return "".join(out)

    @property
    def fields(self) -> frozenset[str]:
        return frozenset(name for name, _ in self.slots)


def compile_template(template: str, html: bool) -> MergeTemplate:
    literals: list[str] = []
    slots: list[tuple[str, str]] = []
    position = 0
    for match in PLACEHOLDER.finditer(template):
        literals.append(template[position : match.start()])
        slots.append((match.group(1), match.group(2) or ""))
        position = match.end()
    literals.append(template[position:])
    return MergeTemplate(tuple(literals), tuple(slots), html)


_compiled: dict[tuple[str, bool], MergeTemplate] = {}


def compiled(template: str, html: bool) -> MergeTemplate:
    """The template compiled once and kept (a mailing uses a handful of templates)."""
    key = (template, html)
    found = _compiled.get(key)
    if found is None:
        if len(_compiled) >= _CACHE_LIMIT:
            _compiled.clear()
        found = _compiled[key] = compile_template(template, html)
    return found


def personalise(template: str, fields: Mapping[str, str], html: bool) -> str:
    """TEMPLATE with its merge fields filled from FIELDS (HTML-escaped when HTML is true)."""
    return compiled(template, html).fill(fields)


def placeholder(name: str, fallback: str | None) -> str:
    return f"{{{{{name}|{fallback}}}}}" if fallback else f"{{{{{name}}}}}"
