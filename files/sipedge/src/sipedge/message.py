"""SIP messages over bytes: parse lazily, edit headers in place, serialize.

A message keeps its header block as a list of raw lines plus a parallel list of
canonical lower-case names (compact forms expanded).  Only the headers a stage
asks for are looked at, and a header's value is parsed only when asked.  Every
edit the proxy makes (Via, Record-Route, Max-Forwards, Route) is a list edit,
so serializing is one join.

Parse failures raise `ParseError`; `Message.bad_header` marks the first header
whose body does not parse, so the route can decide as Kamailio does what such a
message deserves (drop, 483 or 400) depending on where the bad header sits.
"""

import re

from .uri import parameter, parse_uri, port_number

CRLF = b"\r\n"

COMPACT = {
    b"v": b"via", b"f": b"from", b"t": b"to", b"i": b"call-id", b"m": b"contact",
    b"l": b"content-length", b"c": b"content-type", b"e": b"content-encoding",
    b"k": b"supported", b"s": b"subject", b"o": b"event", b"r": b"refer-to",
    b"u": b"allow-events", b"b": b"referred-by", b"x": b"session-expires",
}

# Headers whose bodies Kamailio parses while it scans the header block; a bad one
# stops the scan there.
_CHECKED = frozenset((b"via", b"cseq", b"from", b"to", b"content-length"))

_TOKEN = rb"[A-Za-z0-9\-.!%*_+`'~]+"
_NAME_RE = re.compile(_TOKEN + rb"\Z")
_METHOD_RE = re.compile(_TOKEN + rb"\Z")
_LWS = rb"[ \t]*"
_HOST = rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
# A Via parameter value: a token, an IPv6 reference, a bare IPv6 address
# (received=, RFC 5118 4.5) or a quoted string.
_PARAM = (_LWS + rb";" + _LWS + _TOKEN + rb"(?:" + _LWS + rb"=" + _LWS
          + rb"(?:" + _TOKEN + rb"|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]+|\"[^\"]*\"))?")
_VIA_RE = re.compile(
    rb"SIP" + _LWS + rb"/" + _LWS + rb"2\.0" + _LWS + rb"/" + _LWS + rb"(" + _TOKEN + rb")[ \t]+"
    + rb"(" + _HOST + rb")(?:" + _LWS + rb":" + _LWS + rb"([0-9]{1,5}))?((?:" + _PARAM + rb")*)" + _LWS + rb"\Z")
_FOLD_RE = re.compile(rb"\r\n[ \t]+")


_NAMES = {}  # header name as written -> canonical name; most traffic uses a few spellings
_NAME_CACHED = 32  # longer names are rare and may be an attacker's: never kept
MAX_NUMBER_DIGITS = 10  # the longest 32-bit number; longer ones are refused before int()


def _header_name(raw):
    """Canonical lower-case name (compact forms expanded); b'' when invalid."""
    name = raw.rstrip().lower()
    if _NAME_RE.match(name) is None:
        return b""
    name = COMPACT.get(name, name)
    if len(raw) <= _NAME_CACHED and len(_NAMES) < 4096:
        _NAMES[raw] = name
    return name


def number(text, limit=0xFFFFFFFF):
    """A decimal number 0..limit given as digits (at most 10), else None.
    Bounded before int(): a value of thousands of digits costs nothing."""
    if not text or len(text) > MAX_NUMBER_DIGITS or not text.isdigit():
        return None
    value = int(text)
    return value if value <= limit else None


# Cached parse results that depend on a header, dropped when it is edited.
_DEPENDS = {b"via": ("via",), b"from": (b"from", "from-uri"), b"to": (b"to", "to-uri"),
            b"cseq": ("cseq",), b"call-id": ("callid",)}


class ParseError(Exception):
    """The message cannot be understood at all: drop it silently."""


def split_commas(value):
    """Split a header value on commas outside quotes and angle brackets."""
    if b"," not in value:
        return [value]
    parts, depth, quoted, start, i, n = [], 0, False, 0, 0, len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == 0x5C:  # backslash escapes the next character inside quotes
                i += 1
            elif c == 0x22:
                quoted = False
        elif c == 0x22:
            quoted = True
        elif c == 0x3C:
            depth += 1
        elif c == 0x3E:
            depth -= 1
        elif c == 0x2C and depth <= 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    parts.append(value[start:].strip())
    return parts


class NameAddr:
    """From/To/Route/Contact-style value: optional display name, URI, params."""

    __slots__ = ("uri", "params")

    def __init__(self, uri, params):
        self.uri, self.params = uri, params

    def param(self, name):
        """Value of a header parameter (b'' for a flag), or None."""
        return parameter(self.params, name)


