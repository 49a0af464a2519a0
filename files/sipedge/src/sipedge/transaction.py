"""RFC 3261 section 16-17 transactions for a stateful proxy with one branch.

A `Txn` joins the server side (the request from upstream, the last reply we
sent back) and the client side (our branch towards the destination).  Timers
follow Kamailio's tm (sip-spec-notes 5.3): request retransmission from T1
doubling to T2, `fr_timer` until a final reply (or a provisional for INVITE),
then `fr_inv_timer` restarted on every provisional; a local 408 at expiry;
a negative final reply to INVITE retransmitted upstream until its ACK.  When a
transaction ends it lingers for `LINGER` seconds to absorb retransmissions,
then every trace of it (tables and timers) is gone.
"""

import os

from . import build
from .message import ParseError, parse

LINGER = 5.0  # Kamailio's wt_timer; RFC 3261 Timer I/K for UDP
TRYING = b"trying -- your call is important to us"
INVITE, ACK, CANCEL = b"INVITE", b"ACK", b"CANCEL"


def server_key(msg):
    """Key of the server transaction a request belongs to (RFC 3261 17.2.3);
    an ACK looks up its INVITE.  None when the request cannot be matched."""
    via = msg.top_via
    method = INVITE if msg.method == ACK else msg.method
    branch = via.branch
    if branch and branch.startswith(b"z9hG4bK"):
        return (branch, via.host, via.port, method)
    cseq = msg.cseq  # RFC 2543 peers: match on dialog identifiers
    return (msg.call_id, cseq[0] if cseq else None, msg.from_tag, via.host, via.port, method)


class Txn:
    """One proxied transaction (or, with `request` None, a CANCEL's own
    server transaction that only replays its 200)."""

    __slots__ = ("key", "method", "request", "reply_addr", "branch", "dest", "fwd", "last_reply",
                 "final", "provisional", "canceled", "acked", "interval", "retr", "fr", "wait",
                 "cancel_data", "cancel_retr", "cancel_until")

    def __init__(self, key, method, reply_addr):
        self.key, self.method, self.reply_addr = key, method, reply_addr
        self.request = self.branch = self.dest = self.fwd = self.last_reply = None
        self.final = 0
        self.provisional = self.canceled = self.acked = False
        self.interval = 0.0
        self.retr = self.fr = self.wait = self.cancel_retr = self.cancel_data = None
        self.cancel_until = 0.0


class Ping:
    """A keep-alive OPTIONS: a client transaction with no upstream."""

    __slots__ = ("branch", "dest", "target", "data", "interval", "retr", "fr", "on_result", "provisional")

    def __init__(self, branch, dest, target, data, on_result):
        self.branch, self.dest, self.target, self.data, self.on_result = branch, dest, target, data, on_result
        self.interval, self.retr, self.fr, self.provisional = 0.0, None, None, False


