"""RFC 4475 torture messages sent to a router, one by one, with a health probe after each.

The outcome of a message is a short string: the replies that came back ("400 Bad Request
URI"), "fwd" when the request reached the backend of ``example.com`` (set 70; the
backend's own answers are then listed after it), or "drop" for silence.
"""
from __future__ import annotations

import gzip
import re
import socket
import time
import uuid
from pathlib import Path

from conf_harness import QUIET, Lane, Msg

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

# Messages that would make Kamailio resolve a name if sent to it: an in-dialog request
# whose Route names a host (Kamailio relays to it, docs/sip-spec-notes.md §6.3 wsinv).  The
# network rule forbids that, so the reference is not asked; its outcome is the one
# predicted in docs/sip-spec-notes.md §6.3 and is marked as such.
NOT_FOR_KAMAILIO = {
    "wsinv": "would relay to services.example.com (needs DNS)",
    # Kamailio 5.6 tries to relay this response to its second Via, 255.255.255.255
    # (only the missing SO_BROADCAST stops the datagram): never sent to it.
    "bcast": "would send to 255.255.255.255",
}


def files() -> list[Path]:
    """The 49 message files (<name>.dat.gz, see tests/data/rfc4475/SOURCES.md)."""
    return sorted(DATA.glob("*.dat.gz"))


def name_of(path: Path) -> str:
    return path.name.removesuffix(".dat.gz")


def load(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def _via_port(data: bytes) -> tuple[int, bool]:
    """The port a router answers to (top Via sent-by port, 5060 by default) and rport."""
    m = re.search(rb"\r\n(?:via|v)[ \t]*:[ \t]*(.*?)\r\n(?![ \t])", data, re.I | re.S)
    if not m:
        return 5060, False
    first = m.group(1).split(b",")[0]
    rport = b"rport" in first.lower()
    hp = re.search(rb"/\s*\w+\s+([^;\s]+)", first)
    port = 5060
    if hp:
        host = hp.group(1)
        pm = re.search(rb":(\d+)$", host)
        if pm:
            port = int(pm.group(1))
    return port, rport


class TortureClient:
    """UDP sockets on the lane's client address, one per port that replies may go to."""

    def __init__(self, lane: Lane):
        self.lane = lane
        self.socks: dict[int, socket.socket] = {}

    def sock(self, port: int) -> socket.socket:
        if port not in self.socks:
            self.socks[port] = self.lane.net.open(self.lane.client_addr, port, "client")
        return self.socks[port]


def _collect(lane: Lane, start: int, fds: set[int], call_id: bytes | None,
             quiet: float = QUIET, hard: float = 2.0) -> list:
    t0 = time.monotonic()
    last = t0
    seen = []
    for e in lane.net.watch(start, lambda: min(last + quiet, t0 + hard) - time.monotonic()):
        if e.sock_id in fds or (e.where == "torture" and call_id and call_id in e.data):
            seen.append(e)
            last = e.t
    return seen


def probe(lane: Lane, router: tuple[str, int], timeout: float = 1.0) -> float | None:
    """Seconds until the router answers a Max-Forwards: 0 OPTIONS (483), or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((lane.client_addr, 0))
        port = s.getsockname()[1]
        msg = (f"OPTIONS sip:probe@tenant1.test SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {lane.client_addr}:{port};branch=z9hG4bK{uuid.uuid4().hex[:12]};rport\r\n"
               f"Max-Forwards: 0\r\nFrom: <sip:p@tenant1.test>;tag=p1\r\nTo: <sip:probe@tenant1.test>\r\n"
               f"Call-ID: probe-{uuid.uuid4().hex}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
        s.settimeout(timeout)
        t0 = time.monotonic()
        s.sendto(msg, router)
        try:
            data = s.recvfrom(65535)[0]
        except (socket.timeout, OSError):
            return None
        return time.monotonic() - t0 if data.startswith(b"SIP/2.0 483") else None
    finally:
        s.close()


def run(lane: Lane, *, skip: dict[str, str] | None = None) -> dict[str, dict]:
    """Send every file to the lane's main router; -> {name: {outcome, probe_s, ...}}."""
    skip = skip or {}
    router = lane.routers["main"]
    client = TortureClient(lane)
    out: dict[str, dict] = {}
    for path in files():
        name = name_of(path)
        if name in skip:
            out[name] = {"outcome": "(not run) " + skip[name], "probe_s": None, "ran": False}
            continue
        data = load(path)
        port = _via_port(data)[0]
        s = client.sock(port)
        cid = re.search(rb"\r\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]+)", data, re.I)
        call_id = cid.group(1).strip() if cid else None
        with lane.net.lock:
            start = len(lane.net.events)
        s.sendto(data, (router.addr, router.port))
        events = _collect(lane, start, {x.fileno() for x in client.socks.values()}, call_id)
        replies, fwd = [], []
        for e in events:
            m = Msg(e.data)
            if e.where == "torture":
                if m.method:
                    fwd.append(m.method)
            elif m.code is not None:
                r = f"{m.code} {m.reason}"
                if not replies or replies[-1] != r:
                    replies.append(r)
        if fwd:
            outcome = "fwd " + ",".join(dict.fromkeys(fwd)) + (" | " + ", ".join(replies) if replies else "")
        else:
            outcome = ", ".join(replies) if replies else "drop"
        out[name] = {"outcome": outcome, "probe_s": probe(lane, (router.addr, router.port)),
                     "ran": True}
    return out
