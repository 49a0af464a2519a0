"""Mutated SIP datagrams for the fuzz run (fuzz_run.py, test_fuzz.py).

Datagram ``i`` of seed ``s`` is drawn from ``random.Random(f"{s}:{i}")``, made in
order (a CANCEL or ACK names an INVITE made before it): the same seed gives the same
datagrams, except that a response to a request the edge forwarded copies that
request (its Via carries the edge's own random branch).

A datagram starts from a base message and gets zero or more mutations; its class
names both, e.g. ``invite+huge-number(cseq)+bitflip``.

Bases: the RFC 4475 torture messages; well-formed tenant traffic from the client
(INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER to a provisioned domain, in-dialog
requests with the edge's Record-Route as Route); from the backend, responses to the
requests the edge forwarded (its Via on top), and "stray" responses with the edge's
Via on top that match no transaction.

Mutations, structure-aware: header duplication, removal, reordering; huge and empty
values; numbers of thousands of digits (Content-Length, CSeq, Expires,
Max-Forwards, rport=); Via ports above 65535; received= with NUL or non-ASCII
bytes; long unique Request-URIs, header names, hosts and methods; wrong methods; odd
whitespace and folding; CRLF games; compact names; Content-Length, version, scheme,
Max-Forwards and To-tag games; IPv6 hosts; truncation.  Byte-level: bit flips,
insertions, deletions, splices between two messages, duplicated chunks.

Every address is inside 127.0.66.0/24; the run itself happens in a network namespace
that has nothing but loopback (fuzz_run.py), so a mutated host cannot send anything
off the machine.
"""
from __future__ import annotations

import gzip
import random
import re
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from testsupport.sip import Msg, Req, response_for

NET = "127.0.66"
EDGE = (f"{NET}.1", 5060)
CLIENT = (f"{NET}.2", 5062)
BACKEND = (f"{NET}.3", 5060)
PROBE_HOST = f"{NET}.4"
TENANT = "tenant.test"
CORPUS_DOMAIN = "example.com"      # the RFC 4475 messages' domain; provisioned as well
CONTACT = f"sip:fuzz@{BACKEND[0]}:{BACKEND[1]}"   # the backend's Contact: in-dialog target
EDGE_ROUTE = f"<sip:{EDGE[0]};lr;ftag=%s>"       # the edge's Record-Route (port 5060 omitted)
MAX_DATAGRAM = 65507               # the largest UDP payload over IPv4
CORPUS = Path(__file__).resolve().parents[3] / "tests" / "data" / "rfc4475"

SPECIAL = [b"\x00", b"\xff", b"\xc3\xa9", b"\r", b"\n", b"\r\n", b":", b";", b",", b"<", b">",
           b'"', b" ", b"\t", b"%00", b"\\", b"=", b"@", b"[", b"]"]
CODES = [100, 180, 183, 200, 200, 200, 202, 300, 400, 401, 404, 407, 408, 480, 481, 486, 487,
         500, 503, 503, 600, 603]
SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.66.2\r\ns=-\r\nc=IN IP4 127.0.66.2\r\nt=0 0\r\n"
       b"m=audio 4000 RTP/AVP 0\r\n")


@dataclass
class Datagram:
    index: int
    source: str          # "client" or "backend": the socket it is sent from
    cls: str
    data: bytes


def load_corpus() -> dict[str, bytes]:
    """The 49 RFC 4475 messages, by name."""
    return {p.name.removesuffix(".dat.gz"): gzip.decompress(p.read_bytes())
            for p in sorted(CORPUS.glob("*.dat.gz"))}


