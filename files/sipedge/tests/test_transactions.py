"""Transactions under a fake clock: retransmissions, timers, CANCEL, ACK, cleanup."""

import pytest

from harness import B1, CLIENT, request, response
from sipedge.message import parse


def start_invite(edge, **kw):
    sent = edge.recv(request(b"INVITE", **kw))
    assert [m.status if not m.is_request else m.method for _i, m in sent] == [100, b"INVITE"]
    return sent[1][1]


def times_of(edge, seconds, step=0.001):
    """Times (relative) at which something was sent during `seconds`."""
    start, out = edge.now, []
    while edge.now < start + seconds - 1e-9:
        for addr, msg in edge.advance(step):
            out.append((round(edge.now - start, 3), addr, msg))
    return out


def test_invite_retransmitted_t1_doubling_capped_at_t2_until_fr_timer(edge):
    fwd = start_invite(edge)
    events = times_of(edge, 5.0, step=0.0625)
    retrans = [t for t, addr, m in events if m.is_request and m.method == b"INVITE"]
    assert retrans == [0.5, 1.5, 3.5]  # T1, +2*T1, +4*T1; next would be 7.5 > fr_timer
    final = [(t, addr, m.status, m.reason) for t, addr, m in events if not m.is_request]
    assert final == [(5.0, CLIENT, 408, b"Request Timeout")]
    assert all(m.get(b"via") == fwd.get(b"via") for t, _unused, m in events if m.is_request)


def test_non_invite_retransmissions_cap_at_t2(make_edge):
    edge = make_edge(timers__fr_timer=20.0)
    edge.recv(request(b"OPTIONS"))
    events = times_of(edge, 20.0, step=0.25)
    sends = [t for t, _unused, m in events if m.is_request]
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5]
    assert [(t, m.status) for t, _unused, m in events if not m.is_request] == [(20.0, 408)]


def test_provisional_stops_invite_retransmission_and_starts_fr_inv(edge):
    fwd = start_invite(edge)
    edge.advance(0.2)
    sent = edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    assert [(a, m.status) for a, m in sent] == [(CLIENT, 180)]
    assert sent[0][1].count(b"via") == 1  # our Via removed
    events = times_of(edge, 30.0, step=0.5)
    assert [m for _i, _unused, m in events if m.is_request and m.method == b"INVITE"] == []
    # fr_inv_timer (30 s) after the last provisional: 408 upstream, CANCEL downstream
    kinds = [(t, a, m.method if m.is_request else m.status) for t, a, m in events]
    assert (30.0, CLIENT, 408) in kinds and (30.0, B1, b"CANCEL") in kinds


def test_fr_inv_restarted_on_each_provisional(edge):
    fwd = start_invite(edge)
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    edge.advance(20)
    edge.recv(response(fwd.serialize(), 183, b"Session Progress"), src=B1)
    assert [m.status for _i, m in edge.advance(29.9) if not m.is_request] == []
    assert 408 in [m.status for _i, m in edge.advance(0.2) if not m.is_request]


def test_100_from_downstream_is_not_relayed_but_stops_retransmission(edge):
    fwd = start_invite(edge)
    assert edge.recv(response(fwd.serialize(), 100, b"Trying"), src=B1) == []
    assert [m for _i, m in edge.advance(4.0) if m.is_request] == []


def test_retransmitted_request_gets_last_reply_and_is_not_forwarded_again(edge):
    fwd = start_invite(edge)
    again = edge.recv(request(b"INVITE"))
    assert [(a, m.status) for a, m in again] == [(CLIENT, 100)]
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    assert [(a, m.status) for a, m in edge.recv(request(b"INVITE"))] == [(CLIENT, 180)]


