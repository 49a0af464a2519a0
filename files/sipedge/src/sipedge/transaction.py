"""RFC 3261 section 16-17 transactions of a stateful proxy, as a state machine.

A `Txn` joins the server side (the request from upstream, the last reply sent
back) and the client side: the branch the request was forwarded on and, after
a failover, the branches before it.  Its `state` uses RFC 3261's names:

  TRYING      a non-INVITE forwarded, no reply yet     (request retransmitted, fr_timer)
  CALLING     an INVITE forwarded, no provisional yet  (request retransmitted, fr_timer)
  PROCEEDING  a provisional reply came                 (INVITE: fr_inv_timer, restarted by each
                                                        one; non-INVITE: retransmitted at T2)
  COMPLETED   a final reply went upstream              (INVITE 3xx-6xx: retransmitted until the
                                                        ACK, up to fr_timer; then it lingers)
  CONFIRMED   the ACK of an INVITE's negative reply came (it lingers)
  ACCEPTED    a 2xx to an INVITE went upstream         (later 2xx still go up; it lingers)
  TERMINATED  gone from every table

`_enter` is the one place a state changes: it checks the move against
TRANSITIONS and sets the timers that belong to the new state, so a
transaction never exists without a timer that ends it.  Timers follow
Kamailio's tm (docs/sip-spec-notes.md §5.3), including max_inv_lifetime; lingering
(LINGER s) absorbs retransmissions before every trace of a transaction goes.

Every 2xx to an INVITE goes upstream, whenever it comes (RFC 3261 16.7 step 5).
A failed branch of an INVITE (no provisional before fr_timer, or a final code
the caller of this layer treats as a failure) is offered to `on_failure`,
which may name the next destination: the INVITE goes there on a new branch
of the same transaction, so the caller sees one 100 and one final answer.
"""

import os

from . import build
from .message import ParseError, parse
from .uri import ip_literal, port_number

LINGER = 5.0  # Kamailio's wt_timer; RFC 3261 Timer I/K for UDP
TRYING_REASON = b"trying -- your call is important to us"
INVITE, ACK, CANCEL = b"INVITE", b"ACK", b"CANCEL"


class State:  # pylint: disable=too-few-public-methods
    """A transaction state: a sentinel compared by identity (an Enum's hash
    is Python code, and states are looked up on every message)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


TRYING, CALLING, PROCEEDING = State("Trying"), State("Calling"), State("Proceeding")
COMPLETED, CONFIRMED, ACCEPTED, TERMINATED = State("Completed"), State("Confirmed"), State("Accepted"), State("Terminated")
PENDING = (TRYING, CALLING, PROCEEDING)  # no final reply upstream yet

# Where each state may go.  None is a transaction being created; COMPLETED from
# None is a CANCEL's own transaction, answered at once.  CALLING again is a
# failover onto a new branch.
TRANSITIONS = {
    None: frozenset((TRYING, CALLING, COMPLETED)),
    TRYING: frozenset((PROCEEDING, COMPLETED)),
    CALLING: frozenset((CALLING, PROCEEDING, COMPLETED, ACCEPTED)),
    PROCEEDING: frozenset((PROCEEDING, CALLING, COMPLETED, ACCEPTED)),
    COMPLETED: frozenset((CONFIRMED, ACCEPTED, TERMINATED)),
    CONFIRMED: frozenset((ACCEPTED, TERMINATED)),
    ACCEPTED: frozenset((TERMINATED,)),
    TERMINATED: frozenset(),
}


class TransitionError(Exception):
    """A move that TRANSITIONS does not allow: a bug in this module."""


def server_key(msg):
    """Key of the server transaction a request belongs to (RFC 3261 17.2.3);
    an ACK looks up its INVITE, a CANCEL's INVITE is the key with INVITE.

    A branch is RFC 3261's when something follows the magic cookie (as
    Kamailio decides); otherwise the RFC 2543 identifiers match: R-URI, To
    tag (none for INVITE, its ACK and CANCEL), From tag, Call-ID, CSeq number
    and the top Via."""
    via = msg.top_via
    method = INVITE if msg.method == ACK else msg.method
    branch = via.branch
    if branch and len(branch) > 7 and branch.startswith(b"z9hG4bK"):
        return (branch, via.host, via.port, method)
    cseq = msg.cseq
    to_tag = None if method in (INVITE, CANCEL) else msg.to_tag
    return (msg.ruri, to_tag, msg.from_tag, msg.call_id, cseq[0] if cseq else None,
            via.host, via.port, via.params_raw, method)


class Retransmission:
    """`data` sent again to `address` after `interval`, the interval doubling up
    to T2, until stopped or `until` (RFC 3261 Timers A, E and G, and the
    CANCEL and keep-alive requests of the edge)."""

    __slots__ = ("data", "address", "interval", "until", "entry")

    def __init__(self, data, address, interval, until):
        self.data, self.address, self.interval, self.until, self.entry = data, address, interval, until, None


class Branch:
    """One forwarding of a transaction's request downstream."""

    __slots__ = ("id", "address", "destination", "provisional", "final", "cancel")

    def __init__(self, branch_id, address, destination):
        self.id, self.address, self.destination = branch_id, address, destination
        self.provisional = False
        self.final = 0
        self.cancel = None  # the Retransmission of our CANCEL on this branch


