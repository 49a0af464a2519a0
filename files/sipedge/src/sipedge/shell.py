"""A SIP worker process: sockets, the clock and the routing DB around the core.

It holds no SIP logic.  Its Loop (loop.py) reads datagrams in batches from
non-blocking sockets (one wake-up serves up to `BATCH`) and hands them to the
core (proxy.py) with the monotonic time.  Slow work runs in a thread that
hands its results to the loop: the routing DB poll, which also prepares the
new table there, so that a reload costs the loop only the swap (a slow or
locked DB never blocks routing; a failed read keeps the last good table).

The main process (manager.py) keeps the health checks, the control socket and
the admin endpoint; a worker talks to it over a Link: destination states in,
failed calls, counters and readiness out.

Overload (docs/design.md decision 16): the first datagram of each wake-up is read
with its kernel receive time; while the edge is behind (Backlog), new INVITEs are
shed with 503 (see Proxy.on_datagram).
On SIGTERM the worker drains: it sheds new INVITEs the same way while the
transactions in flight finish, for up to `sip.drain_timeout` seconds.
"""

import gc
import logging
import os
import sys
import time

from .loop import Link, Loop
from .net import TIMESTAMP_SPACE, advertised, names_of_self, queue_delay, resolve, spread_by_source, udp_socket
from .proxy import Proxy
from .store import RoutingStore, Watcher
from .transaction import PENDING
from .uri import hostport, split_hostport

log = logging.getLogger("sipedge")
BATCH = 64
RECV_SIZE = 65535
DRAIN_CHECK = 0.1  # seconds between looks at the transactions in flight while draining


def _store_failed(error):
    """The routing DB went unreadable (or readable again): the table in use stays."""
    if error is None:
        log.info("routing DB readable again")
    else:
        log.error("routing DB unreadable, keeping the last good table: %s", error)


class Backlog:
    """Behind or not, from how long the oldest waiting datagram sat in the
    kernel's queue (docs/design.md decision 16).  The edge is behind when that
    stays above `limit` for as long again (a queue that builds up, not one late
    wake-up after a pause), and no longer once it falls below a quarter of
    it: no flapping."""

    def __init__(self, limit):
        self.limit = limit
        self.overloaded = False
        self.behind_since = None  # since when datagrams wait longer than the limit
        self.delay_max = 0.0  # the longest wait seen since someone reset it (sipedge ctl stats)

    def judge(self, delay, now):
        if delay is None:
            return self.overloaded
        self.delay_max = max(self.delay_max, delay)
        if delay > self.limit:
            if self.behind_since is None:
                self.behind_since = now
            elif not self.overloaded and now - self.behind_since >= self.limit:
                log.warning("overloaded: datagrams wait %.0f ms; new INVITEs get 503 until it drains", delay * 1000)
                self.overloaded = True
        elif delay < self.limit / 4:
            self.behind_since = None
            if self.overloaded:
                log.warning("overload over: datagrams wait %.0f ms", delay * 1000)
                self.overloaded = False
        return self.overloaded


