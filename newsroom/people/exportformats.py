"""The exports of the tools groups move from, as data: which column is which field, how names join
and tags split, where the consent evidence is, and who the export says had left (issue #15).

Each format is one table row below, written from the tool's documented export columns; a file is
recognised by its header, or named with `--format`, and `--map "COLUMN=field"` says what any
other column is. Columns newsroom has no field for are dropped, never stored (data minimisation),
and the import names them once in its summary.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.utils import parseaddr

from newsroom.errors import NewsroomError, Problem, ProblemsError

# The fields a column can give. The four evidence fields are kept on the ledger's event as the
# original evidence of consent (UK GDPR art. 7(1): the controller must be able to show it).
FIELDS = ("email", "name", "first_name", "last_name", "tags", "lists")
EVIDENCE = ("optin_time", "optin_ip", "confirm_time", "confirm_ip")
ALL_FIELDS = FIELDS + EVIDENCE


def key(header: str) -> str:
    """A header as the tables name it: `Email Address`, `email_address` and `E-mail address`
    are all `emailaddress`."""
    return re.sub(r"[^0-9a-z]", "", header.casefold())


def words(cell: str) -> list[str]:
    """Slugs separated by spaces or commas (`press youth`, `press, youth`): newsroom's columns."""
    if "," not in cell:
        return cell.split()  # most cells: str.split is a third of the regular expression's time
    return [part for part in re.split(r"[\s,]+", cell) if part]


def comma_names(cell: str) -> list[str]:
    """Free-text names separated by commas (NationBuilder's tag_list, Action Network's tags)."""
    return [part.strip() for part in cell.split(",") if part.strip()]


def quoted_names(cell: str) -> list[str]:
    """Mailchimp's TAGS cell: each tag in double quotes, separated by commas (`"VIP","Blog"`)."""
    return [part.strip() for part in next(csv.reader([cell]), []) if part.strip()]


def tag_slug(name: str) -> str:
    """A free-text tag name as a newsroom tag: `Annual Conference 2024` -> `annual-conference-2024`,
    `Délégués` -> `delegues`."""
    plain = unicodedata.normalize("NFKD", name.casefold())
    plain = "".join(c for c in plain if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9_]+", "-", plain).strip("-_")[:100]


@dataclass(frozen=True)
class Status:
    """A column saying whether the person was subscribed there: a row whose cell is filled with
    anything but one of KEPT is skipped, never imported (an empty cell says nothing)."""

    column: str  # key() of the header
    kept: frozenset[str] = frozenset()  # values (case-folded) that mean "subscribed"


@dataclass(frozen=True)
class Format:
    """One tool's export: its columns (key() of the header -> field) and how to read them."""

    name: str  # what --format takes
    title: str  # what the summary says
    columns: Mapping[str, str]
    signatures: tuple[frozenset[str], ...] = ()  # recognised when one set is all in the header
    tags: Callable[[str], list[str]] = words
    free_tags: bool = False  # tag names are free text, made into tags (tag_slug)
    status: tuple[Status, ...] = ()
    headerless: bool = False  # one address a line, `Name <address>` or bare


