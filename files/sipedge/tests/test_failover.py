"""Failover and health under a fake clock (docs/design.md decisions 1, 14): a failed
INVITE moves to the next destination of its set within the same caller
transaction; a destination that failed a call is out of rotation at once;
keep-alives take a dead one out and bring it back at exact times."""

import logging

import pytest

from harness import B1, B2, CLIENT, Harness, request, response

B4 = ("127.0.0.13", 5060)
THREE = ((10, "sip:127.0.0.11:5060", 0, 0, None), (10, "sip:127.0.0.12:5060", 0, 1, None),
         (10, "sip:127.0.0.13:5060", 0, 2, None))


def failover_edge(**settings):
    settings.setdefault("dispatcher__failover", True)
    return Harness(domains={"tenant1.test": 10}, destinations=THREE, **settings)


def kinds(sent):
    return [(addr, m.method if m.is_request else m.status) for addr, m in sent]


def invites(sent):
    return [(addr, m) for addr, m in sent if m.is_request and m.method == b"INVITE"]


def state(edge, addr):
    return edge.proxy.dispatcher.find(10, "sip:%s:%d" % addr).state


def test_failover_sequence_across_three_destinations():
    """B1 silent, B2 503, B3 answers: the caller sees one 100 and B3's answers."""
    edge = failover_edge()
    sent = edge.recv(request(b"INVITE"))
    assert kinds(sent) == [(CLIENT, 100), (B1, b"INVITE")]
    first = sent[1][1]
    at_fr = edge.advance(5.0)
    (addr, second), = [s for s in invites(at_fr) if s[0] == B2]
    assert [k for k in kinds(at_fr) if k[0] == CLIENT] == []  # no 408 upstream
    assert second.top_via.branch != first.top_via.branch  # a new branch
    assert second.ruri == first.ruri and second.get(b"record-route") == first.get(b"record-route")
    busy = edge.recv(response(second.serialize(), 503, b"Service Unavailable"), src=B2)
    assert sorted(kinds(busy)) == sorted([(B2, b"ACK"), (B4, b"INVITE")])
    third = invites(busy)[0][1]
    assert kinds(edge.recv(response(third.serialize(), 180, b"Ringing"), src=B4)) == [(CLIENT, 180)]
    assert kinds(edge.recv(response(third.serialize(), 200), src=B4)) == [(CLIENT, 200)]
    assert (state(edge, B1), state(edge, B2), state(edge, B4)) == ("IP", "IP", "AX")
    assert edge.proxy.stats()["failovers"] == 2
    # the next calls skip the two that failed
    for i in range(3):
        assert invites(edge.recv(request(b"INVITE", call_id=b"n%d" % i, branch=b"z9hG4bKn%d" % i)))[0][0] == B4
    edge.advance(60)
    assert edge.live() == (0, 0)


def test_failover_exhausted_gives_the_last_answer():
    edge = failover_edge(dispatcher__failover_attempts=1)
    sent = edge.recv(request(b"INVITE"))
    busy = edge.recv(response(sent[1][1].serialize(), 502, b"Bad Gateway"), src=B1)
    second = invites(busy)[0]
    assert second[0] == B2
    last = edge.recv(response(second[1].serialize(), 503, b"Overloaded"), src=B2)
    assert sorted(kinds(last)) == sorted([(B2, b"ACK"), (CLIENT, 500)])  # 503 relayed as 500


def test_all_silent_gives_one_local_408():
    edge = failover_edge()
    edge.recv(request(b"INVITE"))
    out = kinds(edge.advance(15.0))
    assert list(dict.fromkeys(k for k in out if k[1] == b"INVITE")) == [(B1, b"INVITE"), (B2, b"INVITE"), (B4, b"INVITE")]
    assert out.count((CLIENT, 408)) == 1
    assert edge.proxy.dispatcher.select(10, request) is None  # every one marked out


def test_no_failover_when_off_or_for_other_codes():
    edge = failover_edge(dispatcher__failover=False)
    edge.recv(request(b"INVITE"))
    out = kinds(edge.advance(5.0))
    assert (CLIENT, 408) in out and not [k for k in out if k[0] != B1 and k[1] == b"INVITE"]
    assert state(edge, B1) == "AX"  # nothing marked: the seed's behaviour
    edge = failover_edge()
    sent = edge.recv(request(b"INVITE"))
    busy = kinds(edge.recv(response(sent[1][1].serialize(), 486, b"Busy Here"), src=B1))
    assert sorted(busy) == sorted([(B1, b"ACK"), (CLIENT, 486)])
    assert state(edge, B1) == "AX"


def test_failover_after_a_provisional_then_503():
    edge = failover_edge()
    sent = edge.recv(request(b"INVITE"))
    fwd = sent[1][1]
    edge.recv(response(fwd.serialize(), 180, b"Ringing"), src=B1)
    busy = edge.recv(response(fwd.serialize(), 503, b"Service Unavailable"), src=B1)
    assert invites(busy)[0][0] == B2
    assert [k for k in kinds(busy) if k[0] == CLIENT] == []


