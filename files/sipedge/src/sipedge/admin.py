"""The admin HTTP endpoint: `GET /metrics` (Prometheus) and `GET /dispatcher` (JSON).

Off unless `[admin] listen` is set; bound to that address only (127.0.0.1 in
the role's default).  It runs in the main process (manager.py), never in a
SIP worker: only this module imports prometheus_client and passlib.

Every request needs HTTP Basic credentials that match the htpasswd file
(`[admin] htpasswd`, sha512-crypt or bcrypt hashes, verified with passlib;
the file is read again when it changes, no restart).  Wrong or missing
credentials get 401 with a WWW-Authenticate header and a log line naming the
source, never a hint which part was wrong.  A verification costs 0.2-0.6 s
of CPU (sha512-crypt, 656,000 rounds, measured on Python 3.11 and 3.13), so:
a successful one is remembered for CACHE_SECONDS; requests are served one at
a time by a thread of lowered CPU priority, so a flood of bad credentials
cannot take CPU from the SIP workers; and at most VERIFY_RATE verifications
per second are tried, the rest answered 401 at once.
"""

import base64
import hashlib
import json
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

from passlib.apache import HtpasswdFile
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily

from .uri import split_hostport

log = logging.getLogger("sipedge")
CACHE_SECONDS = 60.0
VERIFY_RATE = 4.0  # expensive verifications per second at most
NICE = 10  # the admin thread yields the CPU to the SIP workers
STATES = ("active", "trying", "inactive", "disabled")


class Credentials:
    """The htpasswd file, read again when it changes, with a short memory of
    successful verifications and a cap on the expensive ones."""

    def __init__(self, path):
        self.path = path
        self._stamp = None
        self._file = None
        self._good = {}  # (user, sha256 of the password) -> until when it needs no verification
        self._budget, self._refilled = VERIFY_RATE, time.monotonic()

    def _current(self):
        try:
            st = os.stat(self.path)
            stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                self._file = HtpasswdFile(self.path)
                self._stamp = stamp
                self._good.clear()  # a changed file may have removed or changed a user
        except (OSError, ValueError) as exc:
            if self._file is not None or self._stamp != "missing":
                log.error("admin endpoint: cannot read %s: %s; every request gets 401", self.path, exc)
            self._file, self._stamp = None, "missing"
        return self._file

    def check(self, header):
        """True when an `Authorization: Basic ...` header holds a valid user and password."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _sep, password = base64.b64decode(header[6:], validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        users = self._current()
        if users is None or not user:
            return False
        key = (user, hashlib.sha256(password.encode()).hexdigest())
        now = time.monotonic()
        if self._good.get(key, 0.0) > now:
            return True
        self._budget = min(VERIFY_RATE, self._budget + (now - self._refilled) * VERIFY_RATE)
        self._refilled = now
        if self._budget < 1.0:
            return False  # too many tries: no CPU for this one
        self._budget -= 1.0
        if users.check_password(user, password):
            self._good[key] = now + CACHE_SECONDS
            return True
        return False


class EdgeCollector:
    """The edge's own counters as Prometheus metrics (no hand-written format)."""

    def __init__(self, ask):
        self.ask = ask

    def collect(self):
        view = self.ask(["metrics"])
        stats, sets = view.get("stats", {}), view.get("sets", [])
        families = [
            self._counter("sipedge_requests_received", "SIP requests received, by method", "method", stats.get("received")),
            self._counter("sipedge_replies_sent", "SIP replies sent (relayed and local), by status code", "code",
                          stats.get("replies")),
            self._counter("sipedge_drops", "SIP datagrams dropped without a reply, by reason", "reason", stats.get("drops")),
        ]
        failovers = CounterMetricFamily("sipedge_failovers", "INVITEs moved to another destination after a failure")
        failovers.add_metric([], stats.get("failovers", 0))
        sheds = CounterMetricFamily("sipedge_overload_sheds", "new INVITEs answered 503 while the edge was behind")
        sheds.add_metric([], stats.get("sheds", 0))
        delay = GaugeMetricFamily("sipedge_queue_delay_max_seconds",
                                  "longest wait of a datagram in a receive queue since the previous scrape")
        delay.add_metric([], stats.get("queue_delay_max", 0.0))
        active = GaugeMetricFamily("sipedge_transactions_active", "transactions the edge holds", labels=["side"])
        active.add_metric(["server"], stats.get("server_transactions", 0))
        active.add_metric(["client"], stats.get("client_transactions", 0))
        labels = ["setid", "destination"]
        calls = CounterMetricFamily("sipedge_calls_routed", "initial requests sent to a destination", labels=labels)
        state = GaugeMetricFamily("sipedge_destination_state", "1 for the destination's current state",
                                  labels=labels + ["state"])
        rtt = GaugeMetricFamily("sipedge_destination_ping_rtt_seconds", "round trip of the last answered keep-alive",
                                labels=labels)
        for dset in sets:
            for dest in dset["destinations"]:
                key = [str(dset["setid"]), dest["uri"]]
                calls.add_metric(key, dest["calls"])
                for name in STATES:
                    state.add_metric(key + [name], 1 if dest["status"] == name else 0)
                if dest["rtt"] is not None:
                    rtt.add_metric(key, dest["rtt"])
        return families + [failovers, sheds, delay, active, calls, state, rtt]

    @staticmethod
    def _counter(name, documentation, label, counts):
        family = CounterMetricFamily(name, documentation, labels=[label])
        for item, value in sorted((counts or {}).items()):
            family.add_metric([item], value)
        return family


def handler_for(credentials, registry, ask):
    class Handler(BaseHTTPRequestHandler):
        server_version = "sipedge"
        sys_version = ""

        def do_GET(self):  # pylint: disable=invalid-name
            if not credentials.check(self.headers.get("Authorization")):
                log.warning("admin endpoint: 401 for %s (%s)", self.client_address[0], self.path)
                self._send(401, b"unauthorized\n", "text/plain", [("WWW-Authenticate", 'Basic realm="sipedge"')])
            elif self.path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/dispatcher":
                self._send(200, json.dumps(ask(["dispatcher", "list"])).encode(), "application/json")
            else:
                self._send(404, b"not found\n", "text/plain")

        def _send(self, code, body, kind, headers=()):
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # pylint: disable=redefined-builtin
            log.debug("admin endpoint: %s %s", self.client_address[0], format % args)

    return Handler


class AdminServer:
    """The HTTP server and its thread."""

    def __init__(self, config, ask):
        host, port = split_hostport(config.admin_listen.encode())
        registry = CollectorRegistry(auto_describe=False)
        registry.register(EdgeCollector(ask))
        handler = handler_for(Credentials(config.admin_htpasswd), registry, ask)
        family = socket.AF_INET6 if host.startswith(b"[") else socket.AF_INET
        server_class = type("Server", (HTTPServer,), {"address_family": family})
        self.httpd = server_class((host.decode().strip("[]"), port), handler)
        self.httpd.timeout = 10
        self.thread = threading.Thread(target=self._serve, name="admin", daemon=True)
        self.thread.start()
        log.info("admin endpoint on http://%s/metrics and /dispatcher", config.admin_listen)

    def _serve(self):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)  # this thread only (Linux)
        except OSError:
            pass
        self.httpd.serve_forever(poll_interval=0.5)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def start(config, ask):
    """The endpoint, serving from a thread of its own; `close()` it at the end."""
    return AdminServer(config, ask)