def test_call_completes_and_leaves_nothing_behind(edge):
    fwd = start_invite(edge)
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    ok = edge.recv(response(fwd.serialize(), 200, b"OK", headers=[b"Contact: <sip:alice@127.0.0.11:5060>"]), src=B1)
    assert [(a, m.status) for a, m in ok] == [(CLIENT, 200)]
    assert ok[0][1].values(b"record-route") == [b"<sip:127.0.0.1;lr;ftag=ft1>"]
    ack = request(b"ACK", ruri=b"sip:alice@127.0.0.11:5060", to_tag=b"be1", branch=b"z9hG4bKack",
                  cseq=b"1 ACK", headers=[b"Route: <sip:127.0.0.1;lr;ftag=ft1>"])
    assert [(a, m.method) for a, m in edge.recv(ack)] == [(B1, b"ACK")]
    bye = request(b"BYE", ruri=b"sip:alice@127.0.0.11:5060", to_tag=b"be1", branch=b"z9hG4bKbye",
                  cseq=b"2 BYE", headers=[b"Route: <sip:127.0.0.1;lr;ftag=ft1>"])
    (addr, fwd_bye), = edge.recv(bye)
    assert addr == B1
    assert [(a, m.status) for a, m in edge.recv(response(fwd_bye.serialize(), 200), src=B1)] == [(CLIENT, 200)]
    assert edge.live()[0] == 4  # INVITE and BYE, each in the server and the client table
    edge.advance(5.0)
    assert edge.live() == (0, 0)


def test_2xx_retransmission_from_downstream_is_relayed(edge):
    fwd = start_invite(edge)
    ok = response(fwd.serialize(), 200)
    edge.recv(ok, src=B1)
    assert [(a, m.status) for a, m in edge.recv(ok, src=B1)] == [(CLIENT, 200)]


def test_negative_final_is_acked_downstream_and_retransmitted_until_ack(edge):
    fwd = start_invite(edge)
    sent = edge.recv(response(fwd.serialize(), 486, b"Busy Here"), src=B1)
    kinds = sorted((a, m.method if m.is_request else m.status) for a, m in sent)
    assert kinds == sorted([(B1, b"ACK"), (CLIENT, 486)])
    ack_down = [m for _i, m in sent if m.is_request][0]
    assert ack_down.top_via.branch == fwd.top_via.branch
    assert ack_down.to_tag == b"be1" and ack_down.cseq == [b"1", b"ACK"]
    again = edge.advance(0.5)
    assert [(a, m.status) for a, m in again] == [(CLIENT, 486)]
    # the caller's ACK (same branch as its INVITE) is absorbed, not forwarded
    assert edge.recv(request(b"ACK", to_tag=b"be1", cseq=b"1 ACK")) == []
    assert [m for _i, m in edge.advance(4.0)] == []
    edge.advance(5.0)
    assert edge.live() == (0, 0)


def test_negative_final_without_ack_stops_at_fr_timer(edge):
    fwd = start_invite(edge)
    edge.recv(response(fwd.serialize(), 404, b"Not Found"), src=B1)
    times = [t for t, a, m in times_of(edge, 12.0, step=0.25)]
    assert times == [0.5, 1.5, 3.5]
    assert edge.live() == (0, 0)


def test_503_from_downstream_relayed_as_500(edge):
    fwd = start_invite(edge)
    (_unused, up), = [s for s in edge.recv(response(fwd.serialize(), 503, b"Overloaded"), src=B1) if s[0] == CLIENT]
    assert (up.status, up.reason) == (500, b"Service Unavailable")


def test_cancel_of_ringing_call(edge):
    fwd = start_invite(edge)
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    sent = edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"))
    kinds = {(a, m.method if m.is_request else m.status) for a, m in sent}
    assert kinds == {(CLIENT, 200), (B1, b"CANCEL")}
    cancel = [m for _i, m in sent if m.is_request][0]
    assert cancel.top_via.branch == fwd.top_via.branch
    assert cancel.ruri == fwd.ruri and cancel.cseq == [b"1", b"CANCEL"]
    assert cancel.count(b"via") == 1
    assert edge.recv(response(cancel.serialize(), 200), src=B1) == []
    sent = edge.recv(response(fwd.serialize(), 487, b"Request Terminated"), src=B1)
    assert {(a, m.method if m.is_request else m.status) for a, m in sent} == {(CLIENT, 487), (B1, b"ACK")}
    assert edge.recv(request(b"ACK", to_tag=b"be1", cseq=b"1 ACK")) == []
    edge.advance(10)
    assert edge.live() == (0, 0)


