"""OPTIONS keep-alives and each destination's up/down state (sans-I/O).

Kamailio's dispatcher with ds_probing_mode=1 (docs/sip-spec-notes.md §2.9, docs/design.md
decision 1): every `ping_interval` each destination that is not disabled gets
an OPTIONS; any 2xx (or a configured code) is a success, a timeout after
`ping_timeout` a local 408.  `probing_threshold` failures in a row make a
destination INACTIVE (no calls), `inactive_threshold` successes in a row make
it active again, and one success heals a TRYING one.  A destination that
failed a call is marked INACTIVE at once (Kamailio's `ds_mark_dst("ip")`,
docs/design.md decision 14); the pings bring it back.

Every change of selectability is an event ("up" or "down"), logged once.
The state lives in the destinations' `flags` (dispatcher.py); results that
arrive after a reload apply to the destination now loaded under the same
(setid, uri), as Kamailio's ds_update_state does, and are ignored for one
that is gone.
"""

import logging

from . import build
from .dispatcher import DISABLED, HEALTH_BITS, INACTIVE, PROBING, SKIP, TRYING, Dispatcher, DispatcherSettings
from .timers import Timers
from .transaction import TransactionLayer

log = logging.getLogger("sipedge")
UP, DOWN = "up", "down"


class Health:
    """The keep-alive state machine, and (given a transaction layer and timers)
    the pings that feed it."""

    def __init__(self, config, dispatcher, txns=None, timers=None, on_event=None, log_events=True):
        self.dispatcher = dispatcher
        self.log_events = log_events  # a worker marks quietly: the main process logs, once per edge
        self.txns, self.timers = txns, timers
        self.interval = config.ping_interval
        self.timeout = config.ping_timeout or config.fr_timer  # Kamailio pings with tm's fr_timer
        self.method, self.ping_from = config.ping_method.encode(), config.ping_from.encode()
        self.reply_codes = frozenset(config.ping_reply_codes)
        self.probing_threshold, self.inactive_threshold = config.probing_threshold, config.inactive_threshold
        self.on_event = on_event  # (destination, "up" or "down") after the log line
        self.round = None

    # ---- pings ---------------------------------------------------------------
    def start(self, now):
        """A first round now, then one every `interval` (0: never)."""
        if self.interval > 0 and self.round is None:
            self._round(None, now)

    def _round(self, _arg, now):
        for dest in self.dispatcher.ping_targets():
            self.ping(dest, now)
        self.round = self.timers.start(now + self.interval, self._round, None)

    def ping(self, dest, now):
        if dest.address is None:
            self.result(dest, 500, now)  # a host name that does not resolve
            return
        branch = self.txns.new_branch()
        data = build.options_ping(dest.uri.encode(), self.ping_from, self.txns.local, branch,
                                  branch[7:] + b"@sipedge", self.method)
        self.txns.request(data, branch, dest.address, self.timeout, now,
                          lambda code, at: self.result(dest, 408 if code is None else code, at,
                                                       rtt=None if code is None else at - now))

    # ---- the state machine -----------------------------------------------------
    def result(self, dest, code, now, rtt=None):
        """Apply one keep-alive result (408 for a timeout); returns the event."""
        current = self.dispatcher.find(dest.setid, dest.uri)
        if current is None:
            return None
        current.last_ping, current.last_code, current.rtt = now, code, rtt
        if current.flags & DISABLED or current.pinned:
            return None
        old, count = current.flags, current.probing_count
        if 200 <= code <= 299 or code in self.reply_codes:
            state = PROBING
            if old & INACTIVE:
                count += 1
                if count < self.inactive_threshold:
                    state |= INACTIVE  # not enough successes in a row yet
                else:
                    count = 0
            else:
                count = 0  # one success heals TRYING
        elif old & INACTIVE:
            state, count = INACTIVE | PROBING, 0  # the success streak starts again
        else:
            count += 1
            if count >= self.probing_threshold:
                state, count = INACTIVE | PROBING, 0
            else:
                state = TRYING | PROBING
        return self._set(current, state, count)

    def mark_failed(self, dest):
        """A call failed on `dest`: out of rotation at once, pings bring it back."""
        current = self.dispatcher.find(dest.setid, dest.uri)
        if current is None or current.flags & DISABLED or current.pinned:
            return None
        return self._set(current, INACTIVE | PROBING, 0)

    def _set(self, dest, state, count):
        old = dest.flags
        dest.flags = (old & ~HEALTH_BITS) | state
        dest.probing_count = count
        was, now = bool(old & SKIP), bool(dest.flags & SKIP)
        if was == now:
            return None
        event = UP if was else DOWN
        if not self.log_events:
            pass
        elif event is UP:
            log.info("Asterisk UP: %s", dest.uri)
        else:
            log.warning("Asterisk DOWN: %s", dest.uri)
        if self.on_event is not None:
            self.on_event(dest, event)
        return event


class Checker:
    """The keep-alives of a whole edge, in the one process that sends them
    (manager.py): destinations, the state machine, and the client
    transactions of the pings.  Sans-I/O like the SIP core."""

    def __init__(self, config, send, local, on_event=None):
        self.timers = Timers()
        self.dispatcher = Dispatcher(DispatcherSettings(
            algorithm=config.algorithm, set_algorithms=dict(config.set_algorithms),
            priority_order=config.priority_order, removed_grace=config.removed_grace))
        self.txns = TransactionLayer(config, self.timers, send, local, lambda _host, _port: False)
        self.health = Health(config, self.dispatcher, self.txns, self.timers, on_event)

    def prepare(self, data, resolve=None):
        """A reload's destinations, prepared in any thread (see Dispatcher.prepare)."""
        return self.dispatcher.prepare(data.destinations, resolve)

    def commit(self, prepared, now):
        self.dispatcher.commit(prepared, now)

    def on_datagram(self, data, now):
        """A datagram on the pings' socket: only answers to our pings count."""
        self.txns.on_local_response(data, now)

    def start(self, now):
        self.health.start(now)

    def next_deadline(self):
        return self.timers.next_deadline()

    def run_timers(self, now):
        self.timers.run(now)
