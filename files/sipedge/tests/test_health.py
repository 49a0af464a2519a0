"""Keep-alive OPTIONS under a fake clock: a dead backend is noticed, traffic
moves away from it, and it comes back after enough good answers."""

import logging
import random

from harness import B1, B2, Harness, RoutedMsg as Msg, request, response
from sipedge.config import Config
from sipedge.dispatcher import DISABLED, INACTIVE, NOPING, PROBING, TRYING, Dispatcher, DispatcherSettings
from sipedge.health import Health


def pings(sent):
    return [(addr, msg) for addr, msg in sent if msg.is_request and msg.method == b"OPTIONS"]


def started(**settings):
    edge = Harness(dispatcher__ping_interval=30, **settings)
    edge.proxy.start(edge.now)
    return edge


def answer(edge, sent, alive):
    for addr, msg in pings(sent):
        if addr in alive:
            edge.recv(response(msg.serialize(), 200), src=addr)


def test_every_destination_pinged_at_start_and_each_interval():
    edge = started()
    first = pings(edge.take())
    assert sorted(a for a, _unused in first) == sorted([B1, B2, ("127.0.0.21", 5080)])
    opt = first[0][1]
    assert opt.ruri.startswith(b"sip:127.0.0.") and opt.get(b"max-forwards") == b"70"
    assert opt.get(b"cseq") == b"10 OPTIONS" and opt.from_tag
    answer(edge, first, {a for a, _unused in first})
    assert pings(edge.advance(29.9)) == []
    assert len(pings(edge.advance(0.1))) == 3


def test_dead_destination_goes_down_after_two_rounds_and_gets_no_calls(caplog):
    edge = started()
    with caplog.at_level(logging.INFO, logger="sipedge"):
        for _i in range(2):
            sent = edge.take()
            answer(edge, sent, {B2, ("127.0.0.21", 5080)})
            sent = edge.advance(5.0)   # B1 times out: local 408 at fr_timer
            assert [m for _i, m in sent if not m.is_request] == []
            edge.advance(25.0)
    assert ("sipedge", logging.WARNING, "Asterisk DOWN: sip:127.0.0.11:5060") in caplog.record_tuples
    for i in range(4):
        sent = edge.recv(request(b"OPTIONS", call_id=b"h%d" % i, branch=b"z9hG4bKh%d" % i))
        assert [a for a, m in sent if m.is_request and m.method == b"OPTIONS" and m.ruri.startswith(b"sip:alice")] == [B2]


def test_trying_destination_is_still_used_and_healed_by_one_answer():
    edge = started()
    sent = edge.take()
    answer(edge, sent, {B2, ("127.0.0.21", 5080)})
    edge.advance(5.0)
    dest = edge.proxy.dispatcher.find(10, "sip:127.0.0.11:5060")
    assert dest.state == "TP" and dest.selectable
    sent = edge.advance(25.0)
    answer(edge, sent, {B1, B2, ("127.0.0.21", 5080)})
    assert dest.state == "AP"


def test_recovery_needs_two_good_rounds(caplog):
    edge = started(destinations=((10, "sip:127.0.0.11:5060", 1, 0, None),))
    dest = edge.proxy.dispatcher.find(10, "sip:127.0.0.11:5060")
    with caplog.at_level(logging.INFO, logger="sipedge"):
        answer(edge, edge.take(), {B1})
        assert not dest.selectable
        answer(edge, edge.advance(30.0), {B1})
    assert dest.selectable
    assert ("sipedge", logging.INFO, "Asterisk UP: sip:127.0.0.11:5060") in caplog.record_tuples


def test_error_reply_counts_as_failure_and_configured_codes_as_success():
    destinations = ((10, "sip:127.0.0.11:5060", 0, 0, None), (10, "sip:127.0.0.12:5060", 0, 0, None))
    edge = started(dispatcher__ping_reply_codes=[404], destinations=destinations)
    for _i in range(2):
        for addr, msg in pings(edge.take()):
            code = 404 if addr == B1 else 500
            edge.recv(response(msg.serialize(), code, b"X"), src=addr)
        edge.advance(30.0)
    assert edge.proxy.dispatcher.find(10, "sip:127.0.0.11:5060").selectable
    assert not edge.proxy.dispatcher.find(10, "sip:127.0.0.12:5060").selectable