MAILCHIMP = Format(
    "mailchimp",
    "Mailchimp audience export",
    # The audience export's columns: "Email Address", the merge fields ("First Name", "Last
    # Name", ...), MEMBER_RATING, OPTIN_TIME, OPTIN_IP, CONFIRM_TIME, CONFIRM_IP, LATITUDE,
    # LONGITUDE, GMTOFF, DSTOFF, TIMEZONE, CC, REGION, LAST_CHANGED, LEID, EUID, NOTES, TAGS.
    {
        "emailaddress": "email",
        "name": "name",
        "firstname": "first_name",
        "lastname": "last_name",
        "tags": "tags",
        "optintime": "optin_time",
        "optinip": "optin_ip",
        "confirmtime": "confirm_time",
        "confirmip": "confirm_ip",
    },
    signatures=(frozenset({"emailaddress", "memberrating"}), frozenset({"emailaddress", "leid"})),
    tags=quoted_names,
    free_tags=True,
    # The export's "unsubscribed" and "cleaned" files carry these: nobody in them is imported.
    status=(Status("unsubtime"), Status("cleantime")),
)
LISTMONK = Format(
    "listmonk",
    "listmonk subscribers export",
    # uuid, email, name, attributes (JSON), status (enabled, disabled, blocklisted), created_at,
    # updated_at.
    {"email": "email", "name": "name"},
    signatures=(frozenset({"uuid", "email", "attributes", "status"}),),
    status=(Status("status", frozenset({"enabled"})),),
)
MAILMAN = Format(
    "mailman",
    "Mailman 3 member list",
    # `mailman members LIST` prints `Display Name <address>` a line (`--email-only`: the bare
    # address); Postorius' "Download CSV" gives one address a line, no header.
    {},
    headerless=True,
)
ACTION_NETWORK = Format(
    "action-network",
    "Action Network activist report",
    # uuid, first_name, last_name, email, zip_code, can2_user_address, can2_user_city,
    # can2_user_state, can2_phone, can2_user_tags (", "-separated), can2_subscription_status
    # (subscribed, unsubscribed, bouncing, spam complaint), can2_sms_status, custom fields.
    {
        "email": "email",
        "firstname": "first_name",
        "lastname": "last_name",
        "can2usertags": "tags",
    },
    signatures=(
        frozenset({"email", "can2subscriptionstatus"}),
        frozenset({"email", "can2usertags"}),
        frozenset({"uuid", "email", "zipcode"}),
    ),
    tags=comma_names,
    free_tags=True,
    status=(Status("can2subscriptionstatus", frozenset({"subscribed"})),),
)
NATIONBUILDER = Format(
    "nationbuilder",
    "NationBuilder people export",
    # nationbuilder_id, first_name, middle_name, last_name, email, email_opt_in, tag_list
    # (comma-separated), created_at, phone_number, primary_address1, ... (the people fields).
    {
        "email": "email",
        "fullname": "name",
        "firstname": "first_name",
        "lastname": "last_name",
        "taglist": "tags",
    },
    signatures=(frozenset({"nationbuilderid", "email"}),),
    tags=comma_names,
    free_tags=True,
    status=(Status("emailoptin", frozenset({"true", "t", "yes", "y", "1"})),),
)
SPREADSHEET = Format(
    "spreadsheet",
    "spreadsheet",
    # newsroom's own columns (email, name, tags, lists: what `subscribers export` writes), in any
    # capitalisation, and the words a shared spreadsheet uses for them.
    {
        "email": "email",
        "emailaddress": "email",
        "name": "name",
        "fullname": "name",
        "displayname": "name",
        "firstname": "first_name",
        "forename": "first_name",
        "givenname": "first_name",
        "lastname": "last_name",
        "surname": "last_name",
        "familyname": "last_name",
        "tags": "tags",
        "tag": "tags",
        "lists": "lists",
        "list": "lists",
        **{key(f): f for f in EVIDENCE},
    },
)
# Recognised in this order; a header none of them claims is a spreadsheet.
FORMATS: dict[str, Format] = {
    f.name: f for f in (MAILCHIMP, LISTMONK, ACTION_NETWORK, NATIONBUILDER, SPREADSHEET, MAILMAN)
}


def recognise(header: Sequence[str]) -> Format:
    keys = {key(cell) for cell in header}
    for candidate in FORMATS.values():
        if any(signature <= keys for signature in candidate.signatures):
            return candidate
    return SPREADSHEET


