"""`sipedge run` as a whole, on loopback: the main process and its workers, what
they advertise, readiness, draining, and `sipedge ctl` for the whole edge."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from testsupport import procs, sip
from testsupport.edge import Sipedge
from testsupport.net import free_udp_port

EDGE, CLIENT, BACKEND = "127.0.45.1", "127.0.45.2", "127.0.45.3"


def udp(host, family=socket.AF_INET):
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.settimeout(0.05)
    return sock


def receive(sock, timeout, method=None):
    """The next datagram within `timeout` seconds (of `method`, when given), parsed, or None."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            msg = sip.Msg(sock.recv(65535))
        except socket.timeout:
            continue
        if method is None or msg.method == method:
            return msg
    return None


def request(method, ruri, client, *, to_tag=None, route=None, via_port=None, branch=None, call_id=None):
    host, port = client.getsockname()[:2]
    via_host = "[%s]" % host if ":" in host else host
    headers = [("Via", "SIP/2.0/UDP %s:%d;branch=%s;rport" % (via_host, via_port or port,
                                                              branch or sip.new_id("z9hG4bK"))),
               ("Max-Forwards", "70"), ("From", "<sip:bob@tenant.test>;tag=ft"),
               ("To", "<%s>%s" % (ruri, ";tag=" + to_tag if to_tag else "")),
               ("Call-ID", call_id or sip.new_id("c")), ("CSeq", "1 " + method)]
    if route:
        headers.append(("Route", route))
    return bytes(sip.Req(method, ruri, headers))


@pytest.fixture(name="backend")
def fixture_backend():
    sock = udp(BACKEND)
    yield sock
    sock.close()


@pytest.fixture(name="client")
def fixture_client():
    sock = udp(CLIENT)
    yield sock
    sock.close()


def start(tmp_path, backend, **settings):
    """An edge routing tenant.test to `backend`; no keep-alives unless `settings` say so."""
    settings.setdefault("dispatcher", {}).setdefault("ping_interval", 0)
    return Sipedge(tmp_path, EDGE, settings=settings, domains=[("tenant.test", 10)],
                   destinations=[(10, "sip:%s:%d" % backend.getsockname())]).start()


def test_a_via_port_beyond_65535_leaves_no_transaction(tmp_path, backend, client):
    """Issue 9 defect 1, through the sockets: 1,000 forged in-dialog INVITEs whose
    top Via names port 70000 are dropped, and nothing of them stays."""
    edge = start(tmp_path, backend)
    try:
        route = "<sip:%s:%d;lr>" % edge.edge
        for i in range(1000):
            client.sendto(request("INVITE", "sip:a@%s:%d" % backend.getsockname(), client, to_tag="x",
                                  route=route, via_port=70000, branch="z9hG4bKp%d" % i), edge.edge)
        assert procs.poll(lambda: edge.ctl("stats")["drops"].get("malformed") == 1000, 10)
        stats = edge.ctl("stats")
        assert (stats["server_transactions"], stats["client_transactions"]) == (0, 0)
        assert receive(backend, 0.2) is None and edge.alive()
    finally:
        edge.stop()


def test_a_host_only_advertised_address_takes_the_sockets_port(tmp_path, backend, client):
    """Issue 9 defect 4: Record-Route names the real port, and the edge knows that
    Route as its own when the in-dialog request comes back."""
    edge = start(tmp_path, backend, sip={"advertised_address": EDGE})
    try:
        client.sendto(request("OPTIONS", "sip:alice@tenant.test", client), edge.edge)
        fwd = receive(backend, 2.0)
        assert fwd.all("record-route")[0].startswith("<sip:%s:%d;lr" % edge.edge)
        assert sip.via_sent_by(fwd.all("via")[0]) == edge.edge
        route = fwd.all("record-route")[0]
        client.sendto(request("BYE", "sip:a@%s:%d" % backend.getsockname(), client, to_tag="x", route=route),
                      edge.edge)
        bye = receive(backend, 2.0)
        assert bye is not None and bye.method == "BYE", "the edge did not know its own Record-Route"
    finally:
        edge.stop()


def global_ipv6():
    """The host's usable global IPv6 addresses, read from /proc here (not by the router's code)."""
    with open("/proc/net/if_inet6", encoding="ascii") as handle:
        rows = [line.split() for line in handle]
    return [socket.inet_ntop(socket.AF_INET6, bytes.fromhex(r[0])) for r in rows
            if r[3] == "00" and not int(r[4], 16) & 0x68]


def test_an_ipv6_wildcard_advertises_a_global_address_or_refuses_to_start(tmp_path):
    """Issue 9 defect 5: [::] never advertises [::1]; without a global address the
    start fails and says to set advertised_address; the edge knows ::1 as itself."""
    port = free_udp_port("127.0.0.1")
    edge = Sipedge(tmp_path, "::", port, settings={"sip": {"listen": ["udp:[::]:%d" % port]},
                                                   "dispatcher": {"ping_interval": 0}})
    candidates = global_ipv6()
    if not candidates:
        with pytest.raises(RuntimeError, match="no global IPv6 address to advertise; set sip.advertised_address"):
            edge.start()
        return
    backend = udp("::1", socket.AF_INET6)
    client = udp("::1", socket.AF_INET6)
    edge.destinations = [(10, "sip:[::1]:%d" % backend.getsockname()[1])]
    edge.domains = [("tenant.test", 10)]
    edge.sections["sip"]["listen"] = ["udp:[::]:%d" % port]
    try:
        edge.start()
        advertised = "[%s]:%d" % (candidates[0], port)
        assert "advertising %s" % advertised in edge.log_text()
        bye = request("BYE", "sip:a@[::1]:%d" % backend.getsockname()[1], client, to_tag="x",
                      route="<sip:[::1]:%d;lr>" % port)
        client.sendto(bye, ("::1", port))
        got = receive(backend, 2.0, "BYE")
        assert got is not None and got.method == "BYE", "the edge did not know [::1] as itself"
        assert got.all("via")[0].startswith("SIP/2.0/UDP %s;" % advertised)
    finally:
        edge.stop()
        backend.close()
        client.close()


