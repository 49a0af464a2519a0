"""End-to-end operations with SIPp peers: a dead or refusing backend costs no
call, one health view for two workers, a reload under load keeps the calls and
the counters, and /metrics counts what happened.  Real UDP on 127.0.0.0/8."""
from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
from passlib.hash import sha512_crypt
from prometheus_client.parser import text_string_to_metric_families

import e2e_harness as h
from testsupport import procs, sip
from testsupport.edge import Sipedge
from testsupport.net import free_udp_port

pytestmark = pytest.mark.e2e

PING = {"ping_interval": 0.5, "ping_timeout": 0.4, "probing_threshold": 2, "inactive_threshold": 2}
WINDOW = PING["ping_interval"] * PING["probing_threshold"] + PING["ping_timeout"]  # docs/router.md
USER, PASSWORD = "scraper", "e2e-secret"
# set: (domain, backends (name, host octet, scenario))
SETS = {40: ("fail.test", [("f1", 41, "uas_answer.xml"), ("f2", 42, "uas_answer.xml")]),
        41: ("busy.test", [("x503", 43, "uas_busy.xml"), ("f3", 44, "uas_answer.xml")]),
        42: ("metrics.test", [("m1", 45, "uas_answer.xml")]),
        50: ("reload.test", [("g1", 51, "uas_answer.xml"), ("g2", 52, "uas_answer.xml")])}


@pytest.fixture(scope="module")
def ops(e2e_workdir):
    """Backends of every set, a spare one for the reload test, and one edge with two
    workers, quick keep-alives, failover and the admin endpoint."""
    assert h.sipp_bin() is not None, "sipp not found (apt-get install sip-tester)"
    workdir = e2e_workdir / "ops"
    workdir.mkdir()
    backends = {}
    try:
        for _setid, (_domain, members) in SETS.items():
            for name, octet, scenario in members + ([("g3", 53, "uas_answer.xml")] if _setid == 50 else []):
                host = h.addr(octet)
                backends[name] = h.Backend(name, host, free_udp_port(host), scenario, workdir).start()
        htpasswd = workdir / "admin.htpasswd"
        htpasswd.write_text("%s:%s\n" % (USER, sha512_crypt.hash(PASSWORD)))
        admin = (h.addr(40), free_udp_port(h.addr(40)))
        edge = Sipedge(workdir, h.addr(40), settings={
            "sip": {"workers": 2}, "timers": {"fr_timer": 1.0}, "dispatcher": PING, "log": {"level": "info"},
            "admin": {"listen": "%s:%d" % admin, "htpasswd": str(htpasswd)}},
            domains=[(domain, setid) for setid, (domain, _m) in SETS.items()],
            destinations=[(setid, backends[name].uri) for setid, (_d, members) in SETS.items()
                          for name, _o, _s in members]).start()
        yield edge, backends, admin, htpasswd
        assert edge.alive(), edge.log_text()[-3000:]
        edge.stop()
    finally:
        for backend in backends.values():
            backend.stop()