@dataclass(frozen=True)
class Layout:
    """How one file's columns are read: the format, each kept column's field, the status
    columns, and the columns dropped."""

    format: Format
    recognised: bool  # by its header (not named with --format)
    fields: dict[int, str] = field(default_factory=dict)  # column index -> field
    status: tuple[tuple[int, str, Status], ...] = ()  # index, header, status
    dropped: tuple[str, ...] = ()
    width: int = 1
    # Worked out once from the above: read for every row, twice (bench/bench_import.py).
    pairs: tuple[tuple[int, str], ...] = field(init=False)  # (column index, field)
    evidence: tuple[str, ...] = field(init=False)  # the EVIDENCE fields it has, in that order

    def __post_init__(self) -> None:
        object.__setattr__(self, "pairs", tuple(self.fields.items()))
        given = set(self.fields.values())
        object.__setattr__(self, "evidence", tuple(f for f in EVIDENCE if f in given))

    def values(self, cells: Sequence[str]) -> dict[str, str]:
        """A row's cells by field; a Mailman line gives its address and display name."""
        if self.format.headerless:
            name, address = parseaddr(cells[0])
            return {"email": address or cells[0], "name": name}
        if len(cells) >= self.width:  # most rows: no index to check
            return {f: cells[i].strip() for i, f in self.pairs}
        return {f: cells[i].strip() for i, f in self.pairs if i < len(cells)}

    def left(self, cells: Sequence[str]) -> str | None:
        """Why the export says this person was not subscribed there, if it does."""
        if not self.status:
            return None
        for index, header, status in self.status:
            value = cells[index].strip() if index < len(cells) else ""
            if value and value.casefold() not in status.kept:
                return f"{header} is {value[:60]!r}"
        return None


def layout(
    label: str,
    header: Sequence[str],
    chosen: str | None = None,
    mapping: Sequence[str] = (),
    line: int = 1,
) -> Layout:
    """The layout of a file with HEADER (no header: a Mailman list): in the CHOSEN format or the
    one its header is recognised as, with MAPPING's `COLUMN=field` on top."""
    found = FORMATS[chosen] if chosen else (MAILMAN if not header else recognise(header))
    if found.headerless:
        if mapping:
            raise NewsroomError("--map needs a file with a header row; a Mailman list has none")
        return Layout(found, recognised=chosen is None)
    names = [cell.strip() for cell in header]
    fields = {i: found.columns[key(n)] for i, n in enumerate(names) if key(n) in found.columns}
    fields.update(_mapped(label, names, mapping))
    status_keys = {s.column: s for s in found.status}
    status = tuple(
        (i, n, status_keys[key(n)])
        for i, n in enumerate(names)
        if key(n) in status_keys and i not in fields
    )
    used = set(fields) | {i for i, _, _ in status}
    dropped = tuple(n or f"(column {i + 1}, no name)" for i, n in enumerate(names) if i not in used)
    _check(label, line, names, fields)
    return Layout(found, chosen is None, fields, status, dropped, len(names))


def _mapped(label: str, names: list[str], mapping: Sequence[str]) -> dict[int, str]:
    by_key = {key(n): i for i, n in reversed(list(enumerate(names)))}
    mapped: dict[int, str] = {}
    for raw in mapping:
        column, eq, wanted = raw.rpartition("=")
        wanted = wanted.strip().lower()
        if not eq or not column.strip():
            raise NewsroomError(f"--map {raw!r}: write it as 'COLUMN=field', such as 'Mail=email'")
        if wanted not in ALL_FIELDS:
            raise NewsroomError(
                f"--map {raw!r}: unknown field {wanted!r}; fields: {', '.join(ALL_FIELDS)}"
            )
        index = by_key.get(key(column))
        if index is None:
            raise NewsroomError(
                f"--map {raw!r}: {label} has no column {column.strip()!r} "
                f"(columns: {', '.join(repr(n) for n in names)})"
            )
        mapped[index] = wanted
    return mapped


def _check(label: str, line: int, names: list[str], fields: dict[int, str]) -> None:
    problems = []
    for wanted in ALL_FIELDS:
        columns = [i for i, f in sorted(fields.items()) if f == wanted]
        if len(columns) > 1:
            first, second = (names[i] for i in columns[:2])
            problems.append(
                Problem(label, line, f"column {first!r} appears twice")
                if first == second
                else Problem(
                    label,
                    line,
                    f"columns {first!r} and {second!r} both give the {wanted}: "
                    "keep one, or say which with --map 'COLUMN=field'",
                )
            )
    if "email" not in fields.values():
        shown = ", ".join(repr(n) for n in names[:12]) + (", ..." if len(names) > 12 else "")
        problems.append(
            Problem(
                label,
                line,
                f"no email column in the header row ({shown}): name it 'email', "
                "or say which column it is with --map 'COLUMN=email'",
            )
        )
    if problems:
        raise ProblemsError(problems)