def test_ready_and_stopping_are_told_to_systemd(tmp_path, backend):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    notify.bind(path)
    notify.settimeout(10)
    os.environ["NOTIFY_SOCKET"] = path
    try:
        edge = start(tmp_path, backend, sip={"workers": 2})
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        assert notify.recv(100) == b"READY=1"
        assert "sipedge ready: 2 worker(s)" in edge.log_text()  # READY=1 came after every worker was up
    finally:
        assert edge.stop() == 0
    assert notify.recv(100) == b"STOPPING=1"
    notify.close()


def test_a_listen_address_that_cannot_be_bound_fails_the_start(tmp_path, backend):
    taken = udp(EDGE)
    try:
        edge = Sipedge(tmp_path, EDGE, taken.getsockname()[1], domains=[("tenant.test", 10)])
        with pytest.raises(RuntimeError, match="exited with 1"):
            edge.start()
        assert "sipedge ready" not in edge.log_text()
    finally:
        taken.close()


def test_sigterm_drains_calls_in_flight_and_sheds_new_invites(tmp_path, backend, client):
    edge = start(tmp_path, backend, sip={"drain_timeout": 10.0})
    late = udp(CLIENT)
    try:
        client.sendto(request("INVITE", "sip:alice@tenant.test", client, call_id="inflight"), edge.edge)
        invite = receive(backend, 2.0)
        assert receive(client, 1.0).code == 100
        backend.sendto(sip.response_for(invite, 180, "Ringing", to_tag="b"), edge.edge)
        assert receive(client, 1.0).code == 180
        edge.proc.send_signal(signal.SIGTERM)
        edge.wait_log("draining: new INVITEs get 503 while 1 transactions finish")
        late.sendto(request("INVITE", "sip:alice@tenant.test", late), edge.edge)
        shed = receive(late, 1.0)
        assert (shed.code, shed.get("retry-after")) == (503, "5")
        assert edge.alive()
        backend.sendto(sip.response_for(invite, 200, "OK", to_tag="b"), edge.edge)
        assert receive(client, 1.0).code == 200  # the call in flight completes
        assert procs.poll(lambda: not edge.alive(), 5.0), "the edge did not stop once its calls finished"
        assert edge.proc.returncode == 0
    finally:
        edge.stop()
        late.close()


def answer_pings(sock, stop):
    """A backend thread: 200 to every OPTIONS keep-alive, until `stop` is set."""
    while not stop.is_set():
        try:
            data, src = sock.recvfrom(65535)
        except socket.timeout:
            continue
        msg = sip.Msg(data)
        if msg.method == "OPTIONS" and msg.get("user-agent") == "sipedge":
            sock.sendto(sip.response_for(msg, 200, "OK", to_tag="k"), src)


def test_ctl_set_state_holds_until_active_and_reload(tmp_path, backend, client):
    pinged = udp(BACKEND)
    stop = threading.Event()
    threading.Thread(target=answer_pings, args=(pinged, stop), daemon=True).start()
    edge = Sipedge(tmp_path, EDGE, settings={"dispatcher": {"ping_interval": 0.2, "ping_timeout": 0.1}},
                   domains=[("tenant.test", 10), ("other.test", 20)],
                   destinations=[(10, "sip:%s:%d" % pinged.getsockname()), (20, "sip:%s:%d" % backend.getsockname())])
    edge.start()
    uri = "sip:%s:%d" % pinged.getsockname()
    try:
        assert procs.poll(lambda: edge.ctl("dispatcher list")[0]["destinations"][0]["last_code"] == 200, 3.0)
        held = edge.ctl("dispatcher set-state 10 %s inactive" % uri)
        assert (held["state"], held["was"]) == ("inactive", "active")
        client.sendto(request("OPTIONS", "sip:alice@tenant.test", client), edge.edge)
        assert receive(client, 1.0).code == 503  # out of rotation
        # the keep-alives go on and are answered, but do not undo an operator's decision
        last = edge.ctl("dispatcher list")[0]["destinations"][0]["last_ping"]
        assert procs.poll(lambda: edge.ctl("dispatcher list")[0]["destinations"][0]["last_ping"] > last, 2.0)
        dest = edge.ctl("dispatcher list")[0]["destinations"][0]
        assert (dest["status"], dest["pinned"], dest["last_code"]) == ("inactive", True, 200)
        assert edge.ctl("dispatcher set-state 10 %s active" % uri)["state"] == "active"
        assert edge.ctl("dispatcher list")[0]["destinations"][0]["pinned"] is False
        with pytest.raises(RuntimeError, match="no destination"):
            edge.ctl("dispatcher set-state 10 sip:127.0.45.99 inactive")
        edge.sql("INSERT INTO sip_domains(domain, dispatcher_setid) VALUES ('late.test', 10)")
        assert edge.ctl("reload")["reload"] == "requested"
        assert procs.poll(lambda: edge.ctl("stats")["domains"] == 3, 2.0)
    finally:
        edge.stop()
        stop.set()
        pinged.close()


def test_workers_never_load_the_admin_endpoints_libraries():
    """passlib and prometheus_client are for the main process's admin endpoint only."""
    code = ("import sys, sipedge.cli, sipedge.manager, sipedge.shell; "
            "print(sorted({'passlib', 'prometheus_client'} & set(sys.modules)))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
