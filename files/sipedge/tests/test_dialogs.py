"""No open relay inside dialogs (docs/design.md decision 13): an in-dialog request
from a source that is not a dispatcher destination may only be relayed to a
dispatcher destination (by IP address, any port); a backend's own requests go
where the dialog says.  Everything else gets 403 (an ACK is dropped)."""

import logging

import pytest

from harness import B1, CLIENT, request, response

ROUTE = b"Route: <sip:127.0.0.1;lr;ftag=ft1>"


def in_dialog(method, ruri, **kw):
    return request(method, ruri=ruri, to_tag=b"be1", cseq=b"2 " + method, headers=[ROUTE], **kw)


def sent_to(sent):
    return [(addr, m.method if m.is_request else m.status) for addr, m in sent]


def test_caller_bye_reaches_the_backend_on_any_port(edge):
    assert sent_to(edge.recv(in_dialog(b"BYE", b"sip:alice@127.0.0.11:5070"))) == [(("127.0.0.11", 5070), b"BYE")]


def test_backend_bye_goes_where_the_dialog_says(edge):
    bye = in_dialog(b"BYE", b"sip:bob@127.0.0.2:5062", via=b"SIP/2.0/UDP 127.0.0.11;branch=%s")
    assert sent_to(edge.recv(bye, src=B1)) == [(CLIENT, b"BYE")]


def test_caller_reinvite_and_ack_for_2xx(edge):
    sent = sent_to(edge.recv(in_dialog(b"INVITE", b"sip:alice@127.0.0.11:5060", branch=b"z9hG4bKre")))
    assert sent == [(CLIENT, 100), (B1, b"INVITE")]
    ack = request(b"ACK", ruri=b"sip:alice@127.0.0.11:5060", to_tag=b"be1", cseq=b"2 ACK", headers=[ROUTE],
                  branch=b"z9hG4bKack2")
    assert sent_to(edge.recv(ack)) == [(B1, b"ACK")]


def test_forged_in_dialog_request_is_refused_with_a_notice(edge, caplog):
    with caplog.at_level(logging.INFO, logger="sipedge"):
        sent = edge.recv(in_dialog(b"BYE", b"sip:victim@127.0.0.99:5060"))
    (addr, reply), = sent
    assert addr == CLIENT and (reply.status, reply.reason) == (403, b"Forbidden")
    assert any(r.levelno == 25 and "127.0.0.2" in r.getMessage() and "127.0.0.99" in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("method", [b"ACK", b"INVITE", b"OPTIONS", b"INFO"])
def test_forged_requests_never_leave_and_an_ack_gets_nothing(edge, method):
    sent = edge.recv(in_dialog(method, b"sip:victim@127.0.0.99:5060", branch=b"z9hG4bKf" + method))
    assert all(not m.is_request for _a, m in sent)
    assert sent_to(sent) == ([] if method == b"ACK" else [(CLIENT, 403)])


def test_disabled_destination_still_counts_as_a_backend(make_edge):
    edge = make_edge(destinations=((10, "sip:127.0.0.11:5060", 4, 0, None), (10, "sip:127.0.0.12:5060", 0, 0, None)))
    assert sent_to(edge.recv(in_dialog(b"BYE", b"sip:alice@127.0.0.11:5060"))) == [(B1, b"BYE")]


def test_removed_destination_counts_for_the_grace_period(make_edge):
    edge = make_edge(dispatcher__removed_grace=3600.0)
    edge.load({"tenant1.test": 10}, ((10, "sip:127.0.0.12:5060", 0, 0, None),))  # B1 is gone
    assert sent_to(edge.recv(in_dialog(b"BYE", b"sip:alice@127.0.0.11:5060", branch=b"z9hG4bKg1"))) == [(B1, b"BYE")]
    bye = in_dialog(b"BYE", b"sip:bob@127.0.0.2:5062", via=b"SIP/2.0/UDP 127.0.0.11;branch=%s", branch=b"z9hG4bKg2")
    assert sent_to(edge.recv(bye, src=B1)) == [(CLIENT, b"BYE")]
    edge.advance(3600.0)
    assert sent_to(edge.recv(in_dialog(b"BYE", b"sip:alice@127.0.0.11:5060", branch=b"z9hG4bKg3"))) == [(CLIENT, 403)]


def test_a_destination_back_in_the_db_is_a_backend_again(make_edge):
    edge = make_edge(dispatcher__removed_grace=10.0)
    rows = ((10, "sip:127.0.0.11:5060", 0, 0, None),)
    edge.load({"tenant1.test": 10}, ())
    edge.advance(20.0)
    edge.load({"tenant1.test": 10}, rows)
    assert sent_to(edge.recv(in_dialog(b"BYE", b"sip:alice@127.0.0.11:5060"))) == [(B1, b"BYE")]


def test_whole_call_through_the_edge_with_the_backends_bye(edge):
    inv = edge.recv(request(b"INVITE"))
    fwd = inv[1][1]
    ok = response(fwd.serialize(), 200, headers=[b"Contact: <sip:alice@127.0.0.11:5060>"])
    assert sent_to(edge.recv(ok, src=B1)) == [(CLIENT, 200)]
    bye = request(b"BYE", ruri=b"sip:bob@127.0.0.2:5062", to_tag=b"ft1", cseq=b"1 BYE",
                  headers=[b"Route: <sip:127.0.0.1;lr;ftag=ft1>"], via=b"SIP/2.0/UDP 127.0.0.11;branch=%s",
                  branch=b"z9hG4bKbb")
    assert sent_to(edge.recv(bye, src=B1)) == [(CLIENT, b"BYE")]
