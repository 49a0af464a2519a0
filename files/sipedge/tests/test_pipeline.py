"""Each stage of the request pipeline, with Kamailio's observable outcome."""

import logging

import pytest

from harness import B1, B2, B3, CLIENT, request
from sipedge.store import RoutingData


def only_reply(sent):
    assert len(sent) == 1, sent
    addr, msg = sent[0]
    assert not msg.is_request
    return addr, msg


def forwarded(sent):
    reqs = [(addr, msg) for addr, msg in sent if msg.is_request]
    assert len(reqs) == 1, sent
    return reqs[0]


# ---- Max-Forwards --------------------------------------------------------------------------

@pytest.mark.parametrize("value", [b"0", b"", b"-1", b"1.5", b"000070", b"abc"])
def test_max_forwards_zero_or_unparsable_gets_483(edge, value):
    addr, msg = only_reply(edge.recv(request(b"OPTIONS", max_forwards=value)))
    assert (msg.status, msg.reason) == (483, b"Too Many Hops")
    assert addr == CLIENT


@pytest.mark.parametrize("value,sent_on", [(b"70", b"69"), (b"10", b"9"), (b"1", b"0"), (b"71", b"70"),
                                           (b"300", b"70"), (b"99999", b"70")])
def test_max_forwards_decremented_or_clamped(edge, value, sent_on):
    _unused, fwd = forwarded(edge.recv(request(b"OPTIONS", max_forwards=value)))
    assert fwd.get(b"max-forwards") == sent_on


def test_missing_max_forwards_inserted_with_limit(edge):
    _unused, fwd = forwarded(edge.recv(request(b"OPTIONS", max_forwards=None)))
    assert fwd.get(b"max-forwards") == b"10"
    assert fwd.count(b"max-forwards") == 1


@pytest.mark.parametrize("headers", [
    [b"Content-Length: x1", b"Max-Forwards: 70"],   # unparsable header before Max-Forwards
    [b"Max-Forwards: 70", b"Content-Length: x1"],   # ... or after it
    [b"Max-Forwards: 5", b"Max-Forwards: 70"],      # two hop counts
    [b"Max-Forwards: 70", b"Bogus header line"],    # a line that is no header
    [b"Max-Forwards: 70", b"CSeq: 1"],              # a second, broken CSeq
])
def test_unparsable_headers_are_dropped_silently(edge, headers):
    """Kamailio cannot build any reply to such a request, so it sends none."""
    data = request(b"OPTIONS", max_forwards=None, content_length=False, headers=headers)
    assert edge.recv(data) == []


@pytest.mark.parametrize("cseq", [b"1", b"OPTIONS", b"1 OPTIONS extra"])
def test_unparsable_cseq_dropped_silently(edge, cseq):
    assert edge.recv(request(b"OPTIONS", cseq=cseq)) == []


def test_request_line_trailing_blank_tolerated(edge):
    data = request(b"OPTIONS").replace(b" SIP/2.0\r\n", b" SIP/2.0 \r\n", 1)
    assert forwarded(edge.recv(data))[0] == B1


def test_content_length_without_end_of_headers(edge):
    data = request(b"OPTIONS")[:-2]  # the header block ends with CRLF but no blank line
    _unused, msg = only_reply(edge.recv(data))
    assert (msg.status, msg.reason) == (400, b"Content-Length Body Failure")


def test_no_reply_to_ack_with_zero_max_forwards(edge):
    assert edge.recv(request(b"ACK", max_forwards=b"0")) == []


# ---- sanity_check("1511", "7") ---------------------------------------------------------------

@pytest.mark.parametrize("data,code,reason", [
    (request(b"INVITE", ruri=b"<sip:alice@tenant1.test>", to=b"<sip:alice@tenant1.test>"), 400, b"Bad Request URI"),
    (request(b"INVITE", ruri=b"http://tenant1.test/x", to=b"<sip:alice@tenant1.test>"), 400, b"Bad Request URI"),
    (request(b"INVITE", cseq=b"1 BYE"), 400, b"CSeq method does not match request method"),
    (request(b"INVITE", cseq=b"1 invite"), 400, b"CSeq method does not match request method"),
    (request(b"INVITE", cseq=b"4294967296 INVITE"), 400, b"CSeq number is illegal"),
    (request(b"INVITE", cseq=b"2147483648 INVITE"), 400, b"CSeq number is illegal"),
    (request(b"INVITE", body=b"v=0\r\n", content_length=False, headers=[b"Content-Length: 9"]),
     400, b"Content-Length mis-match"),
    (request(b"REGISTER", headers=[b"Expires: soon"]), 400, b"Expires value is illegal"),
    (request(b"REGISTER", headers=[b"Expires: 4294967296"]), 400, b"Expires value is illegal"),
    (request(b"REGISTER", headers=[b"Expires:"]), 400, b"Bad Expires Header"),
    (request(b"INVITE", to=b"<mailto:alice@tenant1.test>"), 400, b"Invalid To Header"),
])
def test_sanity_replies(edge, data, code, reason):
    _unused, msg = only_reply(edge.recv(data))
    assert (msg.status, msg.reason) == (code, reason)


