"""Test-side network: backends that answer like a SIP server, clients, and the
per-router "lane" that runs cases and turns what happened into a comparable outcome.

One lane = one router under test (plus, for Kamailio, a second instance with
algorithm 8), its own backends on its own 127.x addresses, and one I/O thread that
services every socket of the lane and records events.  Cases run one after another
inside a lane; the two lanes (reference and subject) run in parallel threads.
"""
from __future__ import annotations

import dataclasses
import hashlib
import selectors
import socket
import threading
import time
from typing import Callable

from testsupport.sip import Msg, Req, new_id, params, response_for, uri_of

QUIET = 0.30        # s without a relevant packet = the step is over ("silence")
MAX_STEP = 3.0      # s, upper bound of one step
AFTER_FINAL = 0.08  # s to wait for stragglers once the expected final reply is in
ANSWER_DELAY = 0.03  # s between a backend's 180 and its 200


@dataclasses.dataclass
class Event:
    t: float
    where: str            # "client" or backend name
    data: bytes
    src: tuple[str, int]
    sock_id: int


class Net:
    """The lane's I/O thread: sockets, event log, backend answering."""

    def __init__(self, name: str):
        self.name = name
        self.sel = selectors.DefaultSelector()
        self.lock = threading.Condition()
        self.events: list[Event] = []
        self.socks: dict[int, tuple[socket.socket, str, Callable | None]] = {}
        self._stop = False
        self._wake_r, self._wake_w = socket.socketpair()
        self.sel.register(self._wake_r, selectors.EVENT_READ, None)
        self.thread = threading.Thread(target=self._run, name=f"net-{name}", daemon=True)
        self.thread.start()

    def open(self, addr: str, port: int, where: str,
             handler: Callable[[socket.socket, Msg, tuple], None] | None = None) -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((addr, port))
        s.setblocking(False)
        with self.lock:
            self.socks[s.fileno()] = (s, where, handler)
        self.sel.register(s, selectors.EVENT_READ, None)
        self._wake_w.send(b"x")
        return s

    def watch(self, start: int, time_left: Callable[[], float]):
        """Yield the events recorded from index ``start`` on, as they arrive, until
        ``time_left()`` (seconds still to wait, from what the caller has seen) is <= 0."""
        idx = start
        while True:
            with self.lock:
                timeout = time_left()
                if timeout <= 0:
                    return
                if idx >= len(self.events):
                    self.lock.wait(timeout)
                new = self.events[idx:]
                idx = len(self.events)
            yield from new

    def close(self) -> None:
        self._stop = True
        self._wake_w.send(b"x")
        self.thread.join(5)
        for s, _where, _handler in list(self.socks.values()):
            s.close()
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        while not self._stop:
            for key, _events in self.sel.select(0.2):
                s = key.fileobj
                if s is self._wake_r:
                    s.recv(64)
                    continue
                for _attempt in range(64):   # bounded drain
                    try:
                        data, src = s.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:   # ICMP errors surfacing on the socket
                        break
                    entry = self.socks.get(s.fileno())
                    if entry is None:
                        break
                    _sock, where, handler = entry
                    ev = Event(time.monotonic(), where, data, src, s.fileno())
                    with self.lock:
                        self.events.append(ev)
                        self.lock.notify_all()
                    if handler is not None:
                        try:
                            handler(s, Msg(data), src)
                        except Exception:  # noqa: BLE001 - a backend must not die
                            pass


