"""Overload sheds, it does not collapse (docs/design.md decision 16): while the shell
says the edge is behind, a new INVITE gets 503 with Retry-After at once, and
everything that belongs to calls already admitted is served as usual."""

from harness import B1, B2, CLIENT, request, response
from sipedge.shell import Backlog

ROUTE = b"Route: <sip:127.0.0.1;lr;ftag=ft1>"


def kinds(sent):
    return [(addr, m.method if m.is_request else m.status) for addr, m in sent]


def test_new_invite_is_shed_with_503_and_retry_after(edge):
    (addr, reply), = edge.recv(request(b"INVITE"), overloaded=True)
    assert addr == CLIENT
    assert (reply.status, reply.reason, reply.get(b"retry-after")) == (503, b"Service Unavailable", b"5")
    assert reply.to_tag  # a final reply: the caller's ACK closes it
    assert edge.proxy.stats()["sheds"] == 1
    assert edge.live() == (0, 0)  # a shed keeps nothing
    ack = request(b"ACK", to_tag=reply.to_tag, cseq=b"1 ACK")
    assert edge.recv(ack, overloaded=True) == []


def test_calls_already_admitted_are_served(edge):
    fwd = edge.recv(request(b"INVITE"))[1][1]
    assert kinds(edge.recv(request(b"INVITE"), overloaded=True)) == [(CLIENT, 100)]  # a retransmission
    assert kinds(edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1, overloaded=True)) == [(CLIENT, 180)]
    assert kinds(edge.recv(response(fwd.serialize(), 200), src=B1, overloaded=True)) == [(CLIENT, 200)]
    ack = request(b"ACK", ruri=b"sip:alice@127.0.0.11", to_tag=b"be1", cseq=b"1 ACK", headers=[ROUTE],
                  branch=b"z9hG4bKa")
    assert kinds(edge.recv(ack, overloaded=True)) == [(B1, b"ACK")]
    for method in (b"BYE", b"INVITE"):  # the BYE, and a re-INVITE inside the dialog
        sent = edge.recv(request(method, ruri=b"sip:alice@127.0.0.11", to_tag=b"be1", cseq=b"2 " + method,
                                 headers=[ROUTE], branch=b"z9hG4bK" + method), overloaded=True)
        assert (B1, method) in kinds(sent)
    assert edge.proxy.stats()["sheds"] == 0


def test_cancel_and_other_requests_are_served(edge):
    edge.recv(request(b"INVITE"))
    assert (CLIENT, 200) in kinds(edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"), overloaded=True))
    for method in (b"OPTIONS", b"REGISTER"):
        (addr, fwd), = edge.recv(request(method, branch=b"z9hG4bK" + method), overloaded=True)
        assert fwd.method == method and addr in (B1, B2)


# ---- when the shell says the edge is behind --------------------------------------------------

def test_backlog_ignores_one_late_wake_up_and_follows_a_queue_that_builds_up():
    backlog = Backlog(0.05)
    assert backlog.judge(0.4, 10.0) is False  # one wake-up after a pause: not yet
    assert backlog.judge(0.01, 10.01) is False  # the queue drained at once
    assert backlog.judge(0.06, 11.0) is False  # behind again...
    assert backlog.judge(0.07, 11.03) is False
    assert backlog.judge(0.08, 11.05) is True  # ...for 50 ms: shed
    assert backlog.judge(0.03, 11.10) is True  # still above a quarter of the limit
    assert backlog.judge(0.012, 11.2) is False  # drained
    assert backlog.delay_max == 0.4
    assert Backlog(0.05).judge(None, 1.0) is False  # no timestamp: no judgement
