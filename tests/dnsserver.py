"""A real, tiny DNS server for tests: UDP on 127.0.0.1, a free port, TXT answers from a dict.

server = TestDNSServer({"_dmarc.example.net": ['v=DMARC1; p=none']}).start()
... newsroom doctor --dns --nameserver 127.0.0.1:{server.port} ...
server.stop()

A name in the dict answers its TXT records (each a list of strings: one record may be split
into several ≤255-byte strings, RFC 1035 §3.3.14); any other name is NXDOMAIN. Built with
dnspython's own dns.message, so what newsroom reads went through a real query and answer.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

Records = dict[str, list[str | list[str]]]  # name -> TXT records, each one string or several


@dataclass
class TestDNSServer:
    __test__ = False  # a fixture, not a test class

    records: Records = field(default_factory=dict)
    host: str = "127.0.0.1"
    refuse: bool = False  # answer every query REFUSED, as a server that is not ours would
    questions: list[str] = field(default_factory=list)  # "NAME TYPE" of every query
    port: int = 0  # a free one, chosen when it starts
    _server: socketserver.UDPServer | None = None
    _thread: threading.Thread | None = None

    def start(self) -> TestDNSServer:
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                data, sock = self.request
                sock.sendto(owner.answer(data), self.client_address)

        self._server = socketserver.UDPServer((self.host, self.port), Handler)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def answer(self, data: bytes) -> bytes:
        query = dns.message.from_wire(data)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.questions.append(f"{name} {dns.rdatatype.to_text(question.rdtype)}")
        found = {k.lower().rstrip("."): v for k, v in self.records.items()}.get(name)
        if self.refuse:
            response.set_rcode(dns.rcode.REFUSED)
        elif found is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif question.rdtype == dns.rdatatype.TXT:
            texts = [" ".join(_quoted(s) for s in _strings(r)) for r in found]
            response.answer.append(
                dns.rrset.from_text_list(question.name, 300, dns.rdataclass.IN, "TXT", texts)
            )
        return response.to_wire(max_size=query.payload if query.edns >= 0 else 512)


def _strings(record: str | list[str]) -> list[str]:
    return [record] if isinstance(record, str) else record


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def closed_udp_port() -> int:
    """A loopback UDP port nobody listens on: a query there is refused at once (ICMP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
