"""The shell with real sockets on loopback: a running `sipedge run`
process, plain UDP sockets as client and backend (SIPp runs in tests/e2e)."""

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

import pytest

from harness import request
from sipedge.message import parse
from sipedge.schema import ensure_schema
from testsupport.edge import Sipedge

EDGE_IP, CLIENT_IP, BACKEND_IP = "127.0.0.41", "127.0.0.42", "127.0.0.43"


def udp(ip):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((ip, 0))
    sock.settimeout(0.05)
    return sock


def receive(sock, timeout):
    """The next datagram within `timeout` seconds, or None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            return sock.recvfrom(65535)[0]
        except socket.timeout:
            continue
    return None


@pytest.fixture
def running(tmp_path):
    backend = udp(BACKEND_IP)
    uri = "sip:%s:%d" % (BACKEND_IP, backend.getsockname()[1])
    edge = Sipedge(tmp_path, EDGE_IP, domains=[("tenant1.test", 10)], destinations=[(10, uri), (20, uri)],
                   settings={"dispatcher": {"ping_interval": 0}, "database": {"poll_interval": 0.1},
                             "log": {"level": "debug"}}).start()
    client = udp(CLIENT_IP)
    yield edge, client, backend
    edge.stop()
    assert edge.proc.returncode == 0
    client.close()
    backend.close()


def options(client, domain=b"tenant1.test", n=0):
    port = client.getsockname()[1]
    return request(b"OPTIONS", ruri=b"sip:alice@" + domain, branch=b"z9hG4bKsh%d" % n, call_id=b"sh%d" % n,
                   via=b"SIP/2.0/UDP %s:%d;branch=%%s;rport" % (CLIENT_IP.encode(), port))


def test_routes_and_survives_junk(running):
    edge, client, backend = running
    target = (EDGE_IP, edge.port)
    client.sendto(options(client, n=1), target)
    got = receive(backend, 2.0)
    assert got is not None and parse(got).method == b"OPTIONS"
    for i in range(200):
        client.sendto(os.urandom(i * 7 % 1400 + 1), target)
    client.sendto(b"INVITE sip:x@tenant1.test SIP/2.0\r\n" + b"X: " + b"y" * 65000 + b"\r\n\r\n", target)
    client.sendto(options(client, n=2)[:40], target)
    client.sendto(options(client, n=3), target)
    got = receive(backend, 2.0)
    assert got is not None and parse(got).get(b"call-id") == b"sh3"
    assert edge.proc.poll() is None


def test_unknown_domain_gets_no_byte_back(running):
    edge, client, _unused = running
    client.sendto(options(client, domain=b"nowhere.test", n=4), (EDGE_IP, edge.port))
    assert receive(client, 0.5) is None
    edge.wait_log("NOTICE Door-knock blocked: domain=nowhere.test src=%s" % CLIENT_IP)


def test_domain_added_while_running_routes_within_a_second(running):
    edge, client, backend = running
    client.sendto(options(client, domain=b"tenant2.test", n=5), (EDGE_IP, edge.port))
    assert receive(backend, 0.3) is None
    edge.sql("INSERT INTO sip_domains(domain, dispatcher_setid) VALUES ('tenant2.test', 20)")
    written = time.monotonic()
    routed = None
    n = 6
    while time.monotonic() - written < 1.0 and routed is None:
        client.sendto(options(client, domain=b"tenant2.test", n=n), (EDGE_IP, edge.port))
        routed = receive(backend, 0.05)
        n += 1
    assert routed is not None, "not routed within 1 s of the DB write"


def test_broken_db_keeps_last_good_table(running):
    edge, client, backend = running
    with open(edge.db, "r+b") as handle:
        handle.write(b"garbage" * 100)
    edge.wait_log("ERROR routing DB unreadable, keeping the last good table")
    client.sendto(options(client, n=20), (EDGE_IP, edge.port))
    assert receive(backend, 2.0) is not None


def test_wildcard_listen_never_advertises_0_0_0_0():
    from sipedge.config import from_dict  # pylint: disable=import-outside-toplevel
    from sipedge.net import advertised  # pylint: disable=import-outside-toplevel
    cfg = from_dict({})
    local = advertised(cfg, "0.0.0.0", 5060)
    assert local != b"0.0.0.0" and not local.startswith(b"0.0.0.0:")
    assert advertised(from_dict({"sip": {"advertised_address": "edge.example.net"}}), "0.0.0.0", 5060) == b"edge.example.net"
    assert advertised(cfg, "::1", 5070) == b"[::1]:5070"


def test_ipv6_listener_routes_to_ipv6_backend(tmp_path):
    backend = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    backend.bind(("::1", 0))
    backend.settimeout(0.05)
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    probe.bind(("::1", 0))
    port = probe.getsockname()[1]
    probe.close()
    db = str(tmp_path / "routing.db")
    ensure_schema(db)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO sip_domains(domain, dispatcher_setid) VALUES ('tenant6.test', 6)")
        conn.execute("INSERT INTO dispatcher(setid, destination) VALUES (6, 'sip:[::1]:%d')" % backend.getsockname()[1])
    cfg = tmp_path / "sipedge.toml"
    cfg.write_text('[sip]\nlisten = ["udp:[::1]:%d"]\ndrain_timeout = 0\n[dispatcher]\nping_interval = 0\n[database]\npath = "%s"\n' % (port, db))
    log = open(tmp_path / "edge.log", "w+", encoding="utf-8")  # pylint: disable=consider-using-with
    proc = subprocess.Popen([sys.executable, "-m", "sipedge", "run", "--config", str(cfg)], stderr=log)  # pylint: disable=consider-using-with
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    client.bind(("::1", 0))
    try:
        data = request(b"OPTIONS", ruri=b"sip:bob@tenant6.test",
                       via=b"SIP/2.0/UDP [::1]:%d;branch=%%s;rport" % client.getsockname()[1])
        got = None
        end = time.monotonic() + 5.0
        while got is None and time.monotonic() < end:  # until the edge is up
            client.sendto(data, ("::1", port))
            got = receive(backend, 0.1)
        assert got is not None
        fwd = parse(got)
        assert fwd.values(b"via")[0].startswith(b"SIP/2.0/UDP [::1]:%d;branch=" % port)
        assert fwd.values(b"record-route") == [b"<sip:[::1]:%d;lr;ftag=ft1>" % port]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        log.close()
        for sock in (client, backend):
            sock.close()


def test_ctl_reports_transactions_and_destinations(running, capsys):
    from sipedge import cli  # pylint: disable=import-outside-toplevel
    edge, client, backend = running
    client.sendto(options(client, n=30), (EDGE_IP, edge.port))
    assert receive(backend, 2.0) is not None  # forwarded, never answered: one transaction pending
    assert cli.main(["ctl", "--socket", edge.control, "--json", "stats"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["server_transactions"] == 1 and stats["client_transactions"] == 1
    assert stats["domains"] == 1 and stats["destinations"] == 2
    assert stats["received"] == {"OPTIONS": 1} and len(stats["workers"]) == 1
    assert cli.main(["ctl", "--socket", edge.control, "--json", "dispatcher", "list"]) == 0
    sets = json.loads(capsys.readouterr().out)
    assert [(s["setid"], [(d["state"], d["calls"]) for d in s["destinations"]]) for s in sets] == [
        (10, [("AX", 1)]), (20, [("AX", 0)])]
    assert cli.main(["ctl", "--socket", edge.control, "dispatcher", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SET", "DESTINATION", "PRIORITY", "WEIGHT", "STATE", "LAST", "PING", "CODE", "RTT", "CALLS"]
    assert table[1].split()[:5] == ["10", "sip:%s:%d" % (BACKEND_IP, backend.getsockname()[1]), "0", "0", "active"]
    assert cli.main(["ctl", "--socket", str(edge.control) + ".none", "stats"]) == 1


def test_workers_share_the_port_and_stop_together(tmp_path, capsys):
    from sipedge import cli  # pylint: disable=import-outside-toplevel
    backend = udp(BACKEND_IP)
    db = str(tmp_path / "routing.db")
    ensure_schema(db)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO sip_domains(domain, dispatcher_setid) VALUES ('tenant1.test', 10)")
        conn.execute("INSERT INTO dispatcher(setid, destination) VALUES (10, 'sip:%s:%d')" % (BACKEND_IP, backend.getsockname()[1]))
    probe = udp(EDGE_IP)
    port = probe.getsockname()[1]
    probe.close()
    control = str(tmp_path / "ctl.sock")
    cfg = tmp_path / "sipedge.toml"
    cfg.write_text('[sip]\nlisten = ["udp:%s:%d"]\nworkers = 2\ndrain_timeout = 0\n[dispatcher]\nping_interval = 0\n'
                   '[database]\npath = "%s"\n[control]\nsocket = "%s"\n' % (EDGE_IP, port, db, control))
    log = open(tmp_path / "edge.log", "w+", encoding="utf-8")  # pylint: disable=consider-using-with
    proc = subprocess.Popen([sys.executable, "-m", "sipedge", "run", "--config", str(cfg)], stderr=log)  # pylint: disable=consider-using-with
    clients = [udp(CLIENT_IP) for _i in range(4)]
    try:
        end = time.monotonic() + 5.0
        while "sipedge ready" not in (tmp_path / "edge.log").read_text() and time.monotonic() < end:
            time.sleep(0.05)
        for n, client in enumerate(clients):  # four sources: the kernel spreads them over the workers
            client.sendto(options(client, n=100 + n), (EDGE_IP, port))
            got = receive(backend, 2.0)
            assert got is not None
            via = parse(got).top_via
            assert via.host == EDGE_IP.encode() and via.port != port  # a worker's own port, for the responses
        assert cli.main(["ctl", "--socket", control, "--json", "stats"]) == 0
        edge = json.loads(capsys.readouterr().out)  # one answer for the whole edge
        assert len(edge["workers"]) == 2 and edge["pid"] == proc.pid
        assert edge["server_transactions"] == 4 and edge["received"] == {"OPTIONS": 4}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        log.close()
        for sock in clients + [backend]:
            sock.close()
    assert proc.returncode == 0
    assert not [p for p in os.listdir(tmp_path) if p.startswith("ctl.sock")]  # the workers cleaned up