@pytest.mark.parametrize("data", [
    request(b"INVITE", headers=[b"Call-ID: second@client"]),      # duplicate Call-ID
    request(b"INVITE", headers=[b"To: <sip:carol@tenant1.test>"]),  # duplicate To
    request(b"INVITE", via=None),                                   # no Via
    request(b"INVITE", via=b"SIP/2.0/UDP ;;,;,,"),                  # Via does not parse
    request(b"INVITE", ruri=b"sip:alice@tenant1.test extra"),       # 4 tokens in the request line
    request(b"INVITE", ruri=b"sip:alice@tenant1.test  "),           # an empty token
    request(b"INVITE").replace(b"SIP/2.0\r\n", b"SIP/7.0\r\n", 1),  # not SIP/2.0
    b"\x00\x01\x02binary junk\xff\xfe",
    b"\r\n\r\n",
    b"INVITE",
])
def test_silent_drops(edge, data):
    assert edge.recv(data) == []


def test_missing_call_id_dropped(edge):
    data = request(b"INVITE").replace(b"Call-ID: call-1@client\r\n", b"")
    assert edge.recv(data) == []


# ---- scanners -------------------------------------------------------------------------------

@pytest.mark.parametrize("agent", [b"friendly-scanner", b"SIPVicious 0.3.4", b"sipcli/v1.8", b"Nmap NSE",
                                   b"my FRIENDLY-SCANNER build"])
def test_scanner_user_agents_dropped(edge, agent):
    assert edge.recv(request(b"INVITE", user_agent=agent)) == []


def test_scanner_pattern_is_configurable(make_edge):
    edge = make_edge(sip__scanner_user_agents=["evil"])
    assert edge.recv(request(b"OPTIONS", user_agent=b"Evil-Bot")) == []
    assert forwarded(edge.recv(request(b"OPTIONS", user_agent=b"sipvicious")))


# ---- in-dialog ------------------------------------------------------------------------------

def test_in_dialog_without_route_gets_404(edge):
    _unused, msg = only_reply(edge.recv(request(b"BYE", to_tag=b"x")))
    assert (msg.status, msg.reason) == (404, b"Not Here")


def test_in_dialog_ack_without_route_gets_nothing(edge):
    assert edge.recv(request(b"ACK", to_tag=b"x")) == []


def test_in_dialog_foreign_route_is_never_relayed(edge):
    data = request(b"BYE", to_tag=b"x", headers=[b"Route: <sip:127.0.0.99;lr>"])
    _unused, msg = only_reply(edge.recv(data))
    assert msg.status == 404


def test_in_dialog_route_to_us_is_loose_routed(edge):
    data = request(b"BYE", ruri=b"sip:alice@127.0.0.11:5060", to=b"<sip:alice@tenant1.test>", to_tag=b"x",
                   headers=[b"Route: <sip:127.0.0.1;lr;ftag=ft1>"])
    addr, fwd = forwarded(edge.recv(data))
    assert addr == B1
    assert fwd.ruri == b"sip:alice@127.0.0.11:5060"
    assert fwd.count(b"route") == 0
    assert fwd.count(b"record-route") == 0
    assert fwd.count(b"via") == 2


def test_in_dialog_next_route_is_followed(edge):
    data = request(b"BYE", ruri=b"sip:alice@127.0.0.11", to_tag=b"x",
                   headers=[b"Route: <sip:127.0.0.1;lr>, <sip:127.0.0.12:5060;lr>"])
    addr, fwd = forwarded(edge.recv(data))
    assert addr == B2
    assert fwd.values(b"route") == [b"<sip:127.0.0.12:5060;lr>"]


def test_in_dialog_ack_for_2xx_forwarded_without_transaction(edge):
    data = request(b"ACK", ruri=b"sip:alice@127.0.0.11", to_tag=b"x", headers=[b"Route: <sip:127.0.0.1;lr>"])
    addr, fwd = forwarded(edge.recv(data))
    assert addr == B1 and fwd.method == b"ACK"
    assert edge.live() == (0, 0)


