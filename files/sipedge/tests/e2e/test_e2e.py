"""End-to-end: SIPp UAC -> router -> SIPp UAS backends, real UDP on 127.0.0.0/8.

What each test checks is taken from what the peers really sent and received
(SIPp -trace_msg logs of the UAC and of every backend), not from the router's
own account.
"""
from __future__ import annotations

import socket
import time
import uuid
from collections import Counter

import pytest

import e2e_harness as h

pytestmark = pytest.mark.e2e


def _tag(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:6]}"


def _by_call(msgs):
    calls: dict[str, list[h.Msg]] = {}
    for m in msgs:
        calls.setdefault(m.call_id, []).append(m)
    return calls


def _edge_hostport(router) -> tuple[str, int]:
    return router.host, router.port


# --------------------------------------------------------------------------- calls

def test_calls_complete_with_ack_and_bye_following_record_route(alive_router, backends,
                                                                e2e_workdir):
    router = alive_router
    tag = _tag("rr")
    n = 6
    run = h.run_uac(e2e_workdir, "uac_call.xml", router.edge, domain="tenant-a.test", tag=tag,
                    calls=n, rate=20)
    assert run.ok == n, run.describe()

    edge = _edge_hostport(router)
    # The caller learnt the route set from the 200's Record-Route, which names the edge.
    oks = [m for m in run.messages if m.direction == "recv" and m.status == 200
           and m.cseq_method == "INVITE"]
    assert len({m.call_id for m in oks}) == n
    for m in oks:
        rr = m.all("record-route")
        assert rr, f"200 OK without Record-Route:\n{m.text}"
        assert h.uri_hostport(rr[0]) == edge and ";lr" in rr[0], rr
    sent = [m for m in run.messages if m.direction == "sent" and m.method in ("ACK", "BYE")]
    assert len(sent) >= 2 * n
    for m in sent:
        assert [h.uri_hostport(r) for r in m.all("route")] == [edge], m.text

    # What the backends received, call by call.
    received = backends["a1"].received(tag) + backends["a2"].received(tag)
    calls = _by_call(received)
    assert len(calls) == n, sorted(calls)
    for call_id, msgs in calls.items():
        # one backend per call: the ACK and BYE went where the INVITE went
        holders = [backends[b] for b in ("a1", "a2") if backends[b].received(call_id)]
        assert len(holders) == 1, (call_id, [b.name for b in holders])
        callee = holders[0]
        methods = [m.method for m in msgs if m.is_request]
        assert {"INVITE", "ACK", "BYE"} <= set(methods), (call_id, methods)
        invite = next(m for m in msgs if m.method == "INVITE")
        assert h.uri_hostport(invite.all("record-route")[0]) == edge, invite.text
        assert h.via_sent_by(invite.all("via")[0]) == edge, invite.text
        for m in msgs:
            if m.method not in ("ACK", "BYE"):
                continue
            vias = m.all("via")
            # arrived through the edge: the edge's Via on top, the caller's below it
            assert h.via_sent_by(vias[0]) == edge, f"{m.method} not relayed by the edge:\n{m.text}"
            assert len(vias) == 2 and h.via_sent_by(vias[1])[0] == h.addr(100), m.text
            # loose routing: the edge took its own Route out; R-URI is the callee's Contact
            assert not any(h.uri_hostport(r) == edge for r in m.all("route")), m.text
            assert h.uri_hostport(m.ruri) == (callee.host, callee.port), m.text


def test_round_robin_splits_evenly_and_keeps_tenants_apart(alive_router, backends, e2e_workdir):
    router = alive_router
    tag_a, tag_b = _tag("rra"), _tag("rrb")
    n = 12
    run_a = h.run_uac(e2e_workdir, "uac_call.xml", router.edge, domain="tenant-a.test",
                      tag=tag_a, calls=n, rate=30)
    run_b = h.run_uac(e2e_workdir, "uac_call.xml", router.edge, domain="tenant-b.test",
                      tag=tag_b, calls=n, rate=30)
    assert run_a.ok == n, run_a.describe()
    assert run_b.ok == n, run_b.describe()

    def invites(backend, tag):
        return {m.call_id for m in backends[backend].received(tag) if m.method == "INVITE"}

    share = {(b, t): len(invites(b, tag)) for b in backends for t, tag in
             (("a", tag_a), ("b", tag_b))}
    # each tenant's calls reach only its own set ...
    for b in ("b1", "b2", "r1"):
        assert share[(b, "a")] == 0, share
    for b in ("a1", "a2", "r1"):
        assert share[(b, "b")] == 0, share
    # ... and are split evenly between the set's two backends (calls are sequential: 1:1)
    assert share[("a1", "a")] == share[("a2", "a")] == n // 2, share
    assert share[("b1", "b")] == share[("b2", "b")] == n // 2, share


