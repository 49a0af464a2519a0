"""The seed's request_route as an ordered pipeline of small stages.

Each stage looks at a request and either lets it pass (returns None) or
decides its fate with one of the outcomes below.  The order and the observable
results follow Kamailio running the seed (docs/sip-spec-notes.md section 1), with the
decisions of docs/design.md where the seed's letter and intent differ.
"""

import ipaddress
import logging
from typing import NamedTuple, Optional

from .message import number, parse_name_addr
from .uri import ip_literal, parse_uri

log = logging.getLogger("sipedge")
NOTICE = 25


class Drop(NamedTuple):
    """Nothing is sent; `reason` names why, for the drop counters."""

    reason: str


class Reply(NamedTuple):
    """A stateless reply (never to an ACK)."""

    code: int
    reason: bytes


class Forward(NamedTuple):
    """Relay statefully (statelessly for an ACK) to `address`, (IP, port)."""

    address: tuple
    record_route: bool
    setid: Optional[int] = None  # the dispatcher set an initial request was routed to
    destination: object = None  # its dispatcher.Destination


TOO_MANY_HOPS = Reply(483, b"Too Many Hops")
NOT_HERE = Reply(404, b"Not Here")
NOT_ALLOWED = Reply(405, b"Method Not Allowed")
UNAVAILABLE = Reply(503, b"Service Unavailable")
OPTIONS_OK = Reply(200, b"OK")
UNRESOLVABLE = Reply(478, b"Unresolvable destination (478/SL)")
FORBIDDEN = Reply(403, b"Forbidden")


def max_forwards(msg, limit_insert, limit_max):
    """mf_process_maxfwd_header: insert, clamp or decrement; 483 at zero or on
    a value Kamailio cannot parse.  Two Max-Forwards headers make the request
    unparsable for Kamailio, which then cannot build its 483: a silent drop."""
    i = msg.index(b"max-forwards")
    if i < 0:
        msg.insert(0, b"max-forwards", b"Max-Forwards: %d" % limit_insert)
        return None
    if msg.count(b"max-forwards") > 1:
        return Drop("max-forwards-twice")
    text = msg.value(i)
    if text and (not text.isdigit() or len(text) > 5):
        return TOO_MANY_HOPS
    value = int(text or b"0") & 0xFFFF  # str2s keeps 16 bits
    if value == 0:
        return TOO_MANY_HOPS
    msg.replace(i, b"Max-Forwards: %d" % (limit_max if value > limit_max else value - 1))
    return None


def sanity(msg):
    """sanity_check("1511", "7") in Kamailio's order; the first failure decides.
    Checks that Kamailio answers with no reply are silent drops."""
    if msg.version != b"SIP/2.0":
        return Reply(505, b"Version Not Supported (R-URI)")
    if msg.ruri_parsed is None:
        return Reply(400, b"Bad Request URI")
    for name in (b"from", b"to", b"call-id", b"cseq"):
        if msg.count(name) != 1:
            return Drop("duplicate-header")
    cseq_number, method = msg.cseq
    if not method:
        return Reply(400, b"Missing method in CSeq header")
    if method != msg.method:
        return Reply(400, b"CSeq method does not match request method")
    if not cseq_number:
        return Reply(400, b"Missing number in CSeq header")
    if number(cseq_number, 0x7FFFFFFF) is None:
        return Reply(400, b"CSeq number is illegal")
    length = msg.get(b"content-length")
    if length is not None:  # its value parsed when the message was (message._check_body)
        if not msg.has_eoh:
            return Reply(400, b"Content-Length Body Failure")
        if int(length) != len(msg.body):
            return Reply(400, b"Content-Length mis-match")
    expires = msg.get(b"expires")
    if expires is not None:
        if not expires:  # Kamailio's Expires parser fails before sanity's own check
            return Reply(400, b"Bad Expires Header")
        if number(expires) is None:
            return Reply(400, b"Expires value is illegal")
    if msg.from_uri_parsed is None:
        return Reply(400, b"Invalid From Header")
    if msg.to_uri_parsed is None:
        return Reply(400, b"Invalid To Header")
    return None