def test_disabled_destination_is_never_pinged():
    edge = started(destinations=((10, "sip:127.0.0.11:5060", 4, 0, None), (10, "sip:127.0.0.12:5060", 0, 0, None)))
    assert [a for a, _unused in pings(edge.take())] == [B2]


def test_pings_leave_no_state_behind():
    edge = started()
    answer(edge, edge.take(), {B1, B2, ("127.0.0.21", 5080)})
    assert len(edge.proxy.txns) == 0
    edge.advance(10.0)  # unanswered rounds end at fr_timer too
    assert len(edge.proxy.txns) == 0


# -- keep-alive state machine (mode 1) ---------------------------------------------------

def one(flags=0, **settings):
    disp = Dispatcher(DispatcherSettings(), random.Random(1))
    assert not disp.load([(1, "sip:10.0.0.1", flags, 0, None)])
    return Health(Config(**settings), disp), disp.destinations()[0]


def step(health, dest, code):
    event = health.result(dest, code, 0.0)
    return dest.state, dest.probing_count, event


def test_keepalive_down_after_probing_threshold():
    health, dest = one()
    assert step(health, dest, 408) == ("TP", 1, None)
    assert dest.selectable  # TRYING is still selected
    assert step(health, dest, 408) == ("IP", 0, "down")
    assert not dest.selectable and health.dispatcher.select(1, Msg()) is None
    assert step(health, dest, 503) == ("IP", 0, None)


def test_keepalive_up_after_inactive_threshold():
    health, dest = one(INACTIVE)
    assert step(health, dest, 200) == ("IP", 1, None)
    assert step(health, dest, 200) == ("AP", 0, "up")
    assert health.dispatcher.select(1, Msg()) is dest


def test_keepalive_failure_resets_success_streak():
    health, dest = one(INACTIVE)
    assert step(health, dest, 200) == ("IP", 1, None)
    assert step(health, dest, 408) == ("IP", 0, None)
    assert step(health, dest, 200) == ("IP", 1, None)
    assert step(health, dest, 200) == ("AP", 0, "up")


def test_keepalive_trying_healed_by_one_success():
    health, dest = one()
    assert step(health, dest, 408) == ("TP", 1, None)
    assert step(health, dest, 200) == ("AP", 0, None)
    assert step(health, dest, 408) == ("TP", 1, None)  # the failure count started again


def test_keepalive_reply_codes():
    health, dest = one(ping_reply_codes=frozenset({404}))
    assert step(health, dest, 202) == ("AP", 0, None)  # any 2xx
    assert step(health, dest, 404) == ("AP", 0, None)  # configured
    assert step(health, dest, 486) == ("TP", 1, None)
    assert step(health, dest, 100) == ("IP", 0, "down")


def test_keepalive_thresholds_of_one():
    health, dest = one(probing_threshold=1, inactive_threshold=1)
    assert step(health, dest, 408) == ("IP", 0, "down")
    assert step(health, dest, 200) == ("AP", 0, "up")


def test_keepalive_disabled_never_updated():
    health, dest = one(DISABLED)
    for code in (200, 408, 200):
        assert step(health, dest, code) == ("DX", 0, None)
    assert dest.flags == DISABLED


def test_keepalive_sequence_matches_kamailio():
    # Kamailio 5.6.3, ds_probing_mode=1, thresholds 2/2, one node, one ping round per entry
    health, dest = one()
    seen = [step(health, dest, code)[::2] for code in (200, 200, 408, 408, 408, 200, 408, 200, 200, 200, 408, 200, 408, 408)]
    assert seen == [("AP", None), ("AP", None), ("TP", None), ("IP", "down"), ("IP", None), ("IP", None), ("IP", None),
                    ("IP", None), ("AP", "up"), ("AP", None), ("TP", None), ("AP", None), ("TP", None), ("IP", "down")]


def test_keepalive_keeps_other_bits():
    health, dest = one(NOPING | TRYING)
    assert step(health, dest, 200) == ("AP", 0, None)
    assert dest.flags == NOPING | PROBING