def token(rng: random.Random, length: int) -> str:
    """A unique-looking lower-case hex token of about ``length`` characters."""
    return rng.randbytes(max(1, length // 2)).hex()


def digits(rng: random.Random, length: int) -> bytes:
    """A decimal number of ``length`` digits (built as text: Python refuses to
    print an int of more than 4,300 digits)."""
    return bytes([rng.choice(b"123456789")] + rng.choices(b"0123456789", k=length - 1))


def big_length(rng: random.Random) -> int:
    """From a hundred bytes to near the datagram limit, mostly large."""
    return int(rng.choice([100, 1000, 32000, 60000, 60000]) * rng.uniform(0.5, 1.0))


# ---------------------------------------------------------------------------- parts

class Parts:
    """A datagram as first line, header lines and body, for structure-aware edits."""

    def __init__(self, data: bytes):
        head, self.sep, self.body = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.first, self.headers = lines[0], lines[1:]

    def join(self) -> bytes:
        return b"\r\n".join([self.first] + self.headers) + self.sep + self.body

    def find(self, *names: bytes) -> list[int]:
        """Indexes of the header lines with one of these (lower-case) names."""
        return [i for i, line in enumerate(self.headers)
                if line.split(b":", 1)[0].strip().lower() in names]

    def pick(self, rng, *names: bytes) -> int | None:
        found = self.find(*names)
        return rng.choice(found) if found else None

    def set_value(self, i: int, value: bytes) -> None:
        self.headers[i] = self.headers[i].split(b":", 1)[0] + b": " + value

    def value(self, i: int) -> bytes:
        return self.headers[i].partition(b":")[2].strip()


VIA_NAMES = (b"via", b"v")
_SENT_BY = re.compile(rb"^(\s*SIP\s*/\s*2\.0\s*/\s*\w+\s+)(\[[^\]]*\]|[^;:,\s]+)(?::\d+)?")


def _with_sent_by(via: bytes, host: bytes | None = None, port: int | None = None) -> bytes:
    """A Via value with its host and/or port replaced."""
    m = _SENT_BY.match(via)
    if m is None:
        return via
    new = m.group(1) + (host if host is not None else m.group(2))
    if port is not None:
        new += b":%d" % port
    elif host is None and via[m.end(2):m.end()].startswith(b":"):
        new += via[m.end(2):m.end()]
    return new + via[m.end():]


# ---------------------------------------------------------------------------- structure-aware

def m_dup_header(rng, p):
    if not p.headers:
        return "dup-header(none)"
    i = rng.randrange(len(p.headers))
    p.headers[i:i] = [p.headers[i]] * rng.randint(1, 3)
    return "dup-header"


def m_drop_header(rng, p):
    key = (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq",
           b"max-forwards", b"content-length", b"l", b"route")
    i = p.pick(rng, *key) if rng.random() < 0.6 else None
    if i is None and p.headers:
        i = rng.randrange(len(p.headers))
    if i is not None:
        del p.headers[i]
    return "drop-header"


def m_reorder(rng, p):
    if len(p.headers) > 1:
        if rng.random() < 0.5:
            rng.shuffle(p.headers)
        else:
            i, j = rng.sample(range(len(p.headers)), 2)
            p.headers[i], p.headers[j] = p.headers[j], p.headers[i]
    return "reorder"


def m_huge_value(rng, p):
    if p.headers:
        i = rng.randrange(len(p.headers))
        p.set_value(i, token(rng, big_length(rng)).encode())
    return "huge-value"


def m_empty_value(rng, p):
    if p.headers:
        p.set_value(rng.randrange(len(p.headers)), b"")
    return "empty-value"


def m_huge_number(rng, p):
    """4,301 digits and more: past Python's int-from-text limit."""
    n = digits(rng, rng.randint(4301, 6000))
    where = rng.choice(["content-length", "cseq", "expires", "max-forwards", "rport"])
    if where == "cseq":
        i = p.pick(rng, b"cseq")
        method = p.value(i).split()[-1:] if i is not None else [b"INVITE"]
        line = b"CSeq: " + n + b" " + b"".join(method)
        if i is None:
            p.headers.append(line)
        else:
            p.headers[i] = line
    elif where == "rport":
        vias = p.find(*VIA_NAMES)
        i = vias[min(len(vias) - 1, rng.randint(0, 1))] if vias else None
        if i is not None:
            value = re.sub(rb";\s*rport(=\d*)?", b"", p.value(i))
            p.set_value(i, value + b";rport=" + n)
    else:
        names = {"content-length": (b"content-length", b"l"), "expires": (b"expires",),
                 "max-forwards": (b"max-forwards",)}[where]
        i = p.pick(rng, *names)
        if i is None:
            p.headers.append(names[0].title() + b": " + n)
        else:
            p.set_value(i, n)
    return f"huge-number({where})"


def m_via_port(rng, p):
    """A top Via port above 65535 (still five digits, or more)."""
    i = p.pick(rng, *VIA_NAMES)
    if i is not None:
        port = rng.randint(65536, 99999) if rng.random() < 0.8 else rng.randint(100000, 10 ** 7)
        value = _with_sent_by(p.value(i), port=port)
        if rng.random() < 0.7:
            value = re.sub(rb";\s*rport(=\d*)?", b"", value)   # the reply goes to the Via port
        p.set_value(i, value)
    return "via-port-overflow"


def m_received_junk(rng, p):
    """received= (or the host) of the second Via with NUL, non-ASCII or a name."""
    vias = p.find(*VIA_NAMES)
    if len(vias) < 2:
        p.headers.insert(vias[0] + 1 if vias else 0, f"Via: SIP/2.0/UDP {CLIENT[0]}:{CLIENT[1]};branch=z9hG4bK{token(rng, 8)}".encode())
        vias = p.find(*VIA_NAMES)
    i = vias[1] if len(vias) > 1 else vias[0]
    junk = rng.choice([b"127.0.66.2\x00x", b"\x00", b"127.0.66.\xff", b"\xc3\xa9t\xc3\xa9.test", b"h\x00st",
                       b"\xff\xfe\xfd", b"256.1.1.1", b"[::1", b"no-such-host.invalid", b""])
    value = re.sub(rb";\s*received=[^;,]*", b"", p.value(i))
    how = rng.choice(["quoted", "bare", "host"])
    if how == "quoted":
        value += b';received="' + junk + b'"'
    elif how == "bare":
        value += b";received=" + junk
    else:
        value = _with_sent_by(value, host=junk or b"x")
    p.set_value(i, value)
    return f"received-junk({how})"


def m_long_ruri(rng, p):
    """A long, unique Request-URI (or To URI in a response)."""
    uri = f"sip:{token(rng, 8)}@h{token(rng, big_length(rng))}.test".encode()
    parts = p.first.split(b" ")
    if len(parts) == 3 and not p.first.startswith(b"SIP/"):
        p.first = b" ".join([parts[0], uri, parts[2]])
        i = p.pick(rng, b"to", b"t")
        if i is not None and rng.random() < 0.5:
            p.set_value(i, b"<" + uri + b">")     # the same host: passes the domain check
    else:
        i = p.pick(rng, b"to", b"t")
        if i is not None:
            p.set_value(i, b"<" + uri + b">")
    return "long-ruri"


def m_long_header_name(rng, p):
    name = f"X-{token(rng, big_length(rng))}".encode()
    p.headers.insert(rng.randint(0, len(p.headers)), name + b": 1")
    return "long-header-name"


def m_long_host(rng, p):
    host = f"h{token(rng, big_length(rng))}.test".encode()
    where = rng.choice(["via", "to", "from", "from", "route"])
    if where == "via":
        i = p.pick(rng, *VIA_NAMES)
        if i is not None:
            p.set_value(i, _with_sent_by(p.value(i), host=host))
    elif where == "route":
        p.headers.insert(0, b"Route: <sip:" + host + b";lr>")
    else:
        i = p.pick(rng, where.encode(), where[0].encode())
        if i is not None:
            p.set_value(i, b"<sip:u@" + host + b">;tag=" + token(rng, 8).encode())
    return f"long-host({where})"


def m_wrong_method(rng, p):
    method = rng.choice([b"INVITEX", b"invite", b"FOO", b"OPTIONS", b"ACK", b"CANCEL", b"BYE",
                         b"PRACK", b"REFER", b"I\x00NVITE", b"", token(rng, 12).encode().upper()])
    parts = p.first.split(b" ", 1)
    p.first = method + b" " + (parts[1] if len(parts) > 1 else b"")
    if rng.random() < 0.5:
        i = p.pick(rng, b"cseq")
        if i is not None:
            p.set_value(i, p.value(i).split(b" ")[0] + b" " + method)
    return "wrong-method"


def m_long_method(rng, p):
    """A long, unique method token (and the same in CSeq, half of the time)."""
    method = f"M{token(rng, big_length(rng))}".upper().encode()
    if not p.first.startswith(b"SIP/"):
        parts = p.first.split(b" ", 1)
        p.first = method + b" " + (parts[1] if len(parts) > 1 else b"")
    i = p.pick(rng, b"cseq")
    if i is not None and rng.random() < 0.5:
        p.set_value(i, p.value(i).split(b" ")[0] + b" " + method)
    return "long-method"


def m_whitespace(rng, p):
    how = rng.choice(["before-colon", "tabs", "padding", "first-line", "leading-space"])
    i = rng.randrange(len(p.headers)) if p.headers else None
    if how == "first-line":
        p.first = p.first.replace(b" ", rng.choice([b"  ", b"\t", b" \t "]), rng.randint(1, 2)) + \
            rng.choice([b"", b" ", b"\t"])
    elif i is not None:
        name, _colon, value = p.headers[i].partition(b":")
        p.headers[i] = {"before-colon": name + b"  :" + value,
                        "tabs": name + b"\t:\t" + value.strip(),
                        "padding": name + b":     " + value + b"    ",
                        "leading-space": b" " + p.headers[i]}[how]
    return f"whitespace({how})"


def m_folding(rng, p):
    """A header value continued on folded lines (RFC 3261 7.3.1), or a broken fold."""
    if p.headers:
        i = rng.randrange(len(p.headers))
        line = p.headers[i]
        cuts = sorted(rng.sample(range(1, len(line)), min(len(line) - 1, rng.randint(1, 3)))) if len(line) > 1 else []
        pieces, last = [], 0
        for c in cuts:
            pieces.append(line[last:c])
            last = c
        pieces.append(line[last:])
        p.headers[i] = (b"\r\n" + rng.choice([b" ", b"\t", b"   "])).join(pieces)
    return "folding"


def m_crlf(rng, p):
    how = rng.choice(["all-lf", "lf", "cr", "mixed", "blank-line", "no-end", "leading", "extra-end"])
    if how == "all-lf":
        p.first, p.headers, p.sep, p.body = p.join().replace(b"\r\n", b"\n"), [], b"", b""
    elif how == "blank-line" and p.headers:
        p.headers.insert(rng.randrange(len(p.headers)), b"")
    elif how == "no-end":
        p.sep = rng.choice([b"", b"\r\n"])
    elif how == "leading":
        p.first = b"\r\n" * rng.randint(1, 3) + p.first
    elif how == "extra-end":
        p.sep += b"\r\n" * rng.randint(1, 3)
    elif p.headers:
        i = rng.randrange(len(p.headers))
        end = {"lf": b"\n", "cr": b"\r", "mixed": b"\n\r"}[how]
        p.headers[i] = p.headers[i] + end + p.headers.pop(i + 1) if i + 1 < len(p.headers) else p.headers[i] + end
    return f"crlf({how})"


def m_compact(rng, p):
    forms = {b"via": b"v", b"from": b"f", b"to": b"t", b"call-id": b"i", b"contact": b"m",
             b"content-length": b"l", b"content-type": b"c"}
    for i, line in enumerate(p.headers):
        name, colon, value = line.partition(b":")
        short = forms.get(name.strip().lower())
        if colon and (short and rng.random() < 0.5):
            p.headers[i] = short + b":" + value
        elif colon and rng.random() < 0.2:
            p.headers[i] = bytes(c ^ 0x20 if 0x41 <= c <= 0x7a and rng.random() < 0.5 else c for c in name) + b":" + value
    return "compact"


def m_content_length(rng, p):
    value = rng.choice([b"%d" % (len(p.body) + rng.randint(1, 50)), b"-1", b"abc", b"0000%d" % len(p.body),
                        b"", b"%d" % max(0, len(p.body) - 1), b"4294967296"])
    i = p.pick(rng, b"content-length", b"l")
    if i is None or rng.random() < 0.3:
        p.headers.append(b"Content-Length: " + value)
    else:
        p.set_value(i, value)
    return "content-length"


def m_version(rng, p):
    version = rng.choice([b"SIP/2.1", b"SIP/1.0", b"sip/2.0", b"SIP/2.0x", b"SIP/2.0 extra", b"SIP/", b"HTTP/1.1"])
    if p.first.startswith(b"SIP/"):
        p.first = version + p.first[7:]
    else:
        p.first = p.first.rsplit(b" ", 1)[0] + b" " + version
    return "version"


def m_scheme(rng, p):
    parts = p.first.split(b" ")
    if len(parts) == 3:
        uri = parts[1]
        parts[1] = rng.choice([b"sips:" + uri.partition(b":")[2], b"tel:+4912345", b"urn:service:sos",
                               b"http://" + uri.partition(b":")[2], b"sip:", b"sip:@", b"<" + uri + b">",
                               uri + b";maddr=127.0.66.3", uri + b":99999", b"sip:" + EDGE[0].encode()])
        p.first = b" ".join(parts)
    return "scheme"


def m_max_forwards(rng, p):
    value = rng.choice([b"0", b"1", b"70", b"255", b"256", b"65536", b"-1", b"", b"abc", b"0x10", b"00000001"])
    i = p.pick(rng, b"max-forwards")
    if i is None:
        p.headers.insert(0, b"Max-Forwards: " + value)
    else:
        p.set_value(i, value)
        if rng.random() < 0.2:
            p.headers.insert(i, p.headers[i])
    return "max-forwards"


def m_to_tag(rng, p):
    how = rng.choice(["add-tag", "drop-tag", "edge-route", "loopback-route", "tag-and-route"])
    i = p.pick(rng, b"to", b"t")
    if i is not None and how in ("add-tag", "tag-and-route"):
        p.set_value(i, p.value(i) + b";tag=" + token(rng, 8).encode())
    if i is not None and how == "drop-tag":
        p.set_value(i, re.sub(rb";\s*tag=[^;]*", b"", p.value(i)))
    if how in ("edge-route", "tag-and-route"):
        p.headers.insert(0, b"Route: " + (EDGE_ROUTE % token(rng, 8)).encode())
    if how == "loopback-route":
        p.headers.insert(0, f"Route: <sip:{EDGE[0]};lr>, <sip:{NET}.{rng.randint(1, 254)}:{rng.randint(1, 65535)};lr>".encode())
    return f"to-tag({how})"


def m_ipv6(rng, p):
    host = rng.choice([b"[::1]", b"[::ffff:127.0.66.2]", b"[::1", b"::1", b"[fe80::1%lo]", b"[::]", b"[zz::1]"])
    i = p.pick(rng, *VIA_NAMES)
    if i is not None:
        p.set_value(i, _with_sent_by(p.value(i), host=host))
    return "ipv6"


def m_truncate(rng, p):
    data = p.join()
    cut = rng.randrange(len(data)) if data else 0
    first, _sep, rest = data[:cut].partition(b"\r\n")
    p.first, p.headers, p.sep, p.body = first, rest.split(b"\r\n") if rest else [], b"", b""
    return "truncate"


STRUCTURE = [  # (weight, mutation)
    (8, m_dup_header), (8, m_drop_header), (4, m_reorder), (3, m_huge_value), (4, m_empty_value),
    (7, m_huge_number), (5, m_via_port), (5, m_received_junk), (14, m_long_ruri), (10, m_long_header_name),
    (10, m_long_host), (4, m_wrong_method), (10, m_long_method), (6, m_whitespace), (4, m_folding), (6, m_crlf), (3, m_compact),
    (4, m_content_length), (2, m_version), (3, m_scheme), (3, m_max_forwards), (4, m_to_tag), (2, m_ipv6),
    (3, m_truncate),
]


# ---------------------------------------------------------------------------- byte-level

def b_bitflip(rng, data, _other):
    buf = bytearray(data)
    for _i in range(rng.randint(1, 8)):
        if buf:
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    return bytes(buf), "bitflip"


def b_insert(rng, data, _other):
    pos = rng.randint(0, len(data))
    extra = rng.choice(SPECIAL) * rng.randint(1, 4) if rng.random() < 0.6 else rng.randbytes(rng.randint(1, 16))
    return data[:pos] + extra + data[pos:], "insert"


def b_delete(rng, data, _other):
    pos = rng.randint(0, len(data))
    return data[:pos] + data[pos + rng.randint(1, 64):], "delete"


def b_splice(rng, data, other):
    """The head of this message and the tail of another."""
    return data[:rng.randint(0, len(data))] + other[rng.randint(0, len(other)):], "splice"


def b_dup_chunk(rng, data, _other):
    if len(data) < 2:
        return data, "dup-chunk"
    a = rng.randrange(len(data) - 1)
    chunk = data[a:a + rng.randint(1, 200)]
    pos = rng.randint(0, len(data))
    return data[:pos] + chunk * rng.randint(1, 3) + data[pos:], "dup-chunk"


BYTES = [(5, b_bitflip), (4, b_insert), (4, b_delete), (3, b_splice), (2, b_dup_chunk)]


def _weighted(rng, table):
    return rng.choices([f for _w, f in table], weights=[w for w, _f in table])[0]


# ---------------------------------------------------------------------------- generator

class Generator:
    """Datagram ``i`` of ``seed``: ``Generator(seed).datagram(i, forwarded)``, where
    ``forwarded`` holds requests the edge sent to the backend (to answer them)."""

    BASES = [  # (weight, base)
        (28, "rfc4475"), (10, "invite"), (5, "options"), (5, "register"), (4, "cancel"), (3, "ack"),
        (2, "other"), (12, "dialog"), (18, "response"), (8, "stray"), (3, "response-again"),
    ]

    def __init__(self, seed: int, corpus: dict[str, bytes] | None = None):
        self.seed = seed
        self.corpus = corpus if corpus is not None else load_corpus()
        self.names = sorted(self.corpus)
        self.invites: deque = deque(maxlen=64)     # (call_id, branch, from_tag) of INVITEs made
        self.responses: deque = deque(maxlen=16)   # responses made, to send again

    def datagram(self, index: int, forwarded=()) -> Datagram:
        rng = random.Random(f"{self.seed}:{index}")
        base = rng.choices([b for _w, b in self.BASES], weights=[w for w, _b in self.BASES])[0]
        data, cls = self._base(rng, base, index, list(forwarded))
        source = "backend" if base in ("response", "stray", "response-again") else "client"
        labels = [cls]
        roll = rng.random()
        if roll >= 0.15:                       # 15 % stay well-formed
            p = Parts(data)
            if roll < 0.70:                    # structure-aware, then perhaps a byte-level one
                for _i in range(rng.choice([1, 1, 1, 2, 3])):
                    labels.append(_weighted(rng, STRUCTURE)(rng, p))
                data = p.join()
            if roll >= 0.70 or rng.random() < 0.1:
                other = self.corpus[rng.choice(self.names)]
                for _i in range(rng.choice([1, 1, 2, 3])):
                    data, label = _weighted(rng, BYTES)(rng, data, other)
                    labels.append(label)
        if source == "backend" and base != "response-again":
            self.responses.append(data)
        return Datagram(index, source, "+".join(labels), data[:MAX_DATAGRAM])

    # -- bases ------------------------------------------------------------------
    def _base(self, rng, base, index, forwarded) -> tuple[bytes, str]:
        if base == "rfc4475":
            name = rng.choice(self.names)
            return self.corpus[name], f"rfc4475/{name}"
        if base == "response":
            if forwarded:
                return self._response(rng, forwarded[rng.randrange(len(forwarded))]), "response"
            base = "stray"                      # nothing forwarded yet
        if base == "stray":
            return self._stray(rng, index), "stray"
        if base == "response-again":
            if self.responses:
                return self.responses[rng.randrange(len(self.responses))], "response-again"
            return self._stray(rng, index), "stray"
        if base == "dialog":
            return self._in_dialog(rng, index), "dialog"
        return self._initial(rng, base, index), base

    def _ids(self, rng, index):
        return (f"fz{index}-{token(rng, 8)}@{CLIENT[0]}", f"z9hG4bKfz{index}{token(rng, 6)}", token(rng, 8))

    def _request(self, method, ruri, call_id, branch, from_tag, cseq=1, to=None, extra=(), body=b""):
        headers = [("Via", f"SIP/2.0/UDP {CLIENT[0]}:{CLIENT[1]};branch={branch};rport"),
                   ("Max-Forwards", "70"),
                   ("From", f"<sip:bob@{TENANT}>;tag={from_tag}"),
                   ("To", to or f"<{ruri}>"),
                   ("Call-ID", call_id), ("CSeq", f"{cseq} {method}"),
                   ("Contact", f"<sip:bob@{CLIENT[0]}:{CLIENT[1]}>"), ("User-Agent", "sipedge-fuzz"), *extra]
        return bytes(Req(method, ruri, headers, body))

    def _initial(self, rng, base, index) -> bytes:
        call_id, branch, from_tag = self._ids(rng, index)
        ruri = f"sip:alice@{TENANT}"
        if base == "invite":
            self.invites.append((call_id, branch, from_tag))
            return self._request("INVITE", ruri, call_id, branch, from_tag,
                                 extra=[("Content-Type", "application/sdp")], body=SDP)
        if base == "register":
            return self._request("REGISTER", f"sip:{TENANT}", call_id, branch, from_tag, cseq=rng.randint(1, 9),
                                 to=f"<sip:bob@{TENANT}>", extra=[("Expires", str(rng.choice([0, 60, 3600])))])
        if base in ("cancel", "ack") and self.invites:
            call_id, branch, from_tag = self.invites[rng.randrange(len(self.invites))]
            return self._request(base.upper(), ruri, call_id, branch, from_tag)
        method = {"options": "OPTIONS", "cancel": "CANCEL", "ack": "ACK"}.get(base) or \
            rng.choice(["BYE", "INFO", "MESSAGE", "SUBSCRIBE", "UPDATE", "PRACK"])
        return self._request(method, ruri, call_id, branch, from_tag)

    def _in_dialog(self, rng, index) -> bytes:
        """A request inside a dialog through the edge: its Record-Route as Route, the
        backend's Contact as target."""
        call_id, branch, from_tag = self._ids(rng, index)
        if self.invites and rng.random() < 0.7:
            call_id, _branch, from_tag = self.invites[rng.randrange(len(self.invites))]
        method = rng.choice(["BYE", "BYE", "ACK", "INVITE", "INFO", "UPDATE", "OPTIONS", "MESSAGE"])
        route = EDGE_ROUTE % from_tag
        return self._request(method, CONTACT, call_id, branch, from_tag, cseq=rng.randint(2, 20),
                             to=f"<sip:alice@{TENANT}>;tag=b{token(rng, 8)}", extra=[("Route", route)])

    @staticmethod
    def _response(rng, request: bytes) -> bytes:
        """The backend's answer to a request the edge forwarded (the edge's Via on top)."""
        req = Msg(request)
        if req.method == "CANCEL" or rng.random() < 0.05:
            code = 200
        else:
            code = rng.choice(CODES)
        tag = "b%08x" % zlib.crc32((req.call_id or "").encode())
        extra = [("Contact", f"<{CONTACT}>")] if code < 300 else []
        return response_for(req, code, "Fuzz", to_tag=tag if code > 100 else None, extra=extra, copy_rr=True)

    def _stray(self, rng, index) -> bytes:
        """A response with the edge's Via on top and a branch it never made, so no
        transaction matches; the edge relays it by the next Via."""
        call_id, branch, from_tag = self._ids(rng, index)
        req = Msg(self._request(rng.choice(["INVITE", "OPTIONS", "BYE"]), f"sip:alice@{TENANT}",
                                call_id, branch, from_tag))
        req.headers.insert(0, ("Via", f"SIP/2.0/UDP {EDGE[0]};branch=z9hG4bKse{token(rng, 8)}.{index:x}"))
        return response_for(req, rng.choice(CODES), "Stray", to_tag="s" + token(rng, 6))