def test_cancel_of_ringing_call_ends_with_487_at_the_caller(alive_router, backends, e2e_workdir):
    router = alive_router
    tag = _tag("cx")
    n = 3
    run = h.run_uac(e2e_workdir, "uac_cancel.xml", router.edge, domain="ring.test", tag=tag,
                    calls=n, rate=10)
    assert run.ok == n, run.describe()
    finals = Counter((m.call_id, m.status, m.cseq_method) for m in run.messages
                     if m.direction == "recv" and not m.is_request and m.status >= 200)
    for call_id in {c for c, _status, _method in finals}:
        assert finals[(call_id, 487, "INVITE")] >= 1, finals
        assert finals[(call_id, 200, "CANCEL")] >= 1, finals
        assert not any(s == 200 and meth == "INVITE" for c, s, meth in finals if c == call_id)

    # The backend saw INVITE, then the edge's own CANCEL (same branch as the INVITE it
    # got, RFC 3261 9.1), then the edge's ACK for the 487 (same branch again, 17.1.1.3).
    calls = _by_call(backends["r1"].received(tag))
    assert len(calls) == n, sorted(calls)
    edge = _edge_hostport(router)
    for call_id, msgs in calls.items():
        seq = [m.method for m in msgs]
        assert seq[:1] == ["INVITE"] and "CANCEL" in seq and "ACK" in seq, (call_id, seq)
        # the caller's own ACK for the 487 ends at the edge (absorbed by its INVITE
        # server transaction); only the edge's hop-by-hop ACK reaches the backend
        assert seq.count("ACK") == 1, (call_id, seq)
        invite = msgs[0]
        branch = h.via_branch(invite.all("via")[0])
        for m in msgs:
            if m.method in ("CANCEL", "ACK"):
                vias = m.all("via")
                assert len(vias) == 1 and h.via_sent_by(vias[0]) == edge, m.text
                assert h.via_branch(vias[0]) == branch, (branch, m.text)


# --------------------------------------------------------------------------- door-knockers

def test_unknown_or_disabled_domain_gets_no_byte_back(alive_router, backends):
    router = alive_router
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((h.addr(101), 0))
        local = s.getsockname()
        tag = _tag("knock")
        sent = []
        for method, domain in [("INVITE", "unknown.test"), ("OPTIONS", "unknown.test"),
                               ("REGISTER", "unknown.test"), ("INVITE", "disabled.test"),
                               ("INVITE", "TENANT-A.test")]:   # matching is exact
            call_id = f"{tag}-{method}-{domain}@{local[0]}"
            s.sendto(h.raw_request(method, domain, local, call_id=call_id), router.edge)
            sent.append(call_id)
        s.settimeout(1.5)          # > the edge's 100 Trying / reply latency by far
        got = b""
        try:
            got, _src = s.recvfrom(65535)
        except socket.timeout:
            pass
        assert got == b"", f"the edge answered a door-knocker:\n{got.decode(errors='replace')}"
    finally:
        s.close()
    for b in backends.values():
        assert b.received(tag) == [], f"{b.name} got a door-knocker's request"
    log = router.log_text()
    assert "Door-knock blocked" in log and "unknown.test" in log, log[-2000:]


# --------------------------------------------------------------------------- DB changes

def _probe_until_answered(router, domain: str, limit: float) -> tuple[float, bytes]:
    """OPTIONS to ``domain`` every 50 ms; (seconds until the first reply, reply)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((h.addr(102), 0))
        local = s.getsockname()
        s.setblocking(False)
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            s.sendto(h.raw_request("OPTIONS", domain, local), router.edge)
            end = time.monotonic() + 0.05
            while time.monotonic() < end:
                try:
                    data, _src = s.recvfrom(65535)
                    return time.monotonic() - t0, data
                except BlockingIOError:
                    time.sleep(0.005)
        return float("inf"), b""
    finally:
        s.close()


@pytest.mark.parametrize("change", ["enable", "insert"])
def test_domain_enabled_while_running_routes_within_a_second(alive_router, backends, e2e_workdir,
                                                             change):
    router = alive_router
    domain = "late.test" if change == "enable" else f"new-{uuid.uuid4().hex[:6]}.test"
    waited, reply = _probe_until_answered(router, domain, 0.3)
    assert reply == b"", f"{domain} answered before it was enabled: {reply[:200]!r}"

    if change == "enable":
        h.db_execute(router.db, "UPDATE sip_domains SET enabled = 1 WHERE domain = ?", (domain,))
    else:
        h.db_execute(router.db, "INSERT INTO sip_domains (domain, dispatcher_setid, enabled) "
                     "VALUES (?, 20, 1)", (domain,))
    waited, reply = _probe_until_answered(router, domain, 3.0)
    print(f"{domain}: first reply {waited:.3f} s after the DB change")
    assert reply.startswith(b"SIP/2.0 200"), f"no 200 within 3 s after the DB change: {reply[:300]!r}"
    assert waited < 1.0, f"{domain} routed only {waited:.2f} s after the DB change"

    tag = _tag("late")
    run = h.run_uac(e2e_workdir, "uac_call.xml", router.edge, domain=domain, tag=tag, calls=4,
                    rate=20)
    assert run.ok == 4, run.describe()
    got = {b: len({m.call_id for m in backends[b].received(tag) if m.method == "INVITE"})
           for b in backends}
    assert got["b1"] + got["b2"] == 4 and got["a1"] == got["a2"] == got["r1"] == 0, got