def test_in_dialog_unknown_method_is_relayed(edge):
    data = request(b"INFO", ruri=b"sip:alice@127.0.0.11", to_tag=b"x", headers=[b"Route: <sip:127.0.0.1;lr>"])
    addr, _unused = forwarded(edge.recv(data))
    assert addr == B1


def test_in_dialog_target_name_is_not_resolved(edge):
    data = request(b"BYE", ruri=b"sip:alice@pbx.tenant1.test", to_tag=b"x", headers=[b"Route: <sip:127.0.0.1;lr>"])
    _unused, msg = only_reply(edge.recv(data))
    assert msg.status == 478


def test_named_destination_goes_to_the_address_resolved_at_load(make_edge):
    """A destination written as a host name is sent to the address the shell
    resolved at load time; while it does not resolve, requests get 478."""
    edge = make_edge(destinations=((10, "sip:pbx.tenant1.test:5080", 0, 0, None),))
    _unused, msg = only_reply(edge.recv(request(b"OPTIONS")))
    assert (msg.status, msg.reason) == (478, b"Unresolvable destination (478/SL)")
    data = RoutingData({"tenant1.test": 10}, ((10, "sip:pbx.tenant1.test:5080", 0, 0, None),))
    edge.proxy.commit(edge.proxy.prepare(data, {"pbx.tenant1.test": "127.0.0.31"}.get), edge.now)
    addr, _unused = forwarded(edge.recv(request(b"OPTIONS", branch=b"z9hG4bKc2")))
    assert addr == ("127.0.0.31", 5080)


# ---- methods --------------------------------------------------------------------------------

@pytest.mark.parametrize("method", [b"MESSAGE", b"SUBSCRIBE", b"NOTIFY", b"INFO", b"PUBLISH", b"REFER", b"UPDATE",
                                    b"PRACK", b"FOO"])
def test_other_methods_get_405_without_allow(edge, method):
    _unused, msg = only_reply(edge.recv(request(method)))
    assert (msg.status, msg.reason) == (405, b"Method Not Allowed")
    assert msg.get(b"allow") is None
    assert msg.to_tag  # stateless replies >= 180 carry a To-tag


# ---- domains --------------------------------------------------------------------------------

def test_unknown_domain_dropped_with_notice(edge, caplog):
    with caplog.at_level(logging.DEBUG, logger="sipedge"):
        assert edge.recv(request(b"INVITE", ruri=b"sip:a@unknown.test")) == []
    assert ("sipedge", 25, "Door-knock blocked: domain=unknown.test src=127.0.0.2") in caplog.record_tuples


def test_domain_match_is_exact(edge):
    assert edge.recv(request(b"INVITE", ruri=b"sip:a@TENANT1.test")) == []


def test_ruri_to_mismatch_dropped_with_warning(edge, caplog):
    with caplog.at_level(logging.DEBUG, logger="sipedge"):
        assert edge.recv(request(b"INVITE", to=b"<sip:a@tenant2.test>")) == []
    assert ("sipedge", logging.WARNING, "R-URI / To mismatch domain=tenant1.test src=127.0.0.2") in caplog.record_tuples


def test_request_to_the_edge_itself_is_dropped(edge):
    assert edge.recv(request(b"OPTIONS", ruri=b"sip:127.0.0.1")) == []


def test_options_to_the_edge_answered_for_listed_networks(make_edge):
    edge = make_edge(sip__options_answer_networks=["127.0.0.0/24"])
    _unused, msg = only_reply(edge.recv(request(b"OPTIONS", ruri=b"sip:127.0.0.1")))
    assert msg.status == 200
    assert edge.recv(request(b"OPTIONS", ruri=b"sip:127.0.0.1"), src=("127.0.1.5", 5060)) == []


def test_tel_uri_has_no_domain_and_is_dropped(edge):
    assert edge.recv(request(b"INVITE", ruri=b"tel:+15551234", to=b"<tel:+15551234>")) == []


def test_disabled_domain_is_not_loaded(make_edge):
    edge = make_edge(domains={"tenant2.test": 20})
    assert edge.recv(request(b"INVITE")) == []


# ---- dispatcher -----------------------------------------------------------------------------

def test_round_robin_alternates_within_the_tenant_set(edge):
    seen = []
    for i in range(6):
        sent = edge.recv(request(b"INVITE", call_id=b"c%d" % i, branch=b"z9hG4bKrr%d" % i))
        seen.append(forwarded(sent)[0])
    assert seen == [B1, B2] * 3
    tenant2 = forwarded(edge.recv(request(b"INVITE", ruri=b"sip:x@tenant2.test", call_id=b"t2")))[0]
    assert tenant2 == B3