def test_cancel_before_any_provisional_waits_for_one(edge):
    fwd = start_invite(edge)
    sent = edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"))
    assert [(a, m.status) for a, m in sent] == [(CLIENT, 200)]
    sent = edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    assert {(a, m.method if m.is_request else m.status) for a, m in sent} == {(CLIENT, 180), (B1, b"CANCEL")}


def test_cancel_retransmitted_until_answered(edge):
    fwd = start_invite(edge)
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"))
    resent = [t for t, a, m in times_of(edge, 2.0, step=0.25) if m.is_request and m.method == b"CANCEL"]
    assert resent == [0.5, 1.5]


def test_cancel_retransmission_gets_the_same_200(edge):
    start_invite(edge)
    first = edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"))
    again = edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"))
    assert [m.serialize() for _i, m in again if not m.is_request] == [m.serialize() for _i, m in first if not m.is_request]


def test_cancel_without_invite_is_routed_like_a_request(edge):
    sent = edge.recv(request(b"CANCEL", cseq=b"1 CANCEL", branch=b"z9hG4bKorphan"))
    assert [(a, m.method) for a, m in sent] == [(B1, b"CANCEL")]


def test_register_flow(edge):
    (addr, fwd), = edge.recv(request(b"REGISTER"))
    assert addr == B1
    ok = edge.recv(response(fwd.serialize(), 200), src=B1)
    assert [(a, m.status) for a, m in ok] == [(CLIENT, 200)]
    again = edge.recv(request(b"REGISTER"))
    assert [m.serialize() for _i, m in again] == [m.serialize() for _i, m in ok]
    edge.advance(5.0)
    assert edge.live() == (0, 0)


def test_response_for_unknown_transaction_with_foreign_via_is_dropped(edge):
    stray = response(request(b"INVITE", via=b"SIP/2.0/UDP 127.0.0.77:5060;branch=z9hG4bKzz"), 200)
    assert edge.recv(stray, src=B1) == []


def test_stray_response_with_our_via_is_relayed_by_the_next_via(edge):
    data = response(request(b"INVITE", via=b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKgone, "
                                           b"SIP/2.0/UDP 127.0.0.5:5070;rport=5099;received=127.0.0.6"), 200)
    (addr, msg), = edge.recv(data, src=B1)
    assert addr == ("127.0.0.6", 5099)
    assert msg.count(b"via") == 1


@pytest.mark.parametrize("code", [200, 486])
def test_timeouts_leave_no_state(edge, code):
    fwd = start_invite(edge)
    edge.recv(response(fwd.serialize(), code), src=B1)
    edge.advance(60)
    assert edge.live() == (0, 0)


def test_unanswered_invite_leaves_no_state(edge):
    start_invite(edge)
    edge.advance(60)
    assert edge.live() == (0, 0)


def test_parse_of_what_we_send_round_trips(edge):
    fwd = start_invite(edge)
    assert parse(fwd.serialize()).serialize() == fwd.serialize()


def test_cancel_after_2xx_is_answered_and_not_forwarded(edge):
    fwd = start_invite(edge)
    edge.recv(response(fwd.serialize(), 200), src=B1)
    sent = edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"))
    assert [(a, m.status, m.reason) for a, m in sent] == [(CLIENT, 200, b"ok -- no more pending branches")]


def test_late_negative_reply_after_2xx_is_absorbed(edge):
    fwd = start_invite(edge)
    edge.recv(response(fwd.serialize(), 200), src=B1)
    assert edge.recv(response(fwd.serialize(), 486, b"Busy Here"), src=B1) == []


def test_response_with_comma_joined_vias_is_relayed(edge):
    """SIPp and others echo the Vias as one line: `Via: ours, theirs`."""
    fwd = start_invite(edge)
    vias = fwd.values(b"via")
    data = response(fwd.serialize(), 180, b"Ringing").replace(
        b"Via: %s\r\nVia: %s\r\n" % (vias[0], vias[1]), b"Via: %s, %s\r\n" % (vias[0], vias[1]))
    assert b", SIP/2.0/UDP 127.0.0.2:5062" in data
    assert edge.proxy.txns._match_fast(data)[0] is not None  # the byte-slicing path takes it
    (addr, up), = edge.recv(data, src=B1)
    assert addr == CLIENT and up.status == 180
    assert up.values(b"via") == [vias[1]]