def parse_name_addr(value):
    """Split `"Name" <uri>;params` or `uri;params`; None when malformed."""
    value = value.strip()
    if not value:
        return None
    if value[0] == 0x22:  # quoted display name
        i, n = 1, len(value)
        while i < n and value[i] != 0x22:
            i += 2 if value[i] == 0x5C else 1
        if i >= n:
            return None
        lt = value.find(b"<", i)
        if lt < 0 or value[i + 1:lt].strip():
            return None
    else:
        lt = value.find(b"<")
    if lt >= 0:
        gt = value.find(b">", lt)
        if gt < 0:
            return None
        display = value[:lt].strip()
        if display and display[0] != 0x22 and (b'"' in display or b">" in display):
            return None
        uri, params = value[lt + 1:gt].strip(), value[gt + 1:].strip()
        if params and params[0] != 0x3B:
            return None
    else:
        semi = value.find(b";")
        uri, params = (value, b"") if semi < 0 else (value[:semi].strip(), value[semi:])
        if b" " in uri or b"," in uri or b"?" in uri:
            return None
    return NameAddr(uri, params)


class Via:
    """The first value of a Via header; parameters are split once, when asked."""

    __slots__ = ("transport", "host", "port", "params_raw", "_params")

    def __init__(self, raw):
        match = _VIA_RE.match(raw)
        if match is None:
            raise ParseError("bad Via")
        self.transport = match.group(1).upper()
        self.host = match.group(2)
        self.port = None
        if match.group(3):
            self.port = port_number(match.group(3))
            if self.port is None:
                raise ParseError("bad Via port")  # RFC 3261 25: 1-65535
        self.params_raw = match.group(4)
        self._params = None

    @property
    def params(self):
        """[(lower-case name, value or None)] in order."""
        if self._params is None:
            out = []
            for item in self.params_raw.split(b";")[1:]:
                key, eq, val = item.partition(b"=")
                out.append((key.strip().lower(), val.strip() if eq else None))
            self._params = out
        return self._params

    def param(self, name):
        """A parameter's value (b'' for a flag), or None."""
        for key, val in self.params:
            if key == name:
                return b"" if val is None else val
        return None

    @property
    def branch(self):
        return self.param(b"branch")


def _check_body(name, value, cache):
    """True when a header body that Kamailio parses on sight is well formed.
    The first Via parsed here is kept in `cache` as the message's top Via."""
    if name == b"via":
        try:
            vias = [Via(part) for part in split_commas(value)]
        except ParseError:
            return False
        cache.setdefault("via", vias[0])
        return True
    if name == b"cseq":
        parts = value.split()
        return len(parts) == 2 and _METHOD_RE.match(parts[1]) is not None
    if name in (b"from", b"to"):
        parsed = parse_name_addr(value)
        cache.setdefault(name, parsed)
        return parsed is not None
    return number(value) is not None  # content-length (values come stripped); Kamailio's parser overflows


