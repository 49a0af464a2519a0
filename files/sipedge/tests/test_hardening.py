"""Regression tests for the defects a SIP review of the core found (issue 9),
each under a fake clock.  Every one of them failed on the core before its fix."""

import logging
import tracemalloc

import pytest

from harness import B1, B2, CLIENT, request, response

ROUTE = b"Route: <sip:127.0.0.1;lr>"


def statuses(sent):
    return [(addr, msg.method if msg.is_request else msg.status) for addr, msg in sent]


def forward_invite(edge, **kw):
    sent = edge.recv(request(b"INVITE", **kw))
    assert statuses(sent)[0] == (CLIENT, 100)
    return sent[1][1]


# ---- 1. a Via port above 65535 ------------------------------------------------------------

@pytest.mark.parametrize("port", [b"65536", b"70000", b"99999", b"0"])
def test_via_port_out_of_range_is_dropped_and_leaves_nothing(edge, port):
    """RFC 3261 25: a port is 1-65535.  Kamailio's Via parser refuses another one, and
    a request whose top Via does not parse is dropped without a reply."""
    for i in range(1000):
        data = request(b"INVITE", ruri=b"sip:alice@127.0.0.11", to_tag=b"x", headers=[ROUTE],
                       via=b"SIP/2.0/UDP 127.0.0.2:" + port + b";branch=%s", branch=b"z9hG4bKp%d" % i)
        assert edge.recv(data) == []
    edge.advance(60)
    assert edge.live() == (0, 0)


# ---- 2. every 2xx to an INVITE goes upstream -----------------------------------------------

def test_2xx_after_local_408_at_fr_inv_timer_is_forwarded_with_its_retransmissions(edge):
    fwd = forward_invite(edge)
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    expired = statuses(edge.advance(30.0))
    assert (CLIENT, 408) in expired and (B1, b"CANCEL") in expired
    ok = response(fwd.serialize(), 200)
    assert statuses(edge.recv(ok, src=B1)) == [(CLIENT, 200)]
    assert statuses(edge.recv(ok, src=B1)) == [(CLIENT, 200)]  # a retransmission too
    # the caller's 408 is no longer retransmitted once the 2xx went up
    assert [s for s in statuses(edge.advance(4.0)) if s == (CLIENT, 408)] == []


def test_2xx_after_local_408_at_fr_timer_is_forwarded(edge):
    fwd = forward_invite(edge)
    assert (CLIENT, 408) in statuses(edge.advance(5.0))
    assert statuses(edge.recv(response(fwd.serialize(), 200), src=B1)) == [(CLIENT, 200)]


def test_2xx_after_a_relayed_negative_final_is_forwarded(edge):
    fwd = forward_invite(edge)
    sent = statuses(edge.recv(response(fwd.serialize(), 486, b"Busy Here"), src=B1))
    assert (CLIENT, 486) in sent and (B1, b"ACK") in sent
    assert statuses(edge.recv(response(fwd.serialize(), 200, to_tag=b"be2"), src=B1)) == [(CLIENT, 200)]


# ---- 3. stray responses go only to IP literals ----------------------------------------------

