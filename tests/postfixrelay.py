"""A real Postfix as the relay of a test: its own configuration, queue and mailboxes in a
temporary folder, smtpd on a free loopback port, nothing delivered off this machine.

    with running(["alice", "bob"]) as relay:  # an mbox each, and the Maildir of bounces@
        relay.wait_for(relay.mbox("alice"), 1)  # (any other user bounces with a DSN)

Debian's package (`postfix`, installed with "No configuration" so no system daemon runs); the
master must start as root. `postfix -c DIR start` and `stop` drive it; `stop` always runs.
"""

from __future__ import annotations

import contextlib
import mailbox
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.smtpserver import free_port

POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"
MAIL_DOMAIN = "example.net"  # the members' mailboxes (email-validator takes it, .test it refuses)
# The organisation's own domain: the sender and the VERP bounce address. Not an example domain,
# because a real mailing through a real relay refuses placeholder settings (readiness.py); it
# is one of this Postfix's local domains and no mail can leave (default_transport below).
ORG_DOMAIN = "newsroom-lab.org"
DEADLINE = 60.0  # seconds: generous, the machine is shared; each wait returns as soon as it can

# Every service in-process rather than chrooted (the chroot would need copies of /etc files);
# smtpd only on 127.0.0.1 at the test's port; postlog writes `maillog_file` without syslog.
MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix n - n 60 1 pickup
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
smtp      unix - - n - - smtp
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
local     unix - n n - - local
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""

MAIN_CF = """\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = relay.{mail}
mydomain = {mail}
myorigin = {mail}
mydestination = {mail}, {org}
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
# bounces+<delivery>-<tag>@ reaches the mailbox of bounces@ (VERP).
recipient_delimiter = +
# Accept any local recipient, so that an unknown one bounces with Postfix's own DSN (RFC 3464)
# to the envelope sender, instead of a 550 at RCPT time.
local_recipient_maps =
alias_maps = texthash:{root}/conf/aliases
alias_database =
# Nothing outside the folder: no system user's mailbox or .forward, no mail off this machine.
mail_spool_directory = {root}/spool/
forward_path =
default_transport = error:this test relay delivers nothing off this machine
relay_transport = error:this test relay delivers nothing off this machine
biff = no
"""


@dataclass
class PostfixRelay:
    """One running Postfix; mailboxes are files under ROOT/mail."""

    root: Path
    port: int

    @property
    def config_dir(self) -> Path:
        return self.root / "conf"

    def mbox(self, user: str) -> Path:
        return self.root / "mail" / f"{user}.mbox"

    @property
    def bounces(self) -> Path:
        """The Maildir of bounces@ORG_DOMAIN: DSNs and mailto unsubscribe requests land here."""
        return self.root / "mail" / "bounces"

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no maillog)"

    def messages(self, path: Path) -> list[bytes]:
        """The messages delivered to an mbox file or Maildir so far (none before the first)."""
        if not path.exists():
            return []
        if path.is_dir():  # a Maildir: each message appears whole (tmp/ then new/)
            # Read new/ and cur/ as they are: local(8) makes the folder's tmp/, new/ and cur/
            # one after another, and mailbox.Maildir fails while one is still missing.
            found = [
                p for sub in ("new", "cur") if (path / sub).is_dir() for p in (path / sub).iterdir()
            ]
            return [message.read_bytes() for message in sorted(found, key=lambda p: p.name)]
        mbox = mailbox.mbox(path, create=False)
        try:  # the lock local(8) takes while it appends (fcntl and a dot-lock file)
            mbox.lock()
        except mailbox.ExternalClashError:
            return []  # being written to: look again
        try:
            return [mbox.get_bytes(key) for key in mbox.iterkeys()]
        finally:
            mbox.unlock()
            mbox.close()

    def wait_for(self, path: Path, count: int) -> list[bytes]:
        """Poll until PATH holds COUNT messages; fail with the maillog after DEADLINE."""
        wait_until(lambda: len(self.messages(path)) >= count, f"{count} messages in {path}", self)
        return self.messages(path)

    def postfix(self, command: str) -> subprocess.CompletedProcess[bytes]:
        # Output to a file, not a pipe: the master it starts keeps inherited descriptors open.
        with (self.root / "postfix.out").open("ab") as out:
            return subprocess.run(
                [POSTFIX, "-c", str(self.config_dir), command],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=DEADLINE,
                check=False,
            )


def wait_until(ready: Callable[[], bool], what: str, relay: PostfixRelay) -> None:
    deadline = time.monotonic() + DEADLINE
    while not ready():
        if time.monotonic() > deadline:
            raise AssertionError(f"Postfix: no {what} after {DEADLINE:g} s\n{relay.log()}")
        time.sleep(0.05)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


def configure(users: Sequence[str]) -> PostfixRelay:
    """A folder with main.cf, master.cf and aliases: USERS get an mbox, bounces a Maildir."""
    # Not pytest's tmp_path: its parents are private to root, and local(8) writes alias files
    # as `nobody`, so the folder must be reachable and the mail folder writable by it.
    root = Path(tempfile.mkdtemp(prefix="newsroom-postfix-"))
    relay = PostfixRelay(root, free_port())
    root.chmod(0o755)
    for sub in ("conf", "queue", "data", "mail", "spool"):
        (root / sub).mkdir()
    (root / "mail").chmod(0o777)
    (root / "spool").chmod(0o1777)
    shutil.chown(root / "data", user="postfix")  # Postfix's own state, written by its daemons
    conf = relay.config_dir
    (conf / "main.cf").write_text(MAIN_CF.format(root=root, mail=MAIL_DOMAIN, org=ORG_DOMAIN))
    (conf / "master.cf").write_text(MASTER_CF.format(port=relay.port))
    aliases = [f"{user} {relay.mbox(user)}" for user in users]
    (conf / "aliases").write_text("\n".join([*aliases, f"bounces {relay.bounces}/", ""]))
    return relay


@contextlib.contextmanager
def running(users: Sequence[str]) -> Iterator[PostfixRelay]:
    """Postfix started and answering on its port; stopped and removed afterwards, whatever
    happened in between (a failed start included)."""
    relay = configure(users)
    try:
        started = relay.postfix("start")
        if started.returncode != 0:
            output = (relay.root / "postfix.out").read_text(errors="replace")
            raise AssertionError(f"postfix start failed:\n{output}\n{relay.log()}")
        wait_until(lambda: _listening(relay.port), f"smtpd on port {relay.port}", relay)
        yield relay
    finally:
        try:
            relay.postfix("stop")  # waits for the master to go (and kills it after 5 s)
        finally:
            shutil.rmtree(relay.root, ignore_errors=True)