class Message:
    """One SIP request or response.  Attributes are bytes unless noted."""

    __slots__ = ("is_request", "method", "ruri", "version", "status", "reason",
                 "names", "lines", "body", "has_eoh", "bad_header", "_cache")

    def __init__(self, data):
        self._cache = {}
        end = data.find(b"\r\n\r\n")
        if end < 0:
            self.has_eoh = False
            head, self.body = data, b""
        else:
            self.has_eoh = True
            head, self.body = data[:end], data[end + 4:]
        lines = head.split(CRLF)
        first = lines[0]
        if first.startswith(b"SIP/"):
            self.is_request = False
            parts = first.split(b" ", 2)
            if len(parts) < 2 or len(parts[1]) != 3 or not parts[1].isdigit() or parts[0] != b"SIP/2.0" \
                    or not b"100" <= parts[1] <= b"699":
                raise ParseError("bad status line")
            self.status = int(parts[1])
            self.reason = parts[2] if len(parts) == 3 else b""
            self.method = self.ruri = None
            self.version = parts[0]
        else:
            self.is_request = True
            parts = first.rstrip(b" \t").split(b" ")  # trailing blanks are tolerated, as Kamailio does
            if len(parts) != 3 or not parts[0] or not parts[1] or _METHOD_RE.match(parts[0]) is None:
                raise ParseError("bad request line")
            if not parts[2].startswith(b"SIP/2.0"):
                raise ParseError("not SIP/2.0")
            self.method, self.ruri, self.version = parts
            self.status = self.reason = None
        if b"\r\n " in head or b"\r\n\t" in head:
            if lines[1][:1] in (b" ", b"\t"):
                raise ParseError("folded start line")
            lines = _FOLD_RE.sub(b" ", head).split(CRLF)  # unfold (RFC 3261 7.3.1)
        out = lines[1:]
        if out and not out[-1]:
            out.pop()  # the CRLF that ends a header block without a blank line after it
        names = []
        bad = None
        known = _NAMES.get
        for line in out:
            colon = line.find(b":")
            name = known(line[:colon]) if colon > 0 else None
            if name is None:
                name = _header_name(line[:colon]) if colon > 0 else b""
                if not name and bad is None:
                    bad = len(names)
            names.append(name)
        self.bad_header = bad
        self.names, self.lines = names, out
        if not self.is_request:
            return  # responses are relayed by their Via; nothing else is checked
        framed = False
        for i, name in enumerate(names):
            if name in _CHECKED and (self.bad_header is None or i < self.bad_header):
                if not _check_body(name, self.value(i), self._cache) or (name == b"content-length" and framed):
                    self.bad_header = i  # a second Content-Length makes the framing unknowable
                    break
                framed = framed or name == b"content-length"

    # ---- header access -------------------------------------------------
    def value(self, index):
        line = self.lines[index]
        return line[line.find(b":") + 1:].strip()

    def index(self, name):
        """Index of the first header named `name`, or -1."""
        try:
            return self.names.index(name)
        except ValueError:
            return -1

    def get(self, name):
        """Value of the first header named `name`, or None."""
        i = self.index(name)
        return None if i < 0 else self.value(i)

    def count(self, name):
        return self.names.count(name)

    def values(self, name):
        """All comma-separated values of every header named `name`, in order."""
        out = []
        for i, n in enumerate(self.names):
            if n == name:
                out.extend(split_commas(self.value(i)))
        return out

    # ---- cached parsed headers ------------------------------------------
    def _cached(self, key, build):
        cache = self._cache
        if key not in cache:
            cache[key] = build()
        return cache[key]

    @property
    def top_via(self):
        """The first Via value, parsed; None if absent or malformed."""
        def build():
            i = self.index(b"via")
            if i < 0:
                return None
            try:
                return Via(split_commas(self.value(i))[0])
            except ParseError:
                return None
        return self._cached("via", build)

    @property
    def cseq(self):
        """(number bytes, method bytes) or None."""
        def build():
            value = self.get(b"cseq")
            if value is None:
                return None
            parts = value.split()
            return (parts + [b"", b""])[:2] if len(parts) <= 2 else None
        return self._cached("cseq", build)

    @property
    def cseq_method(self):
        cseq = self.cseq
        return cseq[1] if cseq else None

    @property
    def call_id(self):
        return self._cached("callid", lambda: self.get(b"call-id"))

    def _name_addr(self, name):
        def build():
            value = self.get(name)
            return None if value is None else parse_name_addr(value)
        return self._cached(name, build)

    @property
    def from_(self):
        return self._name_addr(b"from")

    @property
    def to(self):
        return self._name_addr(b"to")

    @property
    def from_tag(self):
        fr = self.from_
        return fr.param(b"tag") if fr else None

    @property
    def to_tag(self):
        to = self.to
        return to.param(b"tag") if to else None

    @property
    def from_uri_parsed(self):
        return self._cached("from-uri", lambda: parse_uri(self.from_.uri) if self.from_ else None)

    @property
    def to_uri_parsed(self):
        return self._cached("to-uri", lambda: parse_uri(self.to.uri) if self.to else None)

    @property
    def ruri_parsed(self):
        return self._cached("ruri", lambda: parse_uri(self.ruri))

    # the URIs the dispatcher's hashing algorithms read
    @property
    def from_uri(self):
        fr = self.from_
        return fr.uri if fr else b""

    @property
    def to_uri(self):
        to = self.to
        return to.uri if to else b""

    # ---- edits ---------------------------------------------------------
    def insert(self, index, name, line):
        self.names.insert(index, name)
        self.lines.insert(index, line)
        if self.bad_header is not None and self.bad_header >= index:
            self.bad_header += 1

    def _forget(self, name):
        for key in _DEPENDS.get(name, ()):
            self._cache.pop(key, None)

    def replace(self, index, line):
        self.lines[index] = line
        self._forget(self.names[index])

    def delete(self, index):
        self._forget(self.names[index])
        del self.names[index]
        del self.lines[index]

    def set_ruri(self, uri):
        self.ruri = uri
        self._cache.pop("ruri", None)

    def set_top_via(self, new_top):
        """Replace the first Via value, splitting a multi-value Via line."""
        i = self.index(b"via")
        rest = split_commas(self.value(i))[1:]
        self.lines[i] = b"Via: " + new_top
        if rest:
            self.names.insert(i + 1, b"via")
            self.lines.insert(i + 1, b"Via: " + b", ".join(rest))
        self._cache.pop("via", None)

    def pop_top_via(self):
        """Remove the first Via value (responses going upstream)."""
        i = self.index(b"via")
        rest = split_commas(self.value(i))[1:]
        if rest:
            self.lines[i] = b"Via: " + b", ".join(rest)
        else:
            del self.names[i]
            del self.lines[i]
        self._cache.pop("via", None)

    def first_line(self):
        if self.is_request:
            return b" ".join((self.method, self.ruri, self.version))
        return b"SIP/2.0 %d %s" % (self.status, self.reason)

    def serialize(self):
        return CRLF.join([self.first_line()] + self.lines) + b"\r\n\r\n" + self.body


def parse(data):
    """Parse one datagram; raises ParseError when it must be dropped silently."""
    if not data or not 0x20 < data[0] < 0x7F:  # keep-alive CRLFs and binary junk
        raise ParseError("not a SIP message")
    return Message(data)
