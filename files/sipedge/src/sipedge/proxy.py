"""The sans-I/O core: datagrams and time in, datagrams and timers out.

`Proxy.on_datagram(data, src, now)` handles one received datagram and calls
`send(data, (host, port))` for whatever must go out; `Proxy.run_timers(now)`
fires due timers and `next_deadline()` says when to call it again.  Nothing
here touches a socket or a clock, so every path runs under a fake clock.
Routing data comes in through `prepare` (any thread) and `commit` (this one).
"""

import collections
import logging

from . import build
from .dispatcher import Dispatcher, DispatcherSettings
from .health import Health
from .message import ParseError, parse
from .route import Drop, Forward, Reply, Router
from .timers import Timers
from .uri import ip_literal
from .transaction import ACK, CANCEL, INVITE, TransactionLayer, server_key

log = logging.getLogger("sipedge")
_REQUIRED = (b"from", b"to", b"call-id", b"cseq")
SHED_RETRY_AFTER = 5  # seconds a shed caller (or the proxy in front) waits before trying this edge again
# Requests are counted by method for these; any other method (a token the sender
# invents, maybe a long unique one) counts as b"other": counters never grow with traffic.
COUNTED_METHODS = frozenset((b"INVITE", b"ACK", b"BYE", b"CANCEL", b"OPTIONS", b"REGISTER", b"PRACK", b"SUBSCRIBE",
                             b"NOTIFY", b"PUBLISH", b"INFO", b"REFER", b"MESSAGE", b"UPDATE"))


