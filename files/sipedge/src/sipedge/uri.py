"""SIP URIs and host:port text, over bytes: the one parser for both.

Used for the URIs of requests (R-URI, From, To, Route), for the routing DB's
destination URIs and for host:port text such as an advertised address.  The
grammar is what Kamailio's parse_uri accepts (docs/sip-spec-notes.md §3, 5.9): sip and
sips URIs are parsed fully, tel and urn are kept opaque, other schemes fail.

Caches keyed on bytes that arrive from the network keep only short keys, so an
attacker sending long unique values costs nothing that stays (issue 9, 11).
"""

import ipaddress
import re

DEFAULT_PORT = 5060
TLS_PORT = 5061
MAX_PORT_DIGITS = 5
CACHED_KEY = 256  # longest URI or host kept in a cache; real ones are far shorter
CACHE_ENTRIES = 8192

_HOST = rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
HOST_RE = re.compile(_HOST + rb"\Z")
_HOSTPART_RE = re.compile(rb"(" + _HOST + rb")(?::([0-9]{1,5}))?((?:;[^;?]*)*)(?:\?.*)?\Z", re.S)
_HOSTPORT_RE = re.compile(rb"(" + _HOST + rb")(?::([0-9]{1,5}))?\Z")


def default_port(scheme):
    """5061 for sips, else 5060 (RFC 3261 19.1.2)."""
    return TLS_PORT if scheme == b"sips" else DEFAULT_PORT


def port_number(text):
    """A port 1-65535 written as decimal digits, else None."""
    if not text or len(text) > MAX_PORT_DIGITS or not text.isdigit():
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def parameter(params, name):
    """Value of `name` in ';a=1;b' style parameters (b'' for a flag), or None."""
    for item in params.split(b";")[1:]:
        key, _sep, val = item.partition(b"=")
        if key.strip().lower() == name:
            return val.strip()
    return None


class Uri:
    """A parsed sip:/sips: URI (other schemes keep only `scheme` and `raw`).

    `host` keeps IPv6 brackets, `port` is the text as written (None when
    absent), `user` excludes a password; all bytes."""

    __slots__ = ("raw", "scheme", "user", "host", "port", "params")

    def __init__(self, raw, scheme, user=None, host=b"", port=None, params=b""):
        self.raw, self.scheme, self.user, self.host, self.port, self.params = raw, scheme, user, host, port, params

    def param(self, name):
        """Value of a URI parameter (b'' for a flag), or None."""
        return parameter(self.params, name)

    @property
    def port_number(self):
        """The port, or the scheme's default."""
        return int(self.port) if self.port else default_port(self.scheme)


_URIS = {}


def parse_uri(raw):
    """Parse a URI as Kamailio's parse_uri accepts it; None when invalid.

    The user part ends at the first '@' (an '@' inside it must be escaped) and
    may hold ';', '?' and ','; a ':' in it starts the password.  Parses of
    short URIs are cached: the same From, To and R-URI come back call after
    call, and a Uri is never modified.
    """
    uri = _URIS.get(raw)
    if uri is None:
        uri = _parse_uri(raw)
        if uri is not None and len(raw) <= CACHED_KEY:
            if len(_URIS) >= CACHE_ENTRIES:
                _URIS.clear()  # cheaper than LRU bookkeeping on every hit; refills in a moment
            _URIS[raw] = uri
    return uri


def _parse_uri(raw):
    if len(raw) < 5 or b" " in raw or b"\t" in raw:
        return None
    colon = raw.find(b":")
    scheme = raw[:colon].lower() if colon > 0 else b""
    if scheme in (b"tel", b"urn"):
        return Uri(raw, scheme) if len(raw) > len(scheme) + 1 else None
    if scheme not in (b"sip", b"sips"):
        return None
    rest = raw[colon + 1:]
    user = None
    at = rest.find(b"@")
    if at >= 0:
        user, rest = rest[:at].partition(b":")[0], rest[at + 1:]
    match = _HOSTPART_RE.match(rest)
    if match is None:
        return None
    port = match.group(2)
    if port is not None and port_number(port) is None:
        return None
    return Uri(raw, scheme, user, match.group(1), port, match.group(3))


def split_hostport(text):
    """b'host', b'host:port', b'[v6]' or b'[v6]:port' -> (host, port or None);
    None when it is not one of those (a port must be 1-65535)."""
    match = _HOSTPORT_RE.match(text)
    if match is None:
        return None
    port = match.group(2)
    if port is None:
        return match.group(1), None
    number = port_number(port)
    return None if number is None else (match.group(1), number)


def hostport(host, port, default=DEFAULT_PORT):
    """host[:port] bytes as they go into Via and Record-Route; IPv6 in brackets."""
    if b":" in host and not host.startswith(b"["):
        host = b"[" + host + b"]"
    return host if port == default else b"%s:%d" % (host, port)


_LITERALS = {}


def ip_literal(host):
    """The canonical text of an IP address given as bytes or str ('::1' for
    '[::1]' too), or None when `host` is not one (a name)."""
    ip = _LITERALS.get(host)
    if ip is None and host not in _LITERALS:
        text = host.decode("ascii", "replace") if isinstance(host, bytes) else host
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        try:
            ip = str(ipaddress.ip_address(text))
        except ValueError:
            ip = None
        if len(host) <= 64:  # long ones are not addresses: never kept
            if len(_LITERALS) >= CACHE_ENTRIES:
                _LITERALS.clear()
            _LITERALS[host] = ip
    return ip