def test_all_destinations_down_gives_503_and_error(make_edge, caplog):
    edge = make_edge(destinations=((10, "sip:127.0.0.11:5060", 1, 0, None), (10, "sip:127.0.0.12:5060", 4, 0, None)))
    with caplog.at_level(logging.DEBUG, logger="sipedge"):
        _unused, msg = only_reply(edge.recv(request(b"INVITE")))
    assert (msg.status, msg.reason) == (503, b"Service Unavailable")
    assert ("sipedge", logging.ERROR, "No healthy Asterisk nodes for domain=tenant1.test") in caplog.record_tuples


def test_set_without_destinations_gives_503(make_edge):
    edge = make_edge(domains={"tenant1.test": 99})
    _unused, msg = only_reply(edge.recv(request(b"OPTIONS")))
    assert msg.status == 503


def test_priority_first_with_algorithm_8(make_edge):
    edge = make_edge(dispatcher__algorithm=8,
                     destinations=((10, "sip:127.0.0.11:5060", 0, 10, None), (10, "sip:127.0.0.12:5060", 0, 0, None)))
    for i in range(3):
        assert forwarded(edge.recv(request(b"OPTIONS", call_id=b"p%d" % i, branch=b"z9hG4bKp%d" % i)))[0] == B2


# ---- what the forwarded request looks like ---------------------------------------------------

def test_forwarded_invite_carries_via_record_route_and_received(edge):
    sent = edge.recv(request(b"INVITE"))
    assert len(sent) == 2
    (up, trying), (down, fwd) = sent
    assert up == CLIENT and (trying.status, trying.reason) == (100, b"trying -- your call is important to us")
    assert down == B1
    assert fwd.ruri == b"sip:alice@tenant1.test"
    vias = fwd.values(b"via")
    assert len(vias) == 2
    assert vias[0].startswith(b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bK")
    assert vias[1] == b"SIP/2.0/UDP 127.0.0.2:5062;received=127.0.0.2;branch=z9hG4bKc1;rport=5062"
    assert fwd.values(b"record-route") == [b"<sip:127.0.0.1;lr;ftag=ft1>"]
    assert fwd.get(b"max-forwards") == b"69"


def test_via_without_rport_replied_to_via_port(edge):
    data = request(b"OPTIONS", max_forwards=b"0", via=b"SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKx")
    addr, msg = only_reply(edge.recv(data, src=("127.0.0.2", 40000)))
    assert addr == ("127.0.0.2", 5070)
    assert msg.values(b"via") == [b"SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKx"]


def test_reply_goes_to_source_ip_and_records_received(edge):
    data = request(b"OPTIONS", max_forwards=b"0", via=b"SIP/2.0/UDP client.invalid;branch=z9hG4bKy;rport")
    addr, msg = only_reply(edge.recv(data, src=("127.0.0.9", 41000)))
    assert addr == ("127.0.0.9", 41000)
    assert msg.values(b"via") == [b"SIP/2.0/UDP client.invalid;received=127.0.0.9;branch=z9hG4bKy;rport=41000"]


def test_compact_and_folded_headers_are_understood(edge):
    data = (b"OPTIONS sip:alice@tenant1.test SIP/2.0\r\n"
            b"v: SIP/2.0/UDP 127.0.0.2:5062;branch=z9hG4bKcompact\r\n"
            b"f: <sip:bob@tenant1.test>\r\n ;tag=ft9\r\n"
            b"t: <sip:alice@tenant1.test>\r\n"
            b"i: compact-1\r\nCSeq: 7 OPTIONS\r\nl: 0\r\n\r\n")
    addr, fwd = forwarded(edge.recv(data))
    assert addr == B1
    assert fwd.from_tag == b"ft9"


def test_ipv6_client_via_gets_received_without_brackets(edge):
    data = request(b"OPTIONS", via=b"SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bKv6;rport")
    addr, fwd = forwarded(edge.recv(data, src=("::1", 5099)))
    assert addr == B1
    assert fwd.values(b"via")[1] == b"SIP/2.0/UDP [2001:db8::9]:5062;received=::1;branch=z9hG4bKv6;rport=5099"


def test_two_content_lengths_dropped_silently(edge):
    data = request(b"OPTIONS", content_length=False, headers=[b"Content-Length: 0", b"Content-Length: 0"])
    assert edge.recv(data) == []