class Edge:  # pylint: disable=too-many-instance-attributes
    """One worker: a Proxy on the configured sockets until stopped.

    With `reuseport` (one of several workers) the listening sockets are
    shared with the other workers through SO_REUSEPORT, which keeps each
    source address on one worker, and requests go downstream from a socket of
    this worker's own, named in our Via, so their responses come back here.
    """

    def __init__(self, config, link_sock, reuseport=False):
        self.config = config
        self.reuseport = reuseport
        self.loop = Loop()
        self.link = Link(self.loop, link_sock, self._message, self.loop.stop)
        self.socks = []  # (Listen, socket) of the listening sockets
        self.reply_socks = {}  # family is IPv6 -> socket replies leave from
        self.send_socks = {}  # family is IPv6 -> socket requests are relayed from
        self.proxy = None
        self.store = RoutingStore(config.db_path)
        self.watcher = Watcher(self.store, config.db_poll_interval, self.loop.stopping,
                               lambda data: self.loop.post(self._load, data, self._prepare(data), True),
                               _store_failed)
        self.backlog = Backlog(config.overload_delay)
        self.draining = None  # the time draining ends, once SIGTERM came

    # ---- sockets -------------------------------------------------------------
    def bind(self):
        for listen in self.config.listen:
            sock = udp_socket(listen.family_v6, self.reuseport)
            sock.bind((listen.host, listen.port))
            if self.reuseport:
                spread_by_source(sock, self.config.workers, listen.family_v6)
            self.socks.append((listen, sock))
            self.loop.add(sock.fileno(), self._reader(sock))
            if listen.family_v6 not in self.reply_socks:
                self.reply_socks[listen.family_v6] = self.send_socks[listen.family_v6] = sock
                if self.reuseport:
                    own = udp_socket(listen.family_v6)
                    own.bind((listen.host, 0))
                    self.send_socks[listen.family_v6] = own
                    self.loop.add(own.fileno(), self._reader(own))

    def send(self, data, addr):
        # Replies leave from the port their requests came to, requests from ours.
        sock = (self.reply_socks if data[:4] == b"SIP/" else self.send_socks).get(":" in addr[0])
        if sock is None:
            log.debug("no socket for the address family of %s", addr[0])
            return
        try:
            sock.sendto(data, addr)
        except Exception as exc:  # pylint: disable=broad-except
            # OSError, and whatever else sendto raises for an address the core
            # should not have produced: a send costs one datagram, never state.
            log.debug("send to %r failed: %s", addr, exc)

    def _reader(self, sock):
        def readable(now, _events):
            self._readable(sock, now)
        return readable

    def _readable(self, sock, now):
        on_datagram = self.proxy.on_datagram
        overloaded = self.backlog.overloaded
        for i in range(BATCH):
            try:
                if i == 0 and self.config.overload_delay:
                    # The first datagram of a wake-up is the one that waited longest.
                    data, ancillary, _flags, src = sock.recvmsg(RECV_SIZE, TIMESTAMP_SPACE)
                    overloaded = self.backlog.judge(queue_delay(ancillary, time.time()), now)
                else:
                    data, src = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable surfacing on Linux
                log.debug("receive error: %s", exc)
                continue
            try:
                on_datagram(data, src[:2], now, overloaded or self.draining is not None)
            except Exception:  # pylint: disable=broad-except
                # A bug must cost one message, never the router.
                log.exception("internal error on a datagram from %s", src[0])

    # ---- the routing DB ---------------------------------------------------------
    def _prepare(self, data):
        """The new table, built in this thread.  The cyclic GC waits meanwhile:
        a table of 30,000 rows is that many young objects, and a collection
        triggered here would scan them all while holding the loop (23 ms,
        measured); afterwards the table, long-lived, is frozen out of every
        later collection (it makes no cycles: refcounting frees it)."""
        gc.disable()
        try:
            return self.proxy.prepare(data, resolve)
        finally:
            gc.freeze()
            gc.enable()

    def _load(self, data, prepared, reloaded=False):
        self.proxy.commit(prepared, time.monotonic())
        self.link.send({"op": "loaded"})  # the main process answers with the destinations' states
        if reloaded:
            log.info("routing data reloaded: %d domains, %d destinations", len(data.domains), len(data.destinations))

    # ---- the main process ---------------------------------------------------------
    def _message(self, message):
        op = message["op"]
        if op == "states":
            self.proxy.dispatcher.apply_states(message["states"])
        elif op == "stats":
            dests = [[d.setid, d.uri, d.calls, d.failures] for d in self.proxy.dispatcher.destinations()
                     if d.calls or d.failures]
            stats = dict(self.proxy.stats(), queue_delay_max=self.backlog.delay_max)
            self.backlog.delay_max = 0.0
            self.link.send({"op": "stats", "id": message["id"], "stats": stats, "calls": dests})
        elif op == "reload":
            self.watcher.wake()

    def _report_failure(self, dest):
        self.link.send({"op": "failed", "setid": dest.setid, "uri": dest.uri})

    # ---- stopping: drain ----------------------------------------------------------
    def _drain(self):
        """SIGTERM: shed new INVITEs while the transactions in flight finish."""
        if self.draining is not None:
            return
        if not self.config.drain_timeout or not self._in_flight():
            self.loop.stop()
            return
        self.draining = time.monotonic() + self.config.drain_timeout
        log.info("draining: new INVITEs get 503 while %d transactions finish (at most %.0f s)",
                 self._in_flight(), self.config.drain_timeout)
        self.proxy.timers.start(time.monotonic() + DRAIN_CHECK, self._drain_check, None)

    def _in_flight(self):
        return sum(1 for txn in self.proxy.txns.server.values() if txn.state in PENDING)

    def _drain_check(self, _arg, now):
        if not self._in_flight() or now >= self.draining:
            self.loop.stop()
        else:
            self.proxy.timers.start(now + DRAIN_CHECK, self._drain_check, None)

    # ---- the loop -------------------------------------------------------------------
    def serve(self):
        data = self.store.open()
        self.bind()
        listen, sock = self.socks[0]
        local = advertised(self.config, listen.host, sock.getsockname()[1])
        via_local = None
        if self.reuseport:
            own_port = self.send_socks[listen.family_v6].getsockname()[1]
            via_local = hostport(split_hostport(local)[0], own_port, None)
        myself = names_of_self(self.socks, local)
        myself.update((host, s.getsockname()[1]) for host, _port in list(myself) for s in self.send_socks.values())
        self.proxy = Proxy(self.config, self.send, local, myself, via_local=via_local, pings=False)
        self.proxy.report_failure = self._report_failure
        self._load(data, self._prepare(data))
        self.watcher.start()
        log.info("sipedge worker %d listening on %s, advertising %s; %d domains, %d destinations", os.getpid(),
                 ", ".join(str(listen) for listen, _sock in self.socks), local.decode(),
                 len(data.domains), len(data.destinations))
        self.link.send({"op": "ready", "pid": os.getpid(), "advertised": local.decode()})
        # The core makes no reference cycles on its hot path (timers and
        # transactions unlink each other when done), so the cyclic GC only
        # costs time: collect rarely, and never walk the start-up objects.
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        # While the DB thread prepares a reload, the loop waits for the GIL at most
        # this long per wake-up (Python's default is 5 ms); alone, the loop never waits.
        sys.setswitchinterval(0.001)
        try:
            self.loop.run(self.proxy, on_signal=self._drain)
        finally:
            self.loop.stopping.set()
            self.watcher.wake()
            for _listen, sock in self.socks:
                sock.close()
            for sock in self.send_socks.values():
                if sock.fileno() >= 0:
                    sock.close()
        log.debug("sipedge worker %d stopped", os.getpid())
