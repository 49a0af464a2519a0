"""A fake-clock harness around the sans-I/O core, and SIP message builders."""

import ipaddress
import logging
import random
from dataclasses import dataclass

from sipedge import config as config_mod
from sipedge.message import parse
from sipedge.proxy import Proxy
from sipedge.route import NOTICE
from sipedge.store import RoutingData

EDGE = ("127.0.0.1", 5060)
CLIENT = ("127.0.0.2", 5062)
B1, B2, B3 = ("127.0.0.11", 5060), ("127.0.0.12", 5060), ("127.0.0.21", 5080)

logging.addLevelName(NOTICE, "NOTICE")


@dataclass
class RoutedMsg:
    """What the dispatcher reads from a request (its hash keys), for its own tests."""

    call_id: str = "c@x"
    from_uri: str = "sip:alice@a.example"
    to_uri: str = "sip:bob@b.example"
    ruri: str = "sip:bob@b.example"


def request(method=b"INVITE", ruri=b"sip:alice@tenant1.test", to=None, *, branch=b"z9hG4bKc1",
            call_id=b"call-1@client", cseq=None, headers=(), body=b"", max_forwards=b"70",
            via=b"SIP/2.0/UDP 127.0.0.2:5062;branch=%s;rport", from_tag=b"ft1", to_tag=None,
            user_agent=b"softphone 1.0", content_length=True):
    """A well-formed request; every header can be overridden or left out (None)."""
    to = to if to is not None else b"<%s>" % ruri
    if to_tag:
        to += b";tag=" + to_tag
    lines = [b"%s %s SIP/2.0" % (method, ruri)]
    if via is not None:
        lines.append(b"Via: " + (via % branch if b"%s" in via else via))
    if max_forwards is not None:
        lines.append(b"Max-Forwards: " + max_forwards)
    lines += [b"From: <sip:bob@tenant1.test>;tag=" + from_tag, b"To: " + to, b"Call-ID: " + call_id,
              b"CSeq: " + (cseq if cseq is not None else b"1 " + method)]
    if user_agent is not None:
        lines.append(b"User-Agent: " + user_agent)
    lines += list(headers)
    if content_length:
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def response(req, status, reason=b"OK", to_tag=b"be1", headers=()):
    """What a backend answers to a request it received (`req` as bytes)."""
    msg = parse(req)
    lines = [b"SIP/2.0 %d %s" % (status, reason)]
    for name, line in zip(msg.names, msg.lines):
        if name in (b"via", b"from", b"call-id", b"cseq", b"record-route"):
            lines.append(line)
        elif name == b"to":
            lines.append(line + (b";tag=" + to_tag if to_tag and status > 100 and b"tag=" not in line else b""))
    lines += list(headers)
    lines.append(b"Content-Length: 0")
    return b"\r\n".join(lines) + b"\r\n\r\n"


class Harness:
    """The core with a fake clock: `recv` a datagram, `advance` time, `take` what was sent."""

    def __init__(self, domains=None, destinations=None, **settings):
        sections = {}
        for key, value in settings.items():
            section, _sep, name = key.partition("__")
            sections.setdefault(section, {})[name] = value
        # Unless a test says otherwise, the seed's behaviour: no keep-alives (so
        # that only the test's own traffic is seen), no failover.
        sections.setdefault("dispatcher", {}).setdefault("ping_interval", 0)
        sections["dispatcher"].setdefault("failover", False)
        self.config = config_mod.from_dict(sections)
        self.now = 1000.0
        self.sent = []
        self.proxy = Proxy(self.config, self.send, b"127.0.0.1", {(b"127.0.0.1", 5060)}, rng=random.Random(7))
        if domains is None:
            domains = {"tenant1.test": 10, "tenant2.test": 20}
        if destinations is None:
            destinations = ((10, "sip:127.0.0.11:5060", 0, 0, None), (10, "sip:127.0.0.12:5060", 0, 10, None),
                            (20, "sip:127.0.0.21:5080", 0, 0, None))
        self.load(domains, destinations)

    def send(self, data, addr):
        """What the shell's sendto() gets: the core must only ever send bytes to
        an IP literal and a port in 1..65535 (never a name: no DNS at request time)."""
        host, port = addr
        assert isinstance(data, bytes) and isinstance(host, str) and isinstance(port, int), (data[:60], addr)
        ipaddress.ip_address(host)
        assert 0 < port < 65536, addr
        self.sent.append((addr, data))

    def load(self, domains, destinations):
        self.proxy.load(RoutingData(domains=dict(domains), destinations=tuple(destinations)), self.now)

    def recv(self, data, src=CLIENT, overloaded=False):
        self.proxy.on_datagram(data, src, self.now, overloaded)
        return self.take()

    def advance(self, seconds):
        """Move the clock, firing timers at their exact deadlines."""
        target = self.now + seconds
        while True:
            deadline = self.proxy.next_deadline()
            if deadline is None or deadline > target:
                break
            self.now = deadline
            self.proxy.run_timers(deadline)
        self.now = target
        return self.take()

    def take(self):
        out, self.sent = self.sent, []
        return [(addr, parse(data)) for addr, data in out]

    def live(self):
        """Transactions and timers still held by the core."""
        return len(self.proxy.txns), len(self.proxy.timers)