class TransactionLayer:
    """Server and client transaction tables plus their timers."""

    def __init__(self, config, timers, send, local, is_myself):
        self.t1, self.t2 = config.t1, config.t2
        self.fr_timer, self.fr_inv_timer = config.fr_timer, config.fr_inv_timer
        self.timers, self.send, self.local, self.is_myself = timers, send, local, is_myself
        self.server = {}
        self.client = {}
        self._prefix = b"z9hG4bKse" + os.urandom(4).hex().encode() + b"."
        self._via_prefix = b"\r\n" + build.via_line(local, b"")
        self._counter = 0

    def new_branch(self):
        self._counter += 1
        return self._prefix + b"%x" % self._counter

    def __len__(self):
        return len(self.server) + len(self.client)

    # ---- requests from upstream -------------------------------------------
    def absorb(self, msg, key, now):
        """Handle a request that matches an existing server transaction:
        replay the last reply, or absorb the ACK of a negative final reply.
        Returns False when the request is new."""
        txn = self.server.get(key)
        if txn is None:
            return False
        if msg.method == ACK:
            if txn.final < 300:
                return False  # an ACK for 2xx is end to end: route it
            if not txn.acked:
                txn.acked = True
                self._linger(txn, now)
            return True
        if txn.last_reply is not None:
            self.send(txn.last_reply, txn.reply_addr)
        return True

    def forward(self, msg, key, reply_addr, dest, now):
        """Create a transaction for `msg` and relay it statefully to `dest`."""
        txn = Txn(key, msg.method, reply_addr)
        self.server[key] = txn
        if msg.method == INVITE:
            txn.last_reply = build.reply(msg, 100, TRYING)
            self.send(txn.last_reply, reply_addr)
        txn.branch = self.new_branch()
        txn.fwd = self._with_via(msg, txn.branch)
        txn.request, txn.dest = msg, dest
        self.client[txn.branch] = txn
        self.send(txn.fwd, dest)
        txn.interval = self.t1
        txn.retr = self.timers.start(now + self.t1, self._retransmit, txn)
        txn.fr = self.timers.start(now + self.fr_timer, self._timeout, txn)
        return txn

    def forward_stateless(self, msg, dest):
        """Relay without a transaction (an ACK for 2xx)."""
        self.send(self._with_via(msg, self.new_branch()), dest)

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
        pending = not invite.final
        data = build.reply(msg, 200, b"canceling" if pending else b"ok -- no more pending branches")
        own = Txn(key, CANCEL, reply_addr)
        own.last_reply = data
        self.server[key] = own
        self.send(data, reply_addr)
        self._linger(own, now)
        if pending and not invite.canceled:
            invite.canceled = True
            if invite.provisional:
                self._send_cancel(invite, now)

    def _send_cancel(self, txn, now):
        txn.cancel_data = build.hop_request(txn.request, CANCEL, self.local, txn.branch)
        self.send(txn.cancel_data, txn.dest)
        txn.cancel_until = now + self.fr_timer
        txn.cancel_retr = self.timers.start(now + self.t1, self._retransmit_cancel, (txn, self.t1))

    def _retransmit_cancel(self, arg, now):
        txn, interval = arg
        txn.cancel_retr = None
        if txn.cancel_data is None or now >= txn.cancel_until:
            return
        self.send(txn.cancel_data, txn.dest)
        interval = min(interval * 2, self.t2)
        txn.cancel_retr = self.timers.start(now + interval, self._retransmit_cancel, (txn, interval))

    # ---- responses from downstream -----------------------------------------
    def on_response(self, data, now):
        """Handle a response datagram.  The common case, our Via on top as we
        wrote it, is matched and relayed by slicing bytes; the rest is parsed.
        Raises ParseError for a response that must be dropped."""
        txn, upstream = self._match_fast(data)
        if txn is not None:
            self._relay(txn, int(data[8:11]), upstream, None, now)
            return
        msg = parse(data)
        if msg.is_request:
            raise ParseError("not a response")
        via = msg.top_via
        txn = self.client.get(via.branch) if via is not None else None
        if txn is None:
            self._forward_response_stateless(msg, via)
        elif isinstance(txn, Ping):
            self._ping_response(txn, msg, now)
        elif msg.cseq_method == CANCEL:
            txn.cancel_data = None  # our CANCEL was answered: stop retransmitting it
            self.timers.cancel(txn.cancel_retr)
            txn.cancel_retr = None
        elif msg.cseq_method == txn.method:
            status = msg.status
            if status == 503:  # RFC 3261 16.7 step 6: a 503 is not relayed as such
                msg.status, msg.reason = 500, b"Service Unavailable"
            to_line = msg.lines[msg.index(b"to")] if msg.index(b"to") >= 0 else None
            msg.pop_top_via()
            self._relay(txn, status, msg.serialize(), to_line, now)

    def _match_fast(self, data):
        """(transaction, bytes to relay upstream) when `data` is a plain
        response to one of our proxied requests, else (None, None).  Our Via
        may stand alone on its line or be the first of several values."""
        if data[:8] != b"SIP/2.0 " or data[11:12] != b" " or not data[8:11].isdigit():
            return None, None
        start = data.find(self._via_prefix) + 2
        if start < 2:
            return None, None
        above = data[:start].lower()
        if b"\r\nvia" in above or b"\r\nv:" in above or b"\r\nv " in above:
            return None, None  # our Via is not the top one
        end = data.find(b"\r\n", start)
        branch_at = start + len(self._via_prefix) - 2
        comma = data.find(b",", branch_at, end)
        txn = self.client.get(data[branch_at:end if comma < 0 else comma].rstrip())
        if txn is None or txn.__class__ is not Txn:
            return None, None
        cseq = data.find(b"\r\nCSeq:", end)
        if cseq < 0 or data[cseq + 7:data.find(b"\r\n", cseq + 7)].split()[-1:] != [txn.method]:
            return None, None
        status = int(data[8:11])
        if status == 503 or (status >= 300 and txn.method == INVITE):
            return None, None  # rewritten, or needs the To line for our ACK
        if comma < 0:
            return txn, data[:start] + data[end + 2:]
        return txn, data[:start] + b"Via: " + data[comma + 1:].lstrip(b" \t")

    def _relay(self, txn, status, upstream, to_line, now):
        """A response for `txn` from downstream; `upstream` is it without our Via."""
        if status < 200:
            self._provisional(txn, status, upstream, now)
            return
        if txn.method == INVITE and status >= 300 and txn.request is not None:
            self.send(build.hop_request(txn.request, ACK, self.local, txn.branch, to_line), txn.dest)
        if txn.final:
            if status < 300 and txn.final < 300:  # 2xx retransmissions go up end to end
                self.send(upstream, txn.reply_addr)
            return
        txn.final = status
        txn.last_reply = upstream
        self.send(upstream, txn.reply_addr)
        if txn.method != INVITE or status < 300:
            txn.request = None  # no ACK or CANCEL will be built from it any more
        self._complete(txn, now)

    def _provisional(self, txn, status, upstream, now):
        if txn.final:
            return
        if not txn.provisional:
            txn.provisional = True
            if txn.method == INVITE:
                self.timers.cancel(txn.retr)
                txn.retr = None
                if txn.canceled:
                    self._send_cancel(txn, now)
            else:
                txn.interval = self.t2  # Timer E continues at T2 (RFC 3261 17.1.2.2)
        if txn.method == INVITE:  # restart_fr_on_each_reply
            self.timers.cancel(txn.fr)
            txn.fr = self.timers.start(now + self.fr_inv_timer, self._timeout, txn)
        if status != 100:  # 100 is hop by hop
            txn.last_reply = upstream
            self.send(upstream, txn.reply_addr)

    def _forward_response_stateless(self, msg, via):
        """A response with no transaction: relay it if our Via is on top."""
        if via is None or not self.is_myself(via.host, via.port or 5060):
            return
        msg.pop_top_via()
        nxt = msg.top_via
        if nxt is None:
            return
        host = nxt.param(b"received") or nxt.host
        rport = nxt.param(b"rport")
        port = int(rport) if rport and rport.isdigit() else (nxt.port or 5060)
        self.send(msg.serialize(), (host.strip(b"[]").decode("ascii", "replace"), port))

    # ---- timers ------------------------------------------------------------
    def _retransmit(self, txn, now):
        txn.retr = None
        if txn.final or (txn.method == INVITE and txn.provisional):
            return
        self.send(txn.fwd, txn.dest)
        if not txn.provisional:
            txn.interval = min(txn.interval * 2, self.t2)
        txn.retr = self.timers.start(now + txn.interval, self._retransmit, txn)

    def _timeout(self, txn, now):
        """fr_timer / fr_inv_timer: no final reply in time -> local 408."""
        txn.fr = None
        if txn.final:
            return
        txn.final = 408
        self.timers.cancel(txn.retr)
        txn.retr = None
        if txn.method == INVITE and txn.provisional and txn.cancel_data is None:
            self._send_cancel(txn, now)
        txn.last_reply = build.reply(txn.request, 408, b"Request Timeout")
        self.send(txn.last_reply, txn.reply_addr)
        self._complete(txn, now)

    def _complete(self, txn, now):
        self.timers.cancel(txn.retr)
        self.timers.cancel(txn.fr)
        txn.retr = txn.fr = None
        txn.fwd = None
        if txn.method == INVITE and txn.final >= 300:
            # Retransmit the negative reply until the ACK comes (Timer G/H).
            txn.interval = self.t1
            txn.retr = self.timers.start(now + self.t1, self._retransmit_reply, txn)
            txn.fr = self.timers.start(now + self.fr_timer, self._linger, txn)
        else:
            self._linger(txn, now)

    def _retransmit_reply(self, txn, now):
        txn.retr = None
        self.send(txn.last_reply, txn.reply_addr)
        txn.interval = min(txn.interval * 2, self.t2)
        txn.retr = self.timers.start(now + txn.interval, self._retransmit_reply, txn)

    def _stop(self, txn):
        for entry in (txn.retr, txn.fr, txn.wait):
            self.timers.cancel(entry)
        txn.retr = txn.fr = txn.wait = None

    def _linger(self, txn, now):
        """Keep the transaction LINGER seconds for retransmissions, then drop it."""
        self._stop(txn)
        txn.wait = self.timers.start(now + LINGER, self._delete, txn)

    def _delete(self, txn, _now):
        txn.wait = None
        self._stop(txn)
        self.timers.cancel(txn.cancel_retr)
        txn.cancel_retr = txn.cancel_data = None
        if self.server.get(txn.key) is txn:
            del self.server[txn.key]
        if txn.branch is not None and self.client.get(txn.branch) is txn:
            del self.client[txn.branch]
        txn.request = txn.fwd = txn.last_reply = None

    # ---- keep-alives -------------------------------------------------------
    def ping(self, target, dest, ping_from, method, now, on_result):
        """Send one keep-alive; `on_result(target, code)` gets the final code,
        408 when none came within fr_timer."""
        branch = self.new_branch()
        data = build.options_ping(target.uri.encode(), ping_from, self.local, branch, branch[7:] + b"@sipedge", method)
        ping = Ping(branch, dest, target, data, on_result)
        self.client[branch] = ping
        self.send(data, dest)
        ping.interval = self.t1
        ping.retr = self.timers.start(now + self.t1, self._ping_retransmit, ping)
        ping.fr = self.timers.start(now + self.fr_timer, self._ping_timeout, ping)

    def _ping_retransmit(self, ping, now):
        ping.retr = None
        self.send(ping.data, ping.dest)
        if not ping.provisional:
            ping.interval = min(ping.interval * 2, self.t2)
        ping.retr = self.timers.start(now + ping.interval, self._ping_retransmit, ping)

    def _ping_response(self, ping, msg, _now):
        if msg.status < 200:
            ping.provisional = True
            ping.interval = self.t2
            return
        self._ping_done(ping, msg.status)

    def _ping_timeout(self, ping, _now):
        ping.fr = None
        self._ping_done(ping, 408)

    def _ping_done(self, ping, code):
        self.timers.cancel(ping.retr)
        self.timers.cancel(ping.fr)
        ping.retr = ping.fr = None
        self.client.pop(ping.branch, None)
        ping.on_result(ping.target, code)