class Backend:
    """A SIP server on one UDP socket.

    OPTIONS/REGISTER/BYE/anything else -> 200; INVITE -> 180 + 200 (user ``ring``:
    180 only and wait for CANCEL; ``busy``: 486; ``silent``: nothing); CANCEL -> 200
    and 487 for the pending INVITE (481 when there is none); ACK -> nothing.
    A retransmitted request gets the last answer again.
    """

    def __init__(self, net: Net, name: str, addr: str, port: int = 0):
        self.name = name
        self.sock = net.open(addr, port, name, self.handle)
        self.addr, self.port = self.sock.getsockname()
        self.pending: dict[tuple, tuple[Msg, tuple, str]] = {}
        self.answered: dict[tuple, list[bytes]] = {}

    @property
    def uri(self) -> str:
        return f"sip:{self.addr}:{self.port}"

    def _send(self, data: bytes, dst) -> None:
        try:
            self.sock.sendto(data, dst)
        except OSError:
            pass

    def handle(self, sock, m: Msg, src) -> None:
        if not m.ok or not m.is_request or m.method == "ACK":
            return
        key = (m.call_id, m.cseq[0], m.method, m.top_branch)
        if key in self.answered:                       # retransmission
            for data in self.answered[key][-1:]:
                self._send(data, src)
            return
        tag = "b" + hashlib.md5(f"{self.name}{m.call_id}".encode()).hexdigest()[:10]
        contact = [("Contact", f"<sip:{self.name}@{self.addr}:{self.port}>")]
        user = (m.ruri or "").split(":", 1)[-1].split("@")[0] if "@" in (m.ruri or "") else ""
        out: list[bytes] = []
        if m.method == "INVITE":
            if user == "silent":
                out = []
            elif user == "busy":
                out = [response_for(m, 486, "Busy Here", to_tag=tag)]
            else:
                out = [response_for(m, 180, "Ringing", to_tag=tag, extra=contact, copy_rr=True)]
                if user == "ring":
                    self.pending[(m.call_id, m.cseq[0], m.top_branch)] = (m, src, tag)
                else:
                    ok = response_for(m, 200, "OK", to_tag=tag, extra=contact, copy_rr=True)
                    self.answered[key] = out + [ok]
                    self._send(out[0], src)
                    # a moment between 180 and 200, so that a multi-process router
                    # cannot reorder them (a late 180 would be lost after the 200)
                    t = threading.Timer(ANSWER_DELAY, self._send, (ok, src))
                    t.daemon = True
                    t.start()
                    return
        elif m.method == "CANCEL":
            inv = self.pending.pop((m.call_id, m.cseq[0], m.top_branch), None)
            if inv is None:
                out = [response_for(m, 481, "Call/Transaction Does Not Exist", to_tag=tag)]
            else:
                out = [response_for(m, 200, "OK", to_tag=tag)]
                im, isrc, itag = inv
                r487 = response_for(im, 487, "Request Terminated", to_tag=itag)
                self.answered[(im.call_id, im.cseq[0], "INVITE", im.top_branch)] = [r487]
                self._send(out[0], src)
                self._send(r487, isrc)
                self.answered[key] = out
                return
        else:
            out = [response_for(m, 200, "OK", to_tag=tag,
                                extra=contact if m.method in ("REGISTER", "OPTIONS") else [],
                                copy_rr=False)]
        self.answered[key] = out
        for data in out:
            self._send(data, src)


class Client:
    """One UDP socket of the test's UAC (a fresh one per case)."""

    def __init__(self, net: Net, addr: str, port: int = 0):
        self.net = net
        self.sock = net.open(addr, port, "client")
        self.addr, self.port = self.sock.getsockname()

    def send(self, data: bytes, dst: tuple[str, int]) -> float:
        t = time.monotonic()
        self.sock.sendto(data, dst)
        return t


# ----------------------------------------------------------------------------------
# normalisation: lane-specific addresses -> symbols, so two lanes can be compared


class Names:
    def __init__(self):
        self.pairs: list[tuple[str, str]] = []

    def add(self, text: str, symbol: str) -> None:
        self.pairs.append((text, symbol))
        self.pairs.sort(key=lambda p: -len(p[0]))     # longest first (ip:port before ip)

    def __call__(self, s):
        if s is None or isinstance(s, (int, float, bool)):
            return s
        if isinstance(s, list):
            return [self(x) for x in s]
        for text, sym in self.pairs:
            s = s.replace(text, sym)
        return s


def observe_forward(m: Msg, where: str, names: Names, client_branches: set[str],
                    from_tag: str | None, client_port: int) -> dict:
    """The observables of a request as it reached a backend."""
    vias = m.all("via")
    client_via = None
    for v in vias:
        p = params(v)
        if p.get("branch") in client_branches:
            rport = p.get("rport", "-") if "rport" in p else "-"
            rport = "(empty)" if rport is None else rport
            client_via = {"received": names(p.get("received", "-")),
                          "rport": "CPORT" if rport == str(client_port) else rport}
            break

    def rr_form(v: str) -> str:
        v = names(v)
        if from_tag:
            v = v.replace(f"ftag={from_tag}", "ftag=FROMTAG")
        return v

    mf = m.get("max-forwards")
    try:
        mf_val: int | str | None = int(mf) if mf is not None else None
    except ValueError:
        mf_val = mf
    top = params(vias[0]) if vias else {}
    return {
        "to": where,
        "method": m.method,
        "ruri": names(m.ruri),
        "max_forwards": mf_val,
        "vias": len(vias),
        "top_via_branch_rfc3261": bool(top.get("branch", "") and
                                       top.get("branch", "").startswith("z9hG4bK")),
        "client_via": client_via,
        "record_route": [rr_form(v) for v in m.all("record-route")],
        "route": [rr_form(v) for v in m.all("route")],
    }


# ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Router:
    addr: str
    port: int

    @property
    def hostport(self) -> str:
        return f"{self.addr}:{self.port}"


class Lane:
    """A router under test with its backends; runs cases and records outcomes."""

    def __init__(self, name: str, client_addr: str, backend_net: str,
                 backend_names: list[str]):
        self.name = name
        self.client_addr = client_addr
        self.net = Net(name)
        self.names = Names()
        self.backends: dict[str, Backend] = {}
        for i, bname in enumerate(backend_names, start=1):
            b = Backend(self.net, bname, f"{backend_net}.{i}")
            self.backends[bname] = b
            self.names.add(f"{b.addr}:{b.port}", f"B:{bname}")
        self.routers: dict[str, Router] = {}
        self.names.add(client_addr, "CLIENT")

    def add_router(self, key: str, router: Router) -> None:
        self.routers[key] = router
        self.names.add(router.hostport, "ROUTER")
        self.names.add(router.addr, "ROUTER_IP")

    def dead_uri(self, i: int) -> str:
        """A destination where nothing listens (for rows that are down)."""
        return f"sip:{self.client_addr.rsplit('.', 1)[0]}.{200 + i}:9"

    def close(self) -> None:
        self.net.close()


class Ctx:
    """What a case function works with.  Every send is one step of the outcome."""

    def __init__(self, lane: Lane, case_name: str):
        self.lane = lane
        self.case = case_name
        self.client = Client(lane.net, lane.client_addr)
        self.lane.names.add(f":{self.client.port}", ":CPORT")
        self.steps: list[dict] = []
        self.call_ids: set[str] = set()
        self.branches: set[str] = set()
        self._n = 0
        self.last_replies: list[Msg] = []
        self.extra: dict = {}

    def close(self):
        self.lane.names.pairs = [p for p in self.lane.names.pairs
                                 if p[0] != f":{self.client.port}"]

    # -- building ---------------------------------------------------------------

    def router(self, key: str = "main") -> Router:
        return self.lane.routers[key]

    def new_call_id(self) -> str:
        self._n += 1
        cid = f"{self.case}-{self._n}-{new_id()[:8]}@conformance.invalid"
        self.call_ids.add(cid)
        return cid

    def new_branch(self) -> str:
        b = new_id("z9hG4bK")
        self.branches.add(b)
        return b

    def req(self, method: str = "OPTIONS", *, user: str = "bob", domain: str = "tenant1.test",
            ruri: str | None = None, to: str | None = None, call_id: str | None = None,
            cseq: int = 1, branch: str | None = None, from_tag: str | None = None,
            ua: str | None = "conformance-suite", rport: bool = True,
            via_host: str | None = None) -> Req:
        c = self.client
        ruri = ruri or f"sip:{user}@{domain}"
        branch = branch or self.new_branch()
        self.branches.add(branch)
        call_id = call_id or self.new_call_id()
        self.call_ids.add(call_id)
        via = f"SIP/2.0/UDP {via_host or c.addr}:{c.port};branch={branch}" + (";rport" if rport else "")
        h = [("Via", via), ("Max-Forwards", "70"),
             ("From", f"<sip:alice@{domain}>;tag={from_tag or 'ft' + new_id()[:8]}"),
             ("To", to or f"<{ruri}>"),
             ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"),
             ("Contact", f"<sip:alice@{c.addr}:{c.port}>")]
        if ua is not None:
            h.append(("User-Agent", ua))
        return Req(method, ruri, h)

    def in_dialog(self, method: str, invite: Req, final: Msg, *, cseq: int,
                  route: list[str] | None = None, branch: str | None = None) -> Req:
        """A request inside the dialog that ``final`` (a 2xx to ``invite``) created.

        ``route`` defaults to the route set learned from the 2xx Record-Route (reversed).
        """
        rr = final.all("record-route")
        route_set = list(reversed(rr)) if route is None else route
        target = uri_of(final.get("contact") or f"<{invite.ruri}>")
        r = Req(method, target, [])
        branch = branch or self.new_branch()
        self.branches.add(branch)
        c = self.client
        r.headers = [("Via", f"SIP/2.0/UDP {c.addr}:{c.port};branch={branch};rport"),
                     ("Max-Forwards", "70")]
        r.headers += [("Route", v) for v in route_set]
        r.headers += [("From", invite.get("from")), ("To", final.get("to")),
                      ("Call-ID", invite.get("call-id")), ("CSeq", f"{cseq} {method}"),
                      ("User-Agent", "conformance-suite")]
        return r

    # -- running ----------------------------------------------------------------

    def send(self, msg: Req | bytes, *, router: str = "main", label: str | None = None,
             final: bool = False, forwarded: bool = False, window: float | None = None,
             count: bool = False, record: bool = True,
             dst: tuple[str, int] | None = None) -> list[Msg]:
        """Send one datagram and record what followed as one step.

        ``final``: the step is expected to end with a final reply; stop waiting
        shortly after it arrives (otherwise wait for QUIET seconds of silence).
        ``window``: observe for exactly this long instead (retransmission checks).
        ``forwarded``: the step is expected to reach a backend (ACK for 2xx); stop
        shortly after it does.
        ``count``: keep identical copies apart (retransmission counting).
        """
        data = bytes(msg)
        r = self.lane.routers[router]
        net = self.lane.net
        with net.lock:
            start_idx = len(net.events)
        t0 = self.client.send(data, dst or (r.addr, r.port))
        events = self._settle(start_idx, t0, final, window, forwarded)
        replies = [Msg(e.data) for e in events if e.sock_id == self.client.sock.fileno()]
        fwd = [e for e in events if e.where != "client"]
        self.last_replies = replies
        if record:
            self.steps.append(self._observe(label or _label(data), replies, fwd, count))
        return replies

    def wait(self, seconds: float, *, label: str, count: bool = True) -> list[Msg]:
        """Observe without sending (e.g. retransmissions after an ACK)."""
        net = self.lane.net
        with net.lock:
            start_idx = len(net.events)
        t0 = time.monotonic()
        events = self._settle(start_idx, t0, False, seconds)
        replies = [Msg(e.data) for e in events if e.sock_id == self.client.sock.fileno()]
        fwd = [e for e in events if e.where != "client"]
        self.steps.append(self._observe(label, replies, fwd, count))
        return replies

    def _relevant(self, e: Event) -> bool:
        if e.sock_id == self.client.sock.fileno():
            return True
        if e.where == "client":
            return False
        m = Msg(e.data)
        if not m.ok or not m.is_request:
            return False
        if _is_ping(m):
            return False
        return m.call_id in self.call_ids

    def _settle(self, start_idx: int, t0: float, final: bool, window: float | None,
                forwarded: bool = False) -> list[Event]:
        end_hard = t0 + (window if window is not None else MAX_STEP)
        last = t0
        got_final_at = None
        seen: list[Event] = []

        def time_left() -> float:
            if window is not None:
                return end_hard - time.monotonic()
            if got_final_at is not None:
                return min(got_final_at + AFTER_FINAL, end_hard) - time.monotonic()
            return min(last + QUIET, end_hard) - time.monotonic()

        for e in self.lane.net.watch(start_idx, time_left):
            if self._relevant(e):
                seen.append(e)
                last = e.t
                if forwarded and e.where != "client" and got_final_at is None:
                    got_final_at = e.t
                if final and e.sock_id == self.client.sock.fileno():
                    m = Msg(e.data)
                    if m.code is not None and m.code >= 200:
                        got_final_at = e.t
        return seen

    def _observe(self, label: str, replies: list[Msg], fwd: list[Event], count: bool) -> dict:
        names = self.lane.names
        rep: list = []
        for m in replies:
            item = f"{m.code} {m.reason}" if m.ok and m.code is not None else "(unparsable)"
            rep.append(item)
        fw: list = []
        raws: list[bytes] = []
        for e in fwd:
            m = Msg(e.data)
            if not count and e.data in raws:
                continue
            raws.append(e.data)
            fw.append(observe_forward(m, e.where, names, self.branches, m.tag("from"),
                                      self.client.port))
        if not count:
            rep = _dedupe_consecutive(rep)
        else:
            rep = _counted(rep)
            fw = _counted(fw)
        return {"step": label, "replies": rep, "forwarded": fw}


def _dedupe_consecutive(items: list) -> list:
    out: list = []
    for x in items:
        if not out or out[-1] != x:
            out.append(x)
    return out


def _counted(items: list) -> list:
    out: list = []
    for x in items:
        for o in out:
            if o["item"] == x:
                o["n"] += 1
                break
        else:
            out.append({"item": x, "n": 1})
    return out


def _is_ping(m: Msg) -> bool:
    if m.method != "OPTIONS":
        return False
    f = (m.get("from") or "").lower()
    return "sip:dispatcher@" in f or "sip:sipedge@" in f


def _label(data: bytes) -> str:
    first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    return first.split(" ", 1)[0] if first else "(empty)"
