"""Just enough SIP text for tests: tolerant parsing and text-level building.

Independent of the router's own parser on purpose.  Building is text-level so that
tests can build broken messages; parsing never raises (a message that cannot be
read has ``ok`` False).
"""
from __future__ import annotations

import re
import uuid

COMPACT = {
    "v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact", "l": "content-length",
    "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding",
    "o": "event", "r": "refer-to", "u": "allow-events", "x": "session-expires", "b": "referred-by",
    "a": "accept-contact", "j": "reject-contact", "d": "request-disposition", "y": "identity",
}
LIST_HEADERS = {"via", "route", "record-route", "contact"}


def canon(name: str) -> str:
    """Lower-case header name, compact forms expanded."""
    n = name.strip().lower()
    return COMPACT.get(n, n)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, not inside <...> or quotes."""
    out, cur, depth, quoted, esc = [], [], 0, False, False
    for ch in value:
        if esc:
            cur.append(ch)
            esc = False
            continue
        if quoted:
            if ch == "\\":
                esc = True
            elif ch == '"':
                quoted = False
            cur.append(ch)
            continue
        if ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur).strip())
    return out


def params(value: str) -> dict[str, str | None]:
    """Header parameters after the URI/host part: ``<sip:x>;a=1;b`` -> {'a': '1', 'b': None}."""
    v = value
    if ">" in v:
        v = v[v.rindex(">") + 1:]
    else:
        v = v.split(";", 1)[1] if ";" in v else ""
        v = ";" + v if v else ""
    out: dict[str, str | None] = {}
    for part in v.split(";"):
        part = part.strip()
        if not part:
            continue
        k, sep, val = part.partition("=")
        out[k.strip().lower()] = val.strip() if sep else None
    return out


def uri_of(value: str) -> str:
    """The URI inside a name-addr (or the addr-spec without header params)."""
    if "<" in value and ">" in value:
        return value[value.index("<") + 1:value.index(">")]
    return value.split(";", 1)[0].strip()


def host_of_uri(uri: str) -> str:
    u = uri.split(":", 1)[1] if ":" in uri else uri
    u = u.split(";", 1)[0].split("?", 1)[0]
    if "@" in u:
        u = u.rsplit("@", 1)[1]
    return u


def uri_hostport(value: str) -> tuple[str, int]:
    """(host, port) of the URI in '<sip:host[:port];params>' or 'sip:user@host:port;...'."""
    m = re.search(r"sips?:(?:[^@;>]*@)?([^;>:?]+)(?::(\d+))?", value)
    if not m:
        return "", 0
    return m.group(1), int(m.group(2)) if m.group(2) else 5060


def via_sent_by(via: str) -> tuple[str, int]:
    """('host', port) of a Via value 'SIP/2.0/UDP host[:port];params'."""
    sent_by = via.split(None, 1)[1].split(";", 1)[0].strip()
    host, _sep, port = sent_by.rpartition(":") if sent_by.count(":") == 1 else (sent_by, "", "")
    return (host or sent_by), int(port) if port else 5060


def via_branch(via: str) -> str:
    m = re.search(r";\s*branch=([^;,\s]+)", via)
    return m.group(1) if m else ""


class Msg:
    """A parsed SIP message (request or response)."""

    def __init__(self, raw: bytes):
        self.raw = raw
        self.ok = False
        self.first = ""
        self.headers: list[tuple[str, str]] = []   # (name as written, value)
        self.body = b""
        self.method = self.ruri = self.reason = None
        self.code: int | None = None
        try:
            head, sep, body = raw.partition(b"\r\n\r\n")
            if not sep:
                head, sep, body = raw.partition(b"\n\n")
            self.body = body
            text = head.decode("utf-8", "replace")
            lines = re.split(r"\r?\n", text)
            self.first = lines[0]
            for line in lines[1:]:
                if line[:1] in (" ", "\t") and self.headers:
                    n, v = self.headers[-1]
                    self.headers[-1] = (n, v + " " + line.strip())
                    continue
                n, colon, v = line.partition(":")
                if colon:
                    self.headers.append((n.strip(), v.strip()))
            if self.first.startswith("SIP/2.0 "):
                parts = self.first.split(" ", 2)
                self.code = int(parts[1])
                self.reason = parts[2] if len(parts) > 2 else ""
            else:
                parts = self.first.split(" ")
                self.method, self.ruri = parts[0], parts[1]
            self.ok = True
        except Exception:  # noqa: BLE001 - tolerant by design
            self.ok = False

    @property
    def is_request(self) -> bool:
        return self.method is not None

    def all(self, name: str) -> list[str]:
        """Every value of a header; list headers (Via, Route, ...) split on commas."""
        c = canon(name)
        vals = [v for n, v in self.headers if canon(n) == c]
        if c in LIST_HEADERS:
            return [item for v in vals for item in split_list(v)]
        return vals

    def get(self, name: str) -> str | None:
        v = self.all(name)
        return v[0] if v else None

    @property
    def call_id(self) -> str | None:
        return self.get("call-id")

    @property
    def cseq(self) -> tuple[int | None, str | None]:
        v = self.get("cseq") or ""
        p = v.split()
        try:
            return int(p[0]), (p[1] if len(p) > 1 else None)
        except (ValueError, IndexError):
            return None, None

    @property
    def cseq_method(self) -> str | None:
        return self.cseq[1]

    @property
    def top_branch(self) -> str | None:
        vias = self.all("via")
        return params(vias[0]).get("branch") if vias else None

    def tag(self, name: str) -> str | None:
        v = self.get(name)
        return params(v).get("tag") if v else None

    def __repr__(self) -> str:
        return f"<Msg {self.first!r}>"


def new_id(prefix: str = "") -> str:
    return prefix + uuid.uuid4().hex[:16]


class Req:
    """Ordered, editable request text.  ``bytes(req)`` serialises it.

    Content-Length is computed from the body unless set explicitly with
    ``content_length`` (an int or any string; ``None`` removes the header).
    """

    _AUTO = object()

    def __init__(self, method: str, ruri: str, headers: list[tuple[str, str]],
                 body: bytes = b"", version: str = "SIP/2.0"):
        self.method, self.ruri, self.version = method, ruri, version
        self.start_line: str | None = None          # raw override of the first line
        self.headers = list(headers)
        self.body = body
        self.content_length = Req._AUTO
        self.trailer = b""                          # bytes after the body (framing tests)

    def copy(self) -> "Req":
        r = Req(self.method, self.ruri, self.headers, self.body, self.version)
        r.start_line, r.content_length, r.trailer = self.start_line, self.content_length, self.trailer
        return r

    def set(self, name: str, value: str) -> "Req":
        """Replace the first header of that name (or append it before Content-Length)."""
        c = canon(name)
        for i, (n, _value) in enumerate(self.headers):
            if canon(n) == c:
                self.headers[i] = (n, value)
                return self
        return self.add(name, value)

    def add(self, name: str, value: str, at: int | None = None) -> "Req":
        self.headers.insert(len(self.headers) if at is None else at, (name, value))
        return self

    def drop(self, name: str) -> "Req":
        c = canon(name)
        self.headers = [(n, v) for n, v in self.headers if canon(n) != c]
        return self

    def get(self, name: str) -> str | None:
        c = canon(name)
        for n, v in self.headers:
            if canon(n) == c:
                return v
        return None

    def __bytes__(self) -> bytes:
        first = self.start_line if self.start_line is not None else \
            f"{self.method} {self.ruri} {self.version}"
        lines = [first]
        lines += [f"{n}: {v}" if n else v for n, v in self.headers]   # n="" = raw line
        if self.content_length is Req._AUTO:
            lines.append(f"Content-Length: {len(self.body)}")
        elif self.content_length is not None:
            lines.append(f"Content-Length: {self.content_length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") \
            + self.body + self.trailer


def response_for(req: Msg, code: int, reason: str, *, to_tag: str | None = None,
                 extra: list[tuple[str, str]] = (), copy_rr: bool = False) -> bytes:
    """A UAS response to ``req`` (all Vias, From, To(+tag), Call-ID, CSeq copied)."""
    lines = [f"SIP/2.0 {code} {reason}"]
    for n, v in req.headers:
        c = canon(n)
        if c == "via" or (copy_rr and c == "record-route"):
            lines.append(f"{n}: {v}")
    for n, v in req.headers:
        c = canon(n)
        if c == "from" or c == "call-id" or c == "cseq":
            lines.append(f"{n}: {v}")
        elif c == "to":
            if to_tag and "tag" not in params(v):
                v = f"{v};tag={to_tag}"
            lines.append(f"{n}: {v}")
    lines += [f"{n}: {v}" for n, v in extra]
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()
