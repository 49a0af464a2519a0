"""sipedge.uri: the one parser of URIs and host:port text, and its bounded caches."""

import pytest

from sipedge import uri
from sipedge.uri import hostport, ip_literal, parse_uri, port_number, split_hostport


@pytest.mark.parametrize("raw, parts", [
    (b"sip:alice@atlanta.example.com", (b"sip", b"alice", b"atlanta.example.com", None, 5060)),
    (b"sips:alice@atlanta.example.com", (b"sips", b"alice", b"atlanta.example.com", None, 5061)),
    (b"SIP:alice:secret@h.example:5070;transport=udp?subject=x", (b"sip", b"alice", b"h.example", b"5070", 5070)),
    (b"sip:user;par=u%40example.net@example.com", (b"sip", b"user;par=u%40example.net", b"example.com", None, 5060)),
    (b"sip:[2001:db8::10]:5070", (b"sip", None, b"[2001:db8::10]", b"5070", 5070)),
    (b"sip:10.0.0.1", (b"sip", None, b"10.0.0.1", None, 5060)),
])
def test_parse_uri(raw, parts):
    parsed = parse_uri(raw)
    assert (parsed.scheme, parsed.user, parsed.host, parsed.port, parsed.port_number) == parts


@pytest.mark.parametrize("raw", [b"sip:a@", b"sip:a@h:0", b"sip:a@h:65536", b"sip:a@h:99999", b"sip:a@h:50a",
                                 b"http://h", b"sip:a b@h", b"sip", b"sip:[zz::1"])
def test_parse_uri_refuses(raw):
    assert parse_uri(raw) is None


def test_opaque_schemes():
    assert parse_uri(b"tel:+15551234").scheme == b"tel"
    assert parse_uri(b"urn:service:sos").host == b""


def test_uri_params():
    assert parse_uri(b"sip:h.example;lr;maddr=10.0.0.1").param(b"maddr") == b"10.0.0.1"
    assert parse_uri(b"sip:h.example;lr").param(b"lr") == b""
    assert parse_uri(b"sip:h.example").param(b"lr") is None


@pytest.mark.parametrize("text, parts", [
    (b"edge.example", (b"edge.example", None)), (b"edge.example:5080", (b"edge.example", 5080)),
    (b"192.0.2.1:5060", (b"192.0.2.1", 5060)), (b"[2001:db8::1]", (b"[2001:db8::1]", None)),
    (b"[2001:db8::1]:5062", (b"[2001:db8::1]", 5062)),
    (b"edge.example:0", None), (b"edge.example:65536", None), (b"2001:db8::1", None), (b"a b", None), (b"", None),
])
def test_split_hostport(text, parts):
    assert split_hostport(text) == parts


def test_hostport():
    assert hostport(b"192.0.2.1", 5060) == b"192.0.2.1"
    assert hostport(b"192.0.2.1", 5080) == b"192.0.2.1:5080"
    assert hostport(b"2001:db8::1", 5080) == b"[2001:db8::1]:5080"
    assert hostport(b"[2001:db8::1]", 5060) == b"[2001:db8::1]"
    assert hostport(b"192.0.2.1", 5060, None) == b"192.0.2.1:5060"


@pytest.mark.parametrize("host, ip", [
    (b"127.0.0.1", "127.0.0.1"), ("127.0.0.1", "127.0.0.1"), (b"[2001:DB8:0::1]", "2001:db8::1"),
    (b"2001:db8::1", "2001:db8::1"), (b"pbx.example.com", None), (b"127.0.\x00.1", None),
    (b"\xc3\xa9t\xc3\xa9", None), (b"1" * 5000, None),
])
def test_ip_literal(host, ip):
    assert ip_literal(host) == ip


@pytest.mark.parametrize("text, port", [(b"5060", 5060), (b"1", 1), (b"65535", 65535), (b"0", None),
                                        (b"65536", None), (b"005060", None), (b"9" * 5000, None), (b"", None)])
def test_port_number(text, port):
    assert port_number(text) == port


def test_caches_keep_only_short_keys_and_a_bounded_count():
    """Keys come from the network: a long one is never kept, and the count is capped."""
    for i in range(uri.CACHE_ENTRIES + 100):
        parse_uri(b"sip:u%d@tenant.example" % i)
        ip_literal(b"host%d.example" % i)
    parse_uri(b"sip:" + b"x" * 5000 + b"@tenant.example")
    ip_literal(b"h" * 100)
    assert len(uri._URIS) <= uri.CACHE_ENTRIES  # pylint: disable=protected-access
    assert len(uri._LITERALS) <= uri.CACHE_ENTRIES  # pylint: disable=protected-access
    assert max(map(len, uri._URIS)) <= uri.CACHED_KEY  # pylint: disable=protected-access
    assert max(map(len, uri._LITERALS)) <= 64  # pylint: disable=protected-access