class Txn:
    """One proxied transaction, or (no branches) a CANCEL's own transaction
    that only replays its 200."""

    __slots__ = ("key", "method", "reply_addr", "request", "fwd", "state", "branch", "branches", "last_reply", "retr",
                 "timer", "started", "canceled", "route")

    def __init__(self, key, method, reply_addr, now):
        self.key, self.method, self.reply_addr, self.started = key, method, reply_addr, now
        self.request = self.fwd = self.last_reply = self.retr = self.timer = self.route = None
        self.state = self.branch = None  # branch: the current one, the last of `branches`
        self.branches = []
        self.canceled = False

    def find(self, branch_id):
        for branch in reversed(self.branches):
            if branch.id == branch_id:
                return branch
        return None


class LocalRequest:
    """A non-INVITE request the edge sends itself (a keep-alive): a client
    transaction with no upstream; `on_result(code, now)` gets its final
    code, None when none came within its timeout."""

    __slots__ = ("branch", "retr", "timer", "on_result")

    def __init__(self, branch, on_result):
        self.branch, self.on_result = branch, on_result
        self.retr = self.timer = None


class TransactionLayer:  # pylint: disable=too-many-instance-attributes
    """Server and client transaction tables plus their timers."""

    def __init__(self, config, timers, send, local, is_myself, on_failure=None, count=None):
        self.t1, self.t2 = config.t1, config.t2
        self.fr_timer, self.fr_inv_timer = config.fr_timer, config.fr_inv_timer
        self.max_inv_lifetime = config.max_inv_lifetime
        self.failure_codes = frozenset(config.failover_codes) if config.failover else frozenset()
        self.timers, self.send, self.local, self.is_myself = timers, send, local, is_myself
        # on_failure(txn, code, now) -> a route.Forward for the next branch, or None
        self.on_failure = on_failure or (lambda txn, code, now: None)
        self.count = count or (lambda key: None)
        self.server = {}
        self.client = {}  # branch id -> Txn or LocalRequest
        self._prefix = b"z9hG4bKse" + os.urandom(4).hex().encode() + b"."
        self._via_prefix = b"\r\n" + build.via_line(local, b"")
        self._counter = 0

    def new_branch(self):
        self._counter += 1
        return self._prefix + b"%x" % self._counter

    def __len__(self):
        return len(self.server) + len(self.client)

    # ---- the state machine ------------------------------------------------
    def _enter(self, txn, state, now):
        """Move `txn` to `state` and set the timers of that state."""
        if state not in TRANSITIONS[txn.state]:
            raise TransitionError("%s %s -> %s" % (txn.method.decode(), txn.state, state))
        txn.state = state
        invite = txn.method == INVITE
        if state is TRYING or state is CALLING:
            self._stop(txn)
            branch = txn.branch
            txn.retr = self._retransmit_start(txn.fwd, branch.address, now)
            txn.timer = self._deadline(txn, now + self.fr_timer, self._final_timeout)
        elif state is PROCEEDING:
            if invite:  # no more retransmissions; fr_inv_timer restarts with every provisional
                self._stop(txn)
                txn.timer = self._deadline(txn, now + self.fr_inv_timer, self._final_timeout)
            elif txn.retr is not None:
                txn.retr.interval = self.t2  # Timer E goes on at T2 (RFC 3261 17.1.2.2)
        elif state is COMPLETED:
            self._stop(txn)
            txn.fwd = None
            if invite:  # the negative reply again until its ACK (Timers G and H)
                txn.retr = self._retransmit_start(txn.last_reply, txn.reply_addr, now)
                txn.timer = self.timers.start(now + self.fr_timer, self._linger, txn)
            else:
                txn.timer = self.timers.start(now + LINGER, self._terminate, txn)
        elif state is CONFIRMED or state is ACCEPTED:
            self._stop(txn)
            txn.fwd = None
            txn.timer = self.timers.start(now + LINGER, self._terminate, txn)
            if state is ACCEPTED:
                txn.request = None  # no ACK or CANCEL will be built from it any more
        else:  # TERMINATED
            self._stop(txn)
            for branch in txn.branches:
                self._retransmit_stop(branch.cancel)
                branch.cancel = None
                if self.client.get(branch.id) is txn:
                    del self.client[branch.id]
            if self.server.get(txn.key) is txn:
                del self.server[txn.key]
            txn.request = txn.fwd = txn.last_reply = None

    def _deadline(self, txn, when, callback):
        """A final-reply timer, never past the INVITE's max_inv_lifetime."""
        if txn.method == INVITE:
            when = min(when, txn.started + self.max_inv_lifetime)
        return self.timers.start(when, callback, txn)

    def _stop(self, txn):
        self._retransmit_stop(txn.retr)
        self.timers.cancel(txn.timer)
        txn.retr = txn.timer = None

    def _linger(self, txn, now):
        """Timer H: stop retransmitting the negative reply, absorb for LINGER s more."""
        self._retransmit_stop(txn.retr)
        txn.retr = None
        txn.timer = self.timers.start(now + LINGER, self._terminate, txn)

    def _terminate(self, txn, now):
        txn.timer = None
        self._enter(txn, TERMINATED, now)

    # ---- the one retransmission helper -------------------------------------
    def _retransmit_start(self, data, address, now, until=None):
        retr = Retransmission(data, address, self.t1, until)
        retr.entry = self.timers.start(now + self.t1, self._retransmit, retr)
        return retr

    def _retransmit(self, retr, now):
        retr.entry = None
        if retr.until is not None and now >= retr.until:
            return
        self.send(retr.data, retr.address)
        retr.interval = min(retr.interval * 2, self.t2)
        retr.entry = self.timers.start(now + retr.interval, self._retransmit, retr)

    def _retransmit_stop(self, retr):
        if retr is not None:
            self.timers.cancel(retr.entry)
            retr.entry = None

    # ---- requests from upstream -------------------------------------------
    def absorb(self, msg, key, now):
        """Handle a request that matches an existing server transaction:
        replay the last reply, or absorb the ACK of a negative final reply.
        Returns False when the request is new (an ACK for a 2xx is too)."""
        txn = self.server.get(key)
        if txn is None:
            return False
        if msg.method == ACK:
            if txn.method != INVITE or txn.state is not COMPLETED and txn.state is not CONFIRMED:
                return False  # an ACK for 2xx is end to end: route it
            if txn.state is COMPLETED:
                self._enter(txn, CONFIRMED, now)
            return True
        if txn.last_reply is not None:
            self.send(txn.last_reply, txn.reply_addr)
        return True

    def forward(self, msg, key, reply_addr, route, now):
        """Create a transaction for `msg` and relay it statefully along
        `route` (a route.Forward)."""
        txn = Txn(key, msg.method, reply_addr, now)
        txn.request = msg
        self.server[key] = txn
        if msg.method == INVITE:
            txn.last_reply = build.reply(msg, 100, TRYING_REASON)
        self._branch_out(txn, route, now)
        if msg.method == INVITE:
            self.send(txn.last_reply, reply_addr)
        self.send(txn.fwd, txn.branch.address)
        return txn

    def _branch_out(self, txn, route, now):
        """Start a new branch of `txn` along `route` (the timers before any send)."""
        branch = txn.branch = Branch(self.new_branch(), route.address, route.destination)
        txn.branches.append(branch)
        txn.route = route
        txn.fwd = self._with_via(txn.request, branch.id)
        self.client[branch.id] = txn
        self._enter(txn, CALLING if txn.method == INVITE else TRYING, now)

    def forward_stateless(self, msg, address):
        """Relay without a transaction (an ACK for 2xx)."""
        self.send(self._with_via(msg, self.new_branch()), address)

    def _with_via(self, msg, branch):
        """Bytes of `msg` with our Via on top; `msg` itself stays as received so
        that local replies built from it carry only the upstream Vias."""
        i = msg.index(b"via")
        msg.insert(i, b"via", build.via_line(self.local, branch))
        data = msg.serialize()
        msg.delete(i)
        return data

    def cancel(self, invite, msg, key, reply_addr, now):
        """CANCEL matching a proxied INVITE: answer it, then cancel the branch
        hop by hop (at once if it rang, else when its first provisional comes)."""
        pending = invite.state in PENDING
        data = build.reply(msg, 200, b"canceling" if pending else b"ok -- no more pending branches")
        own = Txn(key, CANCEL, reply_addr, now)
        own.last_reply = data
        self.server[key] = own
        self._enter(own, COMPLETED, now)
        self.send(data, reply_addr)
        if pending and not invite.canceled:
            invite.canceled = True
            if invite.branch.provisional:
                self._send_cancel(invite, invite.branch, now)

    def _send_cancel(self, txn, branch, now):
        data = build.hop_request(txn.request, CANCEL, self.local, branch.id)
        branch.cancel = self._retransmit_start(data, branch.address, now, until=now + self.fr_timer)
        self.send(data, branch.address)

    # ---- responses from downstream -----------------------------------------
    def on_response(self, data, now):
        """Handle a response datagram.  The common case, our Via on top as we
        wrote it, is matched and relayed by slicing bytes; the rest is parsed.
        Raises ParseError for a response that must be dropped."""
        txn, branch, upstream = self._match_fast(data)
        if txn is not None:
            self._relay(txn, branch, int(data[8:11]), upstream, None, now)
            return
        msg = parse(data)
        if msg.is_request:
            raise ParseError("not a response")
        via = msg.top_via
        owner = self.client.get(via.branch) if via is not None else None
        if owner is None:
            self._forward_response_stateless(msg, via)
        elif owner.__class__ is LocalRequest:
            self._local_response(owner, msg.status, now)
        else:
            branch = owner.find(via.branch)
            if owner.method != CANCEL and msg.cseq_method == CANCEL:
                self._retransmit_stop(branch.cancel)  # our CANCEL was answered
                branch.cancel = None
            elif msg.cseq_method == owner.method:
                status = msg.status
                if status == 503:  # RFC 3261 16.7 step 6: a 503 is not relayed as such
                    msg.status, msg.reason = 500, b"Service Unavailable"
                to_index = msg.index(b"to")
                to_line = msg.lines[to_index] if to_index >= 0 else None
                msg.pop_top_via()
                self._relay(owner, branch, status, msg.serialize(), to_line, now)

    def _match_fast(self, data):
        """(transaction, branch, bytes to relay upstream) when `data` is a
        plain response to one of our proxied requests, else Nones.  Our Via
        may stand alone on its line or be the first of several values."""
        if data[:8] != b"SIP/2.0 " or data[11:12] != b" " or not data[8:11].isdigit() or not b"1" <= data[8:9] <= b"6":
            return None, None, None
        start = data.find(self._via_prefix) + 2
        if start < 2:
            return None, None, None
        above = data[:start].lower()
        if b"\r\nvia" in above or b"\r\nv:" in above or b"\r\nv " in above:
            return None, None, None  # our Via is not the top one
        end = data.find(b"\r\n", start)
        branch_at = start + len(self._via_prefix) - 2
        comma = data.find(b",", branch_at, end)
        branch_id = data[branch_at:end if comma < 0 else comma].rstrip()
        txn = self.client.get(branch_id)
        if txn is None or txn.__class__ is not Txn:
            return None, None, None
        cseq = data.find(b"\r\nCSeq:", end)
        if cseq < 0 or data[cseq + 7:data.find(b"\r\n", cseq + 7)].split()[-1:] != [txn.method]:
            return None, None, None
        status = int(data[8:11])
        if status == 503 or (status >= 300 and txn.method == INVITE):
            return None, None, None  # rewritten, or needs the To line for our ACK
        branch = txn.find(branch_id)
        if comma < 0:
            return txn, branch, data[:start] + data[end + 2:]
        return txn, branch, data[:start] + b"Via: " + data[comma + 1:].lstrip(b" \t")

    def _relay(self, txn, branch, status, upstream, to_line, now):
        """A response on `branch` of `txn`; `upstream` is it without our Via."""
        if status < 200:
            self._provisional(txn, branch, status, upstream, now)
        elif txn.method != INVITE:
            if txn.state in PENDING:
                txn.last_reply = upstream
                self.send(upstream, txn.reply_addr)
                self._enter(txn, COMPLETED, now)
            # else a retransmitted final: absorbed (RFC 3261 17.1.2.2)
        elif status < 300:
            self._accepted(txn, branch, status, upstream, now)
        elif txn.request is not None:  # negative; none is answered once a 2xx went up
            self.send(build.hop_request(txn.request, ACK, self.local, branch.id, to_line), branch.address)
            if branch.final:
                return  # a retransmission: ACKed again, nothing more
            branch.final = status
            self._retransmit_stop(branch.cancel)
            branch.cancel = None
            if branch is txn.branch and txn.state in PENDING:
                if status in self.failure_codes and not txn.canceled and self._failover(txn, status, now):
                    return
                txn.last_reply = upstream
                self.send(upstream, txn.reply_addr)
                self._enter(txn, COMPLETED, now)

    def _provisional(self, txn, branch, status, upstream, now):
        first = not branch.provisional
        branch.provisional = True
        if first and txn.canceled and not branch.final and txn.method == INVITE:
            self._send_cancel(txn, branch, now)  # the CANCEL waited for a provisional
        if branch is not txn.branch or txn.state not in PENDING:
            return
        self._enter(txn, PROCEEDING, now)
        if status != 100:  # 100 is hop by hop
            txn.last_reply = upstream
            self.send(upstream, txn.reply_addr)

    def _accepted(self, txn, branch, status, upstream, now):
        """A 2xx to the INVITE: upstream always, its retransmissions too."""
        self.send(upstream, txn.reply_addr)
        if branch.final:
            return
        branch.final = status
        if txn.state is ACCEPTED:
            return  # a 2xx of another branch: relayed, nothing more
        current = txn.branch
        if current is not branch and current.provisional and not current.final and txn.request is not None:
            self._send_cancel(txn, current, now)  # a failed-over branch that rings is not needed now
        txn.last_reply = upstream
        self._enter(txn, ACCEPTED, now)

    def _forward_response_stateless(self, msg, via):
        """A response with no transaction: relay it if our Via is on top, and
        only to an IP literal (RFC 3261 18.2.2: received, else the Via host);
        a host name would mean DNS on this thread and a target the sender picks."""
        if via is None or not self.is_myself(via.host, via.port or 5060):
            return
        msg.pop_top_via()
        nxt = msg.top_via
        if nxt is None:
            return
        host = ip_literal(nxt.param(b"received") or nxt.host)
        if host is None:
            self.count(("drop", "stray-response-not-ip"))
            return
        rport = nxt.param(b"rport")
        port = port_number(rport) if rport else nxt.port or 5060
        if port is None:
            self.count(("drop", "stray-response-bad-port"))
            return
        self.send(msg.serialize(), (host, port))

    # ---- timers ------------------------------------------------------------
    def _final_timeout(self, txn, now):
        """fr_timer, fr_inv_timer or max_inv_lifetime: no final reply in time."""
        txn.timer = None
        branch = txn.branch
        if txn.method == INVITE and txn.state is CALLING and not txn.canceled:
            if self._failover(txn, 408, now):
                return
        if txn.method == INVITE and branch.provisional and branch.cancel is None and not branch.final:
            self._send_cancel(txn, branch, now)
        txn.last_reply = build.reply(txn.request, 408, b"Request Timeout")
        self.send(txn.last_reply, txn.reply_addr)
        self._enter(txn, COMPLETED, now)

    def _failover(self, txn, code, now):
        """Offer a failed branch to on_failure; True when a new branch went out."""
        route = self.on_failure(txn, code, now)
        if route is None:
            return False
        self._branch_out(txn, route, now)
        self.send(txn.fwd, txn.branch.address)
        return True

    # ---- requests of our own (keep-alives) ---------------------------------
    def request(self, data, branch, address, timeout, now, on_result):
        """Send a non-INVITE request of the edge's own as a client transaction."""
        local = LocalRequest(branch, on_result)
        self.client[branch] = local
        local.retr = self._retransmit_start(data, address, now)
        local.timer = self.timers.start(now + timeout, self._local_timeout, local)
        self.send(data, address)

    def on_local_response(self, data, now):
        """A datagram where only answers to the edge's own requests are
        expected (the keep-alives' socket): anything else is dropped."""
        try:
            msg = parse(data)
        except ParseError:
            return
        via = msg.top_via
        local = self.client.get(via.branch) if not msg.is_request and via is not None else None
        if local.__class__ is LocalRequest:
            self._local_response(local, msg.status, now)

    def _local_response(self, local, status, now):
        if status < 200:
            local.retr.interval = self.t2
            return
        self._local_done(local, status, now)

    def _local_timeout(self, local, now):
        local.timer = None
        self._local_done(local, None, now)

    def _local_done(self, local, code, now):
        self._retransmit_stop(local.retr)
        self.timers.cancel(local.timer)
        local.retr = local.timer = None
        del self.client[local.branch]
        local.on_result(code, now)