class Router:
    """Decides what happens to a request that no transaction claimed."""

    def __init__(self, config, dispatcher, is_myself):
        self.config = config
        self.dispatcher = dispatcher
        self.is_myself = is_myself  # (host bytes, port int) -> bool
        self.domains = {}
        self.scanners = tuple(s.encode() for s in config.scanner_user_agents)
        self.methods = frozenset(m.encode() for m in config.allowed_methods)
        self.options_networks = config.options_answer_networks

    def route(self, msg, src_ip, now):
        """Run the pipeline; returns a Drop, Reply or Forward."""
        cfg = self.config
        return (max_forwards(msg, cfg.max_forwards, cfg.max_forwards_limit)
                or sanity(msg)
                or self.scanner(msg)
                or self.in_dialog(msg, src_ip, now)
                or self.method_allowed(msg)
                or self.domain(msg, src_ip))

    def scanner(self, msg):
        agent = msg.get(b"user-agent")
        if agent is not None:
            agent = agent.lower()
            for needle in self.scanners:
                if needle in agent:
                    log.debug("scanner dropped: %s", agent.decode("utf-8", "replace"))
                    return Drop("scanner")
        return None

    def in_dialog(self, msg, src_ip, now):
        """has_totag -> loose_route or 404.  A Route that does not name this edge
        is never followed (docs/design.md decision 9), and a request from outside the
        backends may only reach a backend (decision 13)."""
        if not msg.to_tag:
            return None
        routes = msg.values(b"route")
        ruri = msg.ruri_parsed
        if routes and ruri is not None and ruri.host and self._myself_uri(ruri):
            # The previous hop was a strict router: the R-URI is our Record-Route
            # and the real target is the last Route (RFC 3261 16.4).
            last = parse_name_addr(routes[-1])
            if last is None:
                return NOT_HERE
            msg.set_ruri(last.uri)
            routes = routes[:-1]
            self._set_routes(msg, routes)
        elif not routes:
            return NOT_HERE
        else:
            top = parse_name_addr(routes[0])
            uri = parse_uri(top.uri) if top else None
            if uri is None or not uri.host or not self._myself_uri(uri):
                return NOT_HERE
            routes = routes[1:]
            self._set_routes(msg, routes)
        target = msg.ruri_parsed
        if routes:
            nxt = parse_name_addr(routes[0])
            target = parse_uri(nxt.uri) if nxt else None
            if target is not None and target.scheme in (b"sip", b"sips") and target.param(b"lr") is None:
                # A strict router next (RFC 3261 16.6 step 6): it gets the request
                # with itself as R-URI and the old R-URI as the last Route.
                self._set_routes(msg, routes[1:] + [b"<" + msg.ruri + b">"])
                msg.set_ruri(nxt.uri)
        return self._target(target, src_ip, now)

    def _myself_uri(self, uri):
        return self.is_myself(uri.host, uri.port_number)

    def _target(self, uri, src_ip, now):
        """Relay an in-dialog request to `uri` (no Record-Route), if allowed."""
        if uri is None or not uri.host:
            return NOT_HERE
        maddr = uri.param(b"maddr")
        host = ip_literal(maddr or uri.host)
        if host is None:
            return UNRESOLVABLE  # no DNS at request time (docs/design.md decision 11)
        if not self.dispatcher.may_relay(src_ip, host, now):
            log.log(NOTICE, "In-dialog request refused: from %s to %s, neither a dispatcher destination", src_ip, host)
            return FORBIDDEN
        return Forward((host, uri.port_number), False)

    @staticmethod
    def _set_routes(msg, values):
        """Replace every Route header with one holding `values`, where the
        first Route stood."""
        first = msg.index(b"route")
        for i in range(len(msg.names) - 1, first - 1, -1):
            if msg.names[i] == b"route":
                msg.delete(i)
        if values:
            msg.insert(first, b"route", b"Route: " + b", ".join(values))

    def method_allowed(self, msg):
        return None if msg.method in self.methods else NOT_ALLOWED

    def domain(self, msg, src_ip):
        ruri = msg.ruri_parsed
        domain = ruri.host if ruri is not None else b""
        if not domain:
            return Drop("empty-domain")
        to_uri = msg.to_uri_parsed
        if domain != (to_uri.host if to_uri else b""):
            log.warning("R-URI / To mismatch domain=%s src=%s", domain.decode("utf-8", "replace"), src_ip)
            return Drop("domain-mismatch")
        if msg.method == b"OPTIONS" and self.options_networks and self._myself_uri(ruri):
            addr = ipaddress.ip_address(src_ip)
            if any(addr in net for net in self.options_networks):
                return OPTIONS_OK
        setid = self.domains.get(domain)
        if setid is None:
            log.log(NOTICE, "Door-knock blocked: domain=%s src=%s", domain.decode("utf-8", "replace"), src_ip)
            return Drop("unknown-domain")
        dest = self.dispatcher.select(setid, msg)
        if dest is None:
            log.error("No healthy Asterisk nodes for domain=%s", domain.decode("utf-8", "replace"))
            return UNAVAILABLE
        if dest.address is None:
            return UNRESOLVABLE  # a host name that did not resolve at load time
        return Forward(dest.address, True, setid, dest)