def stray(second_via):
    return response(request(b"OPTIONS", via=b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKse0.gone, " + second_via), 200)


def test_stray_response_to_a_host_name_is_dropped_and_counted(edge):
    assert edge.recv(stray(b"SIP/2.0/UDP pbx.example.com:5070;branch=z9hG4bKx")) == []
    assert edge.proxy.stats()["drops"]["stray-response-not-ip"] == 1


def test_stray_response_goes_to_received_or_a_literal_host(edge):
    sent = edge.recv(stray(b"SIP/2.0/UDP pbx.example.com:5070;branch=z9hG4bKx;received=127.0.0.9"))
    assert [addr for addr, _m in sent] == [("127.0.0.9", 5070)]
    sent = edge.recv(stray(b"SIP/2.0/UDP 127.0.0.8;branch=z9hG4bKx;rport=5099;received=127.0.0.8"))
    assert [addr for addr, _m in sent] == [("127.0.0.8", 5099)]


@pytest.mark.parametrize("via", [b"SIP/2.0/UDP 127.0.0.8;branch=z9hG4bKx;received=127.0.\x00.8",
                                 b"SIP/2.0/UDP 127.0.0.8;branch=z9hG4bKx;received=\xc3\xa9t\xc3\xa9",
                                 b"SIP/2.0/UDP 127.0.0.8;branch=z9hG4bKx;rport=" + b"9" * 5000,
                                 b"SIP/2.0/UDP 127.0.0.8:99999;branch=z9hG4bKx"])
def test_stray_response_with_a_bad_return_address_is_dropped(edge, via):
    """13: a received= with NUL or non-ASCII bytes, or a port no socket takes."""
    assert edge.recv(stray(via)) == []


# ---- 6. the reply to a relayed unmatched CANCEL ------------------------------------------

@pytest.mark.parametrize("reply", [
    lambda fwd: response(fwd.replace(b";branch=z9hG4bK", b";received=127.0.0.1;branch=z9hG4bK", 1), 200),
    lambda fwd: response(fwd, 200).replace(b"\r\nVia: ", b"\r\nv: ", 1),
    lambda fwd: response(fwd, 503, b"Service Unavailable"),
])
def test_reply_to_a_relayed_unmatched_cancel_goes_upstream(edge, reply):
    sent = edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"))
    fwd = [m for _a, m in sent if m.is_request][0]
    up = edge.recv(reply(fwd.serialize()), src=B1)
    assert [addr for addr, _m in up] == [CLIENT]
    assert [a for a, m in edge.advance(5.0) if m.is_request] == []  # our CANCEL is not retransmitted


# ---- 7. retransmitted finals to non-INVITE are absorbed ------------------------------------

def test_retransmitted_final_to_non_invite_is_absorbed(edge):
    sent = edge.recv(request(b"OPTIONS"))
    ok = response(sent[0][1].serialize(), 200)
    assert statuses(edge.recv(ok, src=B1)) == [(CLIENT, 200)]
    assert edge.recv(ok, src=B1) == []
    assert edge.recv(response(sent[0][1].serialize(), 404, b"Not Found"), src=B1) == []


# ---- 8. transaction matching ---------------------------------------------------------------

def test_branch_that_is_only_the_magic_cookie_is_not_an_rfc3261_branch(edge):
    """Kamailio treats a branch as RFC 3261's only when something follows the
    cookie: two calls whose branch is just `z9hG4bK` are two transactions."""
    first = edge.recv(request(b"INVITE", branch=b"z9hG4bK", call_id=b"one@client"))
    second = edge.recv(request(b"INVITE", branch=b"z9hG4bK", call_id=b"two@client"))
    assert statuses(first) == [(CLIENT, 100), (B1, b"INVITE")]
    assert statuses(second) == [(CLIENT, 100), (B2, b"INVITE")]


def test_rfc2543_matching_uses_the_request_uri(edge):
    """RFC 3261 17.2.3: without a 3261 branch, R-URI, To tag, From tag, Call-ID,
    CSeq and top Via identify the transaction."""
    first = edge.recv(request(b"OPTIONS", via=b"SIP/2.0/UDP 127.0.0.2:5062"))
    second = edge.recv(request(b"OPTIONS", ruri=b"sip:carol@tenant1.test", to=b"<sip:carol@tenant1.test>",
                               via=b"SIP/2.0/UDP 127.0.0.2:5062"))
    assert [m.method for _a, m in first] == [m.method for _a, m in second] == [b"OPTIONS"]
    again = edge.recv(request(b"OPTIONS", via=b"SIP/2.0/UDP 127.0.0.2:5062"))
    assert again == []  # a retransmission of the first: absorbed (no reply yet)


# ---- 9. a strict-routing next hop ----------------------------------------------------------

def test_strict_router_next_hop(edge):
    """RFC 3261 16.6 step 6: the R-URI becomes the strict router's URI, the old
    R-URI is appended as the last Route, and the request goes to the strict router."""
    data = request(b"BYE", ruri=b"sip:alice@127.0.0.30:5080", to_tag=b"x",
                   headers=[b"Route: <sip:127.0.0.1;lr>, <sip:127.0.0.11:5070>, <sip:127.0.0.12;lr>"])
    (addr, fwd), = edge.recv(data)
    assert addr == ("127.0.0.11", 5070)
    assert fwd.ruri == b"sip:127.0.0.11:5070"
    assert fwd.values(b"route") == [b"<sip:127.0.0.12;lr>", b"<sip:alice@127.0.0.30:5080>"]


# ---- 10. an INVITE's life is bounded ---------------------------------------------------------

def test_max_inv_lifetime_ends_an_invite_kept_alive_by_provisionals(edge):
    """Kamailio's max_inv_lifetime (180 s): a backend sending a 1xx every 25 s
    keeps fr_inv_timer (30 s) from expiring, not the transaction alive forever."""
    assert edge.config.max_inv_lifetime == 180.0
    fwd = forward_invite(edge)
    ringing = response(fwd.serialize(), 180, b"Ringing")
    for _i in range(7):
        edge.recv(ringing, src=B1)
        assert (CLIENT, 408) not in statuses(edge.advance(25.0))
    edge.recv(ringing, src=B1)  # at 175 s
    ended = statuses(edge.advance(5.0))
    assert (CLIENT, 408) in ended and (B1, b"CANCEL") in ended


def test_max_inv_lifetime_is_a_setting(make_edge):
    edge = make_edge(timers__max_inv_lifetime=40.0)
    fwd = forward_invite(edge)
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    edge.advance(25.0)
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    assert (CLIENT, 408) in statuses(edge.advance(15.0))


# ---- 11. caches keyed on attacker bytes are bounded by size ----------------------------------

def test_memory_stays_flat_under_long_unique_uris_header_names_hosts_and_methods(edge):
    def flood(start, count):
        for i in range(start, start + count):
            junk = b"%08d" % i + b"x" * 3000
            edge.recv(request(b"OPTIONS", ruri=b"sip:" + junk + b"@unknown.test", to=b"<sip:" + junk + b"@unknown.test>",
                              headers=[b"X-" + junk + b": 1"], branch=b"z9hG4bK%d" % i))
            edge.recv(request(b"BYE", ruri=b"sip:a@" + junk + b".test", to_tag=b"t", headers=[ROUTE],
                              branch=b"z9hG4bKb%d" % i))
            method = b"M" + junk[:1000].replace(b"x", b"Y")  # a method token: counted as "other"
            edge.recv(request(method, branch=b"z9hG4bKm%d" % i))
    logging.disable(logging.CRITICAL)  # what the test framework keeps of log lines is not the core's
    tracemalloc.start()
    try:
        flood(0, 500)
        before = tracemalloc.get_traced_memory()[0]
        flood(500, 10000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
        logging.disable(logging.NOTSET)
    assert grown < 1_000_000, "%d bytes kept after 10,000 requests" % grown


# ---- 12. numbers longer than Python's int conversion limit ---------------------------------

@pytest.mark.parametrize("header, outcome", [
    (b"Content-Length: " + b"1" * 5000, None),  # Kamailio's parser overflows: a bad header, dropped
    (b"Content-Length: 4294967296", None),
    (b"Expires: " + b"1" * 5000, (400, b"Expires value is illegal")),
    (b"Max-Forwards: " + b"7" * 5000, (483, b"Too Many Hops")),
])
def test_huge_numbers_in_requests_are_refused_without_an_exception(edge, header, outcome):
    sent = edge.recv(request(b"OPTIONS", headers=[header], content_length=False,
                             max_forwards=None if header.startswith(b"Max-Forwards") else b"70"))
    assert [(m.status, m.reason) for _a, m in sent] == ([outcome] if outcome else [])


def test_huge_cseq_number_gets_400(edge):
    (_addr, msg), = edge.recv(request(b"OPTIONS", cseq=b"1" * 5000 + b" OPTIONS"))
    assert (msg.status, msg.reason) == (400, b"CSeq number is illegal")


# ---- found by the fuzz test: a status code outside 100-699 -------------------------------

@pytest.mark.parametrize("code", [b"000", b"099", b"700", b"999"])
def test_a_response_with_a_status_outside_100_699_is_dropped(edge, code):
    fwd = forward_invite(edge)
    ok = response(fwd.serialize(), 200)
    assert edge.recv(ok.replace(b"SIP/2.0 200 OK", b"SIP/2.0 " + code + b" Odd", 1), src=B1) == []
