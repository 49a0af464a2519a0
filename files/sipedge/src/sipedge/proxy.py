"""The sans-I/O core: datagrams and time in, datagrams and timers out.

`Proxy.on_datagram(data, src, now)` handles one received datagram and calls
`send(data, (host, port))` for whatever must go out; `Proxy.run_timers(now)`
fires due timers and `next_deadline()` says when to call it again.  Nothing
here touches a socket or a clock, so every path runs under a fake clock.
"""

import logging

from . import build
from .dispatcher import Dispatcher, DispatcherSettings
from .message import ParseError, parse
from .route import Router
from .timers import Timers
from .transaction import ACK, CANCEL, TransactionLayer, server_key

log = logging.getLogger("sipedge")
_REQUIRED = (b"from", b"to", b"call-id", b"cseq")


class Proxy:
    """The edge router's core, shared by the shell (shell.py) and the tests."""

    def __init__(self, config, send, local, myself, rng=None, via_local=None):
        """`local` is the host[:port] (bytes) for our Record-Route and, unless
        `via_local` names another (a worker's own port), for our Via;
        `myself` the set of (host bytes, port) that name this edge."""
        self.config = config
        self.send = send
        self.local = local
        self.myself = myself
        self.timers = Timers()
        self.dispatcher = Dispatcher(DispatcherSettings(
            algorithm=config.algorithm, set_algorithms=dict(config.set_algorithms),
            priority_order=config.priority_order, probing_threshold=config.probing_threshold,
            inactive_threshold=config.inactive_threshold, ping_reply_codes=frozenset(config.ping_reply_codes)), rng)
        self.router = Router(config, self.dispatcher, self.is_myself)
        self.txns = TransactionLayer(config, self.timers, send, via_local or local, self.is_myself)
        self._ping_timer = None
        for warning in self.dispatcher.settings_warnings:
            log.warning("%s", warning)

    def is_myself(self, host, port):
        if host.startswith(b"["):
            host = host[1:-1]
        return (host, port) in self.myself

    # ---- routing data ---------------------------------------------------
    def load(self, data):
        """Swap in new routing data (a store.RoutingData) at once."""
        self.commit(self.prepare(data))

    def prepare(self, data):
        """Everything a reload computes, without touching the tables in use:
        safe to run in the DB thread while this core routes (see commit)."""
        domains = {d.encode("utf-8", "surrogateescape"): s for d, s in data.domains.items()}
        prepared = self.dispatcher.prepare(data.destinations)
        for warning in data.warnings + tuple(prepared.warnings):
            log.warning("%s", warning)
        return domains, prepared

    def commit(self, prepared, resolved=None):
        """Put a prepared reload in use, with the addresses of the destinations'
        host names (`resolved`: name -> IP, looked up by the shell at each load);
        costs what changed, not the table's size."""
        domains, destinations = prepared
        self.router.domains = domains
        self.dispatcher.commit(destinations, resolved)

    def stats(self):
        """Counters for `sipedge ctl stats`."""
        return {"server_transactions": len(self.txns.server), "client_transactions": len(self.txns.client),
                "timers": len(self.timers), "domains": len(self.router.domains),
                "destinations": len(self.dispatcher.destinations())}

    # ---- time -------------------------------------------------------------
    def next_deadline(self):
        return self.timers.next_deadline()

    def run_timers(self, now):
        self.timers.run(now)

    def start(self, now):
        """Start the health checks: a first round now, then every ping_interval."""
        if self.config.ping_interval > 0 and self._ping_timer is None:
            self._ping_round(None, now)

    def _ping_round(self, _arg, now):
        cfg = self.config
        for dest in self.dispatcher.ping_targets():
            if dest.address is None:
                self._ping_result(dest, 500)
                continue
            self.txns.ping(dest, dest.address, cfg.ping_from.encode(), cfg.ping_method.encode(), now, self._ping_result)
        self._ping_timer = self.timers.start(now + cfg.ping_interval, self._ping_round, None)

    def _ping_result(self, dest, code):
        change = self.dispatcher.ping_result(dest, code)
        if change == "up":
            log.info("Asterisk UP: %s", dest.uri)
        elif change == "down":
            log.warning("Asterisk DOWN: %s", dest.uri)

    # ---- datagrams ----------------------------------------------------------
    def on_datagram(self, data, src, now):
        """Handle one received datagram from src = (ip str, port int)."""
        try:
            if data[:8] == b"SIP/2.0 ":
                self.txns.on_response(data, now)
                return
            msg = parse(data)
        except ParseError as exc:
            log.debug("dropped unparsable datagram from %s: %s", src[0], exc)
            return
        if not msg.is_request:
            return  # a response of another SIP version
        # Dropped without a reply, as by Kamailio: a request without a Via or
        # the transaction-identifying headers, or with any header that does
        # not parse (Kamailio's core drops it, or cannot build a reply to it).
        if msg.top_via is None or msg.bad_header is not None or any(msg.index(name) < 0 for name in _REQUIRED):
            log.debug("dropped malformed request from %s", src[0])
            return
        reply_addr = (src[0], build.stamp_via(msg, src[0].encode(), src[1]))
        key = server_key(msg)
        if self.txns.absorb(msg, key, now):
            return
        outcome = self.router.route(msg, src[0])
        kind = outcome[0]
        if kind == "forward":
            self._forward(msg, key, reply_addr, outcome, now)
        elif kind == "reply" and msg.method != ACK:
            self.send(build.reply(msg, outcome[1], outcome[2]), reply_addr)

    def _forward(self, msg, key, reply_addr, outcome, now):
        dest, record_route = outcome[1:]
        if msg.method == CANCEL:
            invite = self.txns.server.get(key[:-1] + (b"INVITE",))
            if invite is not None:
                self.txns.cancel(invite, msg, key, reply_addr, now)
                return
        if record_route:
            msg.insert(0, b"record-route", build.record_route_line(self.local, msg.from_tag))
        if msg.method == ACK:
            self.txns.forward_stateless(msg, dest)
        else:
            self.txns.forward(msg, key, reply_addr, dest, now)