def calls_in_thread(workdir, edge, domain, tag, calls, rate):
    """A SIPp UAC run in a thread; returns (thread, results list)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(h.run_uac(workdir, "uac_call.xml", edge.edge, domain=domain,
                                                                  tag=tag, calls=calls, rate=rate, timeout=40)))
    thread.start()
    return thread, out


def destination(edge, uri):
    return next(d for s in edge.ctl("dispatcher list") for d in s["destinations"] if d["uri"] == uri)


def invites(backend, tag):
    return [m for m in backend.received(tag) if m.method == "INVITE"]


def answered(run, method):
    """The Call-IDs whose `method` request the UAC saw answered with a 200."""
    return {m.call_id for m in run.messages if m.direction == "recv" and m.status == 200 and m.cseq_method == method}


def test_a_backend_that_dies_during_calls_costs_no_new_call(ops, e2e_workdir):
    edge, backends, _admin, _htpasswd = ops
    f1, f2 = backends["f1"], backends["f2"]
    assert procs.poll(lambda: destination(edge, f1.uri)["last_code"] == 200, 5.0)  # pinged, answering
    thread, out = calls_in_thread(e2e_workdir, edge, "fail.test", "die", 150, 25)
    assert procs.poll(lambda: len(invites(f1, "die")) >= 10, 10.0)
    f1.stop()
    died = time.monotonic()
    calls_at_death = destination(edge, f1.uri)["calls"]
    thread.join(60)
    run = out[0]
    # Every INVITE was answered: those sent to the dead one failed over.  A call f1 had
    # already answered has nowhere to send its BYE (no proxy can save it); with a hold
    # time of 0 that is at most the one or two calls open at the moment f1 died.
    invited = answered(run, "INVITE")
    assert len(invited) == 150, run.describe()
    lost = invited - answered(run, "BYE")
    assert len(lost) == run.failed <= 2, run.describe()
    assert all(invites(f1, call_id) for call_id in lost), "a call not on f1 failed: %s" % sorted(lost)
    after = destination(edge, f1.uri)
    print("\ncalls sent to the dead backend after it died: %d (in %.1f s of calls at 25/s; window %.1f s)"
          % (after["calls"] - calls_at_death, time.monotonic() - died, WINDOW))
    assert after["status"] == "inactive"
    assert after["calls"] - calls_at_death <= 25 * WINDOW  # out of rotation within the detection window
    # one health view for both workers: the DOWN was seen and logged once
    assert edge.log_text().count("Asterisk DOWN: %s" % f1.uri) == 1


def test_both_down_gets_503_at_once_and_one_back_returns(ops, e2e_workdir):
    edge, backends, _admin, _htpasswd = ops
    f1, f2 = backends["f1"], backends["f2"]
    f2.stop()
    f1.stop()
    assert procs.poll(lambda: {destination(edge, b.uri)["status"] for b in (f1, f2)} == {"inactive"}, 3 * WINDOW)
    caller = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    caller.bind((h.addr(100), 0))
    caller.settimeout(0.2)
    sent = time.monotonic()
    caller.sendto(h.raw_request("INVITE", "fail.test", caller.getsockname()), edge.edge)
    reply = sip.Msg(caller.recv(65535))
    assert reply.code == 503 and time.monotonic() - sent < 0.2
    caller.close()
    f1.start()
    assert procs.poll(lambda: destination(edge, f1.uri)["status"] == "active", 3 * WINDOW)
    assert edge.log_text().count("Asterisk UP: %s" % f1.uri) == 1
    run = h.run_uac(e2e_workdir, "uac_call.xml", edge.edge, domain="fail.test", tag="back", calls=10, rate=20)
    assert run.ok == 10, run.describe()
    assert len(invites(f1, "back")) == 10


def test_a_backend_refusing_with_503_costs_the_caller_nothing(ops, e2e_workdir):
    edge, backends, _admin, _htpasswd = ops
    run = h.run_uac(e2e_workdir, "uac_call.xml", edge.edge, domain="busy.test", tag="busy", calls=20, rate=20)
    assert run.ok == 20, run.describe()
    assert invites(backends["x503"], "busy")  # it was tried, and its 503 moved the call on
    assert not [m for m in run.messages if m.direction == "recv" and m.status in (500, 503)]


def test_a_reload_under_load_keeps_calls_and_counters(ops, e2e_workdir):
    edge, backends, _admin, _htpasswd = ops
    g1, g2, g3 = backends["g1"], backends["g2"], backends["g3"]
    thread, out = calls_in_thread(e2e_workdir, edge, "reload.test", "reload", 150, 25)
    assert procs.poll(lambda: len(invites(g1, "reload")) >= 10, 10.0)
    before = destination(edge, g1.uri)["calls"]
    edge.sql("INSERT INTO dispatcher (setid, destination) VALUES (50, '%s')" % g3.uri)
    edge.sql("DELETE FROM dispatcher WHERE destination = '%s'" % g2.uri)
    thread.join(60)
    run = out[0]
    assert run.ok == 150, run.describe()  # calls on g2 ended through the edge after its removal too
    assert invites(g3, "reload"), "the added destination got no call"
    after = destination(edge, g1.uri)["calls"]
    assert after > before and after == len(invites(g1, "reload"))  # counted on, through the reload


def scrape(admin, path="/metrics", auth=None):
    request = urllib.request.Request("http://%s:%d%s" % (admin + (path,)))
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def samples(text):
    """{(family, sorted labels): value} of a scrape (a counter's sample named as its family)."""
    return {(f.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if not s.name.endswith("_created")}


def test_metrics_count_the_calls_made(ops, e2e_workdir):
    edge, backends, admin, _htpasswd = ops
    m1 = backends["m1"]
    status, _headers, text = scrape(admin, auth="%s:%s" % (USER, PASSWORD))
    assert status == 200
    before = samples(text)
    run = h.run_uac(e2e_workdir, "uac_call.xml", edge.edge, domain="metrics.test", tag="metrics", calls=12, rate=20)
    assert run.ok == 12, run.describe()
    after = samples(scrape(admin, auth="%s:%s" % (USER, PASSWORD))[2])

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)
    assert grew("sipedge_calls_routed", setid="42", destination=m1.uri) == 12
    for method in ("INVITE", "ACK", "BYE"):
        assert grew("sipedge_requests_received", method=method) >= 12, method
    assert grew("sipedge_replies_sent", code="200") >= 24  # the INVITEs' and the BYEs'
    assert after[("sipedge_destination_state", (("destination", m1.uri), ("setid", "42"), ("state", "active")))] == 1
    assert ("sipedge_transactions_active", (("side", "server"),)) in after
    dispatcher = json.loads(scrape(admin, "/dispatcher", "%s:%s" % (USER, PASSWORD))[2])
    assert {s["setid"] for s in dispatcher} == set(SETS)


@pytest.mark.parametrize("auth", [None, USER + ":wrong", "nobody:" + PASSWORD, "garbage"])
def test_metrics_need_the_right_credentials(ops, auth):
    edge, _backends, admin, _htpasswd = ops
    status, headers, text = scrape(admin, auth=auth)
    assert status == 401 and headers["WWW-Authenticate"] == 'Basic realm="sipedge"'
    assert "sipedge_" not in text
    assert "admin endpoint: 401 for 127.0.0.1 (/metrics)" in edge.log_text()  # urllib connects from 127.0.0.1


def test_a_changed_users_file_is_read_without_a_restart(ops):
    edge, _backends, admin, htpasswd = ops
    pid = edge.pid
    assert scrape(admin, auth="newcomer:fresh-secret")[0] == 401
    htpasswd.write_text(htpasswd.read_text() + "newcomer:%s\n" % sha512_crypt.hash("fresh-secret"))
    assert scrape(admin, auth="newcomer:fresh-secret")[0] == 200
    assert edge.pid == pid and edge.alive()