def test_canceled_invite_does_not_fail_over():
    edge = failover_edge()
    edge.recv(request(b"INVITE"))
    assert kinds(edge.recv(request(b"CANCEL", cseq=b"1 CANCEL"))) == [(CLIENT, 200)]
    out = kinds(edge.advance(5.0))
    assert (CLIENT, 408) in out and not [k for k in out if k[1] == b"INVITE" and k[0] != B1]


def test_late_2xx_of_an_abandoned_branch_goes_up_and_cancels_the_ringing_one():
    edge = failover_edge()
    first = edge.recv(request(b"INVITE"))[1][1]
    (_b2, second), = [s for s in invites(edge.advance(5.0)) if s[0] == B2]
    edge.recv(response(second.serialize(), 180, b"Ringing"), src=B2)
    late = kinds(edge.recv(response(first.serialize(), 200), src=B1))
    assert sorted(late) == sorted([(CLIENT, 200), (B2, b"CANCEL")])


def test_trying_destination_is_still_selected_a_failed_call_takes_it_out():
    edge = failover_edge()
    health = edge.proxy.health
    dest = edge.proxy.dispatcher.find(10, "sip:127.0.0.11:5060")
    assert health.result(dest, 408, edge.now) is None and dest.state == "TP" and dest.selectable
    edge.recv(request(b"INVITE"))
    edge.advance(5.0)  # the call to B1 fails: inactive and probing at once
    assert dest.state == "IP" and not dest.selectable and dest.failures == 1
    assert health.result(dest, 200, edge.now) is None
    assert health.result(dest, 200, edge.now) == "up" and dest.state == "AP"


# ---- keep-alives: exact times ------------------------------------------------------------

def pinged(edge, seconds, seen):
    """(time, address) of every new keep-alive (not a retransmission of one in
    `seen`) sent during `seconds`, the backends silent; time stepped from one
    deadline to the next."""
    end, out = edge.now + seconds, []
    while (edge.proxy.next_deadline() or end + 1) <= end:
        for addr, msg in edge.advance(edge.proxy.next_deadline() - edge.now):
            if msg.is_request and msg.method == b"OPTIONS" and msg.top_via.branch not in seen:
                seen.add(msg.top_via.branch)
                out.append((round(edge.now - 1000.0, 3), addr))
    edge.advance(end - edge.now)
    return out


@pytest.mark.parametrize("interval, timeout, probing, inactive", [(2.0, 1.0, 2, 2), (3.0, 0.5, 1, 1), (1.0, 0.75, 3, 2)])
def test_down_and_up_at_exact_times(interval, timeout, probing, inactive, caplog):
    edge = Harness(domains={"tenant1.test": 10}, destinations=THREE[:1], dispatcher__ping_interval=interval,
                   dispatcher__ping_timeout=timeout, dispatcher__probing_threshold=probing,
                   dispatcher__inactive_threshold=inactive)
    dest = edge.proxy.dispatcher.find(10, "sip:127.0.0.11:5060")
    events = []
    edge.proxy.health.on_event = lambda d, event: events.append((round(edge.now - 1000.0, 3), event))
    with caplog.at_level(logging.INFO, logger="sipedge"):
        edge.proxy.start(edge.now)
        sent = edge.take()
        assert [a for a, m in sent] == [B1]  # the first round goes out at once
        # silent from the start: ping k (at k*interval) fails at k*interval + timeout
        down_at = (probing - 1) * interval + timeout
        times = pinged(edge, down_at, {m.top_via.branch for _a, m in sent})
        assert [t for t, _a in times] == [round(k * interval, 3) for k in range(1, int(down_at // interval) + 1)]
        assert events == [(round(down_at, 2), "down")]
        # it answers again: back after `inactive` good rounds
        answered = 0
        while not dest.selectable:
            for addr, msg in edge.advance(0.05):
                if msg.is_request and msg.method == b"OPTIONS" and not dest.selectable:
                    edge.recv(response(msg.serialize(), 200), src=addr)
                    answered += 1
        assert answered == inactive
    assert events[-1][1] == "up"
    assert [r.getMessage() for r in caplog.records if "Asterisk" in r.getMessage()] == [
        "Asterisk DOWN: sip:127.0.0.11:5060", "Asterisk UP: sip:127.0.0.11:5060"]
    assert dest.last_code == 200 and dest.rtt is not None and dest.last_ping is not None


def test_ping_timeout_defaults_to_fr_timer():
    assert Harness(timers__fr_timer=3.0).config.ping_timeout == 3.0
    assert Harness(timers__fr_timer=3.0, dispatcher__ping_timeout=1.0).config.ping_timeout == 1.0