class Proxy:
    """The edge router's core, shared by the shell (shell.py) and the tests."""

    def __init__(self, config, send, local, myself, rng=None, via_local=None, pings=True):
        """`local` is the host[:port] (bytes) for our Record-Route and, unless
        `via_local` names another (a worker's own port), for our Via;
        `myself` the set of (host bytes, port) that name this edge.  With
        `pings` False this core keeps no keep-alives of its own (another
        process does, and hands its results over)."""
        self.config = config
        self.counters = collections.Counter()
        self._send = send
        self.local = local
        self.myself = myself
        self.timers = Timers()
        self.dispatcher = Dispatcher(DispatcherSettings(
            algorithm=config.algorithm, set_algorithms=dict(config.set_algorithms),
            priority_order=config.priority_order, removed_grace=config.removed_grace), rng)
        self.router = Router(config, self.dispatcher, self.is_myself)
        self.txns = TransactionLayer(config, self.timers, self.send, via_local or local, self.is_myself,
                                     on_failure=self._branch_failed, count=self.count)
        self.health = Health(config, self.dispatcher, self.txns, self.timers, log_events=pings)
        self.pings = pings
        self.report_failure = None  # (destination) -> None: tells the process that keeps the health checks
        for warning in self.dispatcher.settings_warnings:
            log.warning("%s", warning)

    def is_myself(self, host, port):
        if b":" in host:  # IPv6: any spelling of one of our addresses
            ip = ip_literal(host)
            host = host if ip is None else ip.encode()
        return (host, port) in self.myself

    def send(self, data, address):
        if data[:4] == b"SIP/":
            self.counters["reply", data[8:11]] += 1
        self._send(data, address)

    def count(self, key):
        self.counters[key] += 1

    # ---- routing data ---------------------------------------------------
    def load(self, data, now=0.0):
        """Swap in new routing data (a store.RoutingData) at once."""
        self.commit(self.prepare(data), now)

    def prepare(self, data, resolve=None):
        """Everything a reload computes, without touching the tables in use:
        safe to run in the DB thread while this core routes (see commit).
        `resolve(name)` -> IP or None looks the destinations' host names up."""
        domains = {d.encode("utf-8", "surrogateescape"): s for d, s in data.domains.items()}
        prepared = self.dispatcher.prepare(data.destinations, resolve)
        for warning in data.warnings + tuple(prepared.warnings):
            log.warning("%s", warning)
        return domains, prepared

    def commit(self, prepared, now):
        """Put a prepared reload in use; costs what changed, not the table's size."""
        domains, destinations = prepared
        self.router.domains = domains
        self.dispatcher.commit(destinations, now)

    def stats(self):
        """Counters for `sipedge ctl stats` and /metrics."""
        counters = self.counters
        by_kind = collections.defaultdict(dict)
        for key, value in counters.items():
            if len(key) == 2:
                name = key[1].decode("ascii", "replace") if isinstance(key[1], bytes) else key[1]
                by_kind[key[0]][name] = value
        return {"server_transactions": len(self.txns.server), "client_transactions": len(self.txns.client),
                "timers": len(self.timers), "domains": len(self.router.domains),
                "destinations": len(self.dispatcher.destinations()),
                "received": by_kind["received"], "replies": by_kind["reply"], "drops": by_kind["drop"],
                "failovers": counters["failover"], "sheds": counters["shed"]}

    # ---- time -------------------------------------------------------------
    def next_deadline(self):
        return self.timers.next_deadline()

    def run_timers(self, now):
        self.timers.run(now)

    def start(self, now):
        """Start the health checks (unless another process keeps them)."""
        if self.pings:
            self.health.start(now)

    # ---- datagrams ----------------------------------------------------------
    def on_datagram(self, data, src, now, overloaded=False):
        """Handle one received datagram from src = (ip str, port int).  When the
        shell is `overloaded`, a new INVITE is shed with a 503 (docs/design.md
        decision 16) and everything else is served as usual."""
        counters = self.counters
        try:
            if data[:8] == b"SIP/2.0 ":
                counters["received", "response"] += 1
                self.txns.on_response(data, now)
                return
            msg = parse(data)
        except ParseError as exc:
            counters["drop", "unparsable"] += 1
            log.debug("dropped unparsable datagram from %s: %s", src[0], exc)
            return
        if not msg.is_request:
            counters["drop", "unparsable"] += 1
            return  # a response of another SIP version
        # Dropped without a reply, as by Kamailio: a request without a Via or
        # the transaction-identifying headers, or with any header that does
        # not parse (Kamailio's core drops it, or cannot build a reply to it).
        if msg.top_via is None or msg.bad_header is not None or any(msg.index(name) < 0 for name in _REQUIRED):
            counters["drop", "malformed"] += 1
            log.debug("dropped malformed request from %s", src[0])
            return
        counters["received", msg.method if msg.method in COUNTED_METHODS else b"other"] += 1
        reply_addr = (src[0], build.stamp_via(msg, src[0].encode(), src[1]))
        key = server_key(msg)
        if self.txns.absorb(msg, key, now):
            return
        if overloaded and msg.method == INVITE and not msg.to_tag:
            counters["shed"] += 1
            self.send(build.reply(msg, 503, b"Service Unavailable", extra=(b"Retry-After: %d" % SHED_RETRY_AFTER,)),
                      reply_addr)
            return
        outcome = self.router.route(msg, src[0], now)
        kind = outcome.__class__
        if kind is Forward:
            self._forward(msg, key, reply_addr, outcome, now)
        elif kind is Reply:
            if msg.method != ACK:
                self.send(build.reply(msg, outcome.code, outcome.reason), reply_addr)
        elif kind is Drop:
            counters["drop", outcome.reason] += 1

    def _forward(self, msg, key, reply_addr, route, now):
        if msg.method == CANCEL:
            invite = self.txns.server.get(key[:-1] + (INVITE,))
            if invite is not None:
                self.txns.cancel(invite, msg, key, reply_addr, now)
                return
        if route.record_route:
            msg.insert(0, b"record-route", build.record_route_line(self.local, msg.from_tag))
        if msg.method == ACK:
            self.txns.forward_stateless(msg, route.address)
            return
        if route.destination is not None:
            route.destination.calls += 1
        self.txns.forward(msg, key, reply_addr, route, now)

    def _branch_failed(self, txn, code, now):
        """A branch of an INVITE failed (no provisional before fr_timer, or a
        failover code): mark its destination and name the next one, if any."""
        failed = txn.route
        if not self.config.failover or failed.destination is None:
            return None  # an in-dialog request: no set to fail over in
        failed.destination.failures += 1
        self.health.mark_failed(failed.destination)
        if self.report_failure is not None:
            self.report_failure(failed.destination)
        if len(txn.branches) > self.config.failover_attempts:
            return None
        nxt = self.dispatcher.next_destination(failed.setid, [branch.destination for branch in txn.branches])
        if nxt is None or nxt.address is None:
            return None
        self.counters["failover"] += 1
        log.info("failover: %s answered %d, trying %s", failed.destination.uri, code, nxt.uri)
        nxt.calls += 1
        return Forward(nxt.address, True, failed.setid, nxt)
