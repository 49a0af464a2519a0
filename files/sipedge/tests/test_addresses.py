"""The edge's own addresses: what it advertises in Via and Record-Route and
what it recognises as itself (issue 9, defects 4 and 5)."""

import pytest

from sipedge.config import Listen, from_dict
from sipedge.net import StartupError, advertised, interface_ipv6, names_of_self

V6 = [("::1", False), ("fe80::1", False), ("2001:db8::5", True), ("2001:db8::6", True)]


def v6():
    return V6


def v4():
    return ["192.0.2.5", "198.51.100.7"]


def config(**sip):
    return from_dict({"sip": sip})


@pytest.mark.parametrize("address, port, local", [
    ("edge.example.net", 5060, b"edge.example.net"),
    ("edge.example.net", 5080, b"edge.example.net:5080"),  # a host without a port takes the socket's
    ("edge.example.net:5090", 5080, b"edge.example.net:5090"),
    ("192.0.2.10", 5080, b"192.0.2.10:5080"),
    ("[2001:db8::10]", 5070, b"[2001:db8::10]:5070"),
    ("[2001:db8::10]:5060", 5070, b"[2001:db8::10]"),
])
def test_advertised_address(address, port, local):
    assert advertised(config(advertised_address=address), "0.0.0.0", port, v4, v6) == local


def test_wildcards_advertise_a_real_address():
    assert advertised(config(), "0.0.0.0", 5060, v4, v6) == b"192.0.2.5"
    assert advertised(config(), "0.0.0.0", 5080, lambda: [], v6) == b"127.0.0.1:5080"
    assert advertised(config(), "::", 5080, v4, v6) == b"[2001:db8::5]:5080"  # the first global one
    assert advertised(config(), "192.0.2.9", 5060, v4, v6) == b"192.0.2.9"


def test_ipv6_wildcard_without_a_global_address_is_a_startup_error():
    with pytest.raises(StartupError, match="no global IPv6 address.*advertised_address"):
        advertised(config(listen=["udp:[::]:5060"]), "::", 5060, v4, lambda: [("::1", False), ("fe80::1", False)])
    assert advertised(config(listen=["udp:[::]:5060"], advertised_address="[2001:db8::9]"), "::", 5060, v4,
                      lambda: []) == b"[2001:db8::9]"


class Sock:  # pylint: disable=too-few-public-methods
    def __init__(self, port):
        self.port = port

    def getsockname(self):
        return ("", self.port)


def test_myself_includes_every_address_of_a_wildcard_and_the_advertised_one():
    socks = [(Listen("udp", "0.0.0.0", 5080), Sock(5080)), (Listen("udp", "::", 5080), Sock(5080))]
    myself = names_of_self(socks, b"edge.example.net:5080", v4, v6)
    assert {(b"192.0.2.5", 5080), (b"127.0.0.1", 5080), (b"::1", 5080), (b"2001:db8::6", 5080),
            (b"edge.example.net", 5080)} <= myself
    assert (b"edge.example.net", 5060) not in myself  # host-only advertised = the socket's port, everywhere


def test_interface_ipv6_reads_proc(tmp_path):
    (tmp_path / "if_inet6").write_text(
        "00000000000000000000000000000001 01 80 10 80       lo\n"
        "fe8000000000000000fc00fffe000001 04 40 20 80     eth0\n"
        "20010db8000000000000000000000007 05 40 00 80     eth1\n"
        "20010db8000000000000000000000008 04 40 00 c0     eth0\n"   # tentative: not usable
        "20010db8000000000000000000000009 04 40 00 80     eth0\n")
    (tmp_path / "ipv6_route").write_text(
        "00000000000000000000000000000000 00 00000000000000000000000000000000 00 "
        "20010db8000000000000000000000001 00000400 00000002 00000000 00000003     eth0\n")
    found = interface_ipv6(str(tmp_path / "if_inet6"), str(tmp_path / "ipv6_route"))
    assert [a for a, is_global in found if is_global] == ["2001:db8::9", "2001:db8::7"]  # default route's first
    assert ("::1", False) in found and ("2001:db8::8", False) in found
