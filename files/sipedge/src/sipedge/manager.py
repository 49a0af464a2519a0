"""The main process of `sipedge run`: workers, one health view, control, admin.

It forks `sip.workers` SIP workers (shell.py), each joined to it by a Link,
and then does what must happen once per edge, whatever the worker count:

* the keep-alives (health.Checker on a UDP socket of its own): each
  destination is pinged once per interval, each up/down is logged once, and
  every change of a destination's state goes to every worker; a worker that
  saw a call fail says so, and the failure is judged here for all;
* the routing DB is read here too (for the ping targets), and a worker that
  reloaded gets the current states of its destinations;
* the control socket of `sipedge ctl` (one answer for the whole edge, the
  workers' counters summed) and, when configured, the admin HTTP endpoint
  (admin.py, imported only here, after the workers are forked, so they never
  load passlib or prometheus_client);
* readiness: once every worker has bound its sockets and loaded the DB, it
  tells systemd (sd_notify READY=1) and logs "sipedge ready";
* stopping: SIGTERM drains the workers (they get it too) and waits for them;
  a worker that dies stops the edge.
"""

import json
import logging
import os
import queue
import signal
import socket
import threading
import time

from .health import Checker
from .loop import Link, Loop
from .net import advertised, resolve, udp_socket
from .shell import Edge
from .store import RoutingStore, StoreError
from .dispatcher import DISABLED, INACTIVE

log = logging.getLogger("sipedge")
GATHER_TIMEOUT = 2.0  # seconds to wait for the workers' counters
ANSWER_TIMEOUT = 5.0
STATES = {"active": (0, False), "inactive": (INACTIVE, True), "disabled": (DISABLED, True)}


def notify(state):
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]  # the abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.sendto(state.encode(), path)
        except OSError as exc:
            log.warning("cannot notify systemd: %s", exc)


class Worker:  # pylint: disable=too-few-public-methods
    """A worker process as the main process sees it."""

    def __init__(self, pid):
        self.pid = pid
        self.link = None
        self.ready = False


class Manager:  # pylint: disable=too-many-instance-attributes
    """The main process; `run()` returns the exit status."""

    def __init__(self, config):
        self.config = config
        self.loop = None
        self.workers = []
        self.checker = None
        self.store = RoutingStore(config.db_path)
        self._gathers = {}  # id -> (waiting worker pids, results, callback, timer)
        self._gather_ids = 0
        self._stopping = False
        self.status = 0
        self.ready = False
        self._poll_now = threading.Event()  # wakes the DB thread early (sipedge ctl reload)

    # ---- processes ------------------------------------------------------------
    def _fork_workers(self):
        """Fork the workers first: nothing of this process's later threads or
        imports ends up in them."""
        links = []
        for _i in range(self.config.workers):
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            pid = os.fork()
            if pid == 0:
                ours.close()
                for other in links:
                    other[1].close()
                status = 1
                try:
                    Edge(self.config, theirs, reuseport=self.config.workers > 1).serve()
                    status = 0
                except BaseException:  # pylint: disable=broad-except
                    log.exception("worker failed")
                finally:
                    logging.shutdown()
                    os._exit(status)  # pylint: disable=protected-access
            theirs.close()
            links.append((pid, ours))
        return links

    def _worker_gone(self, worker):
        pid, status = os.waitpid(worker.pid, 0)
        code = os.waitstatus_to_exitcode(status)
        self.workers.remove(worker)
        if code != 0 and not self._stopping:
            log.error("worker %d ended with status %d; stopping the edge", pid, code)
            self.status = 1
            self._stop()
        if not self.workers:
            self.loop.stop()

    def _stop(self):
        """SIGTERM: the workers drain and end; this process ends after them."""
        if self._stopping:
            return
        self._stopping = True
        notify("STOPPING=1")
        for worker in self.workers:
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.config.drain_timeout + 5.0
        self.checker.timers.start(deadline, self._kill_stragglers, None)

    def _kill_stragglers(self, _arg, _now):
        for worker in self.workers:
            log.error("worker %d did not stop: killed", worker.pid)
            os.kill(worker.pid, signal.SIGKILL)

    # ---- messages from workers --------------------------------------------------
    def _message(self, worker, message):
        op = message["op"]
        if op == "ready":
            worker.ready = True
            self._check_ready()
        elif op == "loaded":
            worker.link.send({"op": "states", "states": self.checker.dispatcher.overrides()})
        elif op == "failed":
            dest = self.checker.dispatcher.find(message["setid"], message["uri"])
            if dest is not None:
                dest.failures += 1
                self.checker.health.mark_failed(dest)
        elif op == "stats":
            self._gathered(worker.pid, message)

    def _check_ready(self):
        if not self.ready and all(w.ready for w in self.workers):
            self.ready = True
            notify("READY=1")
            log.info("sipedge ready: %d worker(s), health checks every %.0f s", len(self.workers), self.config.ping_interval)

    def _on_event(self, dest, _event):
        """A destination changed its selectability: every worker learns it."""
        for worker in self.workers:
            worker.link.send({"op": "states", "states": [[dest.setid, dest.uri, dest.flags]]})

    # ---- the whole edge's numbers -------------------------------------------------
    def gather(self, callback):
        """Ask every worker for its counters; `callback(stats, calls)` once all
        answered (or after GATHER_TIMEOUT, with what came)."""
        self._gather_ids += 1
        key = self._gather_ids
        waiting = {w.pid for w in self.workers}
        timer = self.checker.timers.start(time.monotonic() + GATHER_TIMEOUT, lambda _a, _n: self._finish(key), None)
        self._gathers[key] = (waiting, [], callback, timer)
        for worker in self.workers:
            worker.link.send({"op": "stats", "id": key})
        if not waiting:
            self._finish(key)

    def _gathered(self, pid, message):
        entry = self._gathers.get(message["id"])
        if entry is None:
            return
        waiting, results, _callback, _timer = entry
        waiting.discard(pid)
        results.append((pid, message))
        if not waiting:
            self._finish(message["id"])

    def _finish(self, key):
        entry = self._gathers.pop(key, None)
        if entry is None:
            return
        _waiting, results, callback, timer = entry
        self.checker.timers.cancel(timer)
        totals, calls = {"workers": sorted(pid for pid, _m in results), "pid": os.getpid()}, {}
        for _pid, message in results:
            for name, value in message["stats"].items():
                if isinstance(value, dict):
                    merged = totals.setdefault(name, {})
                    for item, count in value.items():
                        merged[item] = merged.get(item, 0) + count
                elif name == "queue_delay_max":
                    totals[name] = max(totals.get(name, 0.0), value)
                elif name not in ("domains", "destinations"):
                    totals[name] = totals.get(name, 0) + value
                else:
                    totals[name] = value  # the same table in every worker
            for setid, uri, count, failures in message["calls"]:
                before = calls.get((setid, uri), (0, 0))
                calls[(setid, uri)] = (before[0] + count, before[1] + failures)
        callback(totals, calls)

    def dispatcher_view(self, calls):
        """The sets as `sipedge ctl dispatcher list` shows them: this process's
        health view, the workers' call counts, wall-clock ping times."""
        offset = time.time() - time.monotonic()
        sets = self.checker.dispatcher.snapshot()
        for dset in sets:
            for dest in dset["destinations"]:
                dest["calls"], _failures = calls.get((dset["setid"], dest["uri"]), (0, 0))
                if dest["last_ping"] is not None:
                    dest["last_ping"] = round(dest["last_ping"] + offset, 3)
                if dest["rtt"] is not None:
                    dest["rtt"] = round(dest["rtt"], 6)
        return sets

    # ---- commands (sipedge ctl, admin endpoint) ---------------------------------------
    def command(self, words, answer):
        """Run one control command on the loop; `answer(document)` once done."""
        if words == ["stats"]:
            self.gather(lambda totals, _calls: answer(totals))
        elif words == ["dispatcher", "list"]:
            self.gather(lambda _totals, calls: answer(self.dispatcher_view(calls)))
        elif words == ["metrics"]:
            self.gather(lambda totals, calls: answer({"stats": totals, "sets": self.dispatcher_view(calls)}))
        elif len(words) == 5 and words[:2] == ["dispatcher", "set-state"]:
            answer(self._set_state(*words[2:]))
        elif words == ["reload"]:
            self._poll_now.set()
            for worker in self.workers:
                worker.link.send({"op": "reload"})
            answer({"reload": "requested", "workers": len(self.workers)})
        else:
            answer({"error": "unknown command %r (stats, dispatcher list, dispatcher set-state SET URI "
                             "active|inactive|disabled, reload)" % " ".join(words)})

    def _set_state(self, setid, uri, state):
        if state not in STATES or not setid.isdigit():
            return {"error": "usage: dispatcher set-state SET URI active|inactive|disabled"}
        bits, pin = STATES[state]
        dispatcher = self.checker.dispatcher
        dest = dispatcher.find(int(setid), uri)
        if dest is None:
            return {"error": "no destination %s in set %s" % (uri, setid)}
        was = dest.status
        dispatcher.set_state(dest.setid, uri, bits, pin)
        log.info("dispatcher set-state: set %s %s %s -> %s (until its row changes or a restart)", setid, uri, was, state)
        for worker in self.workers:
            worker.link.send({"op": "states", "states": [[dest.setid, uri, dest.flags]]})
        return {"setid": dest.setid, "uri": uri, "state": dest.status, "was": was}

    def ask(self, words):
        """Run a command from another thread and wait for its answer."""
        answers = queue.SimpleQueue()
        self.loop.post(self.command, words, answers.put)
        try:
            return answers.get(timeout=ANSWER_TIMEOUT)
        except queue.Empty:
            return {"error": "no answer within %.0f s" % ANSWER_TIMEOUT}

    # ---- the routing DB -------------------------------------------------------------
    def _poll_db(self):
        while not self.loop.stopping.is_set():
            forced = self._poll_now.wait(self.config.db_poll_interval)
            self._poll_now.clear()
            try:
                data = self.store.open() if forced else self.store.poll()
            except StoreError:
                continue  # the workers say so in the log
            if data is not None:
                self.loop.post(self._load, data, self.checker.prepare(data, resolve))

    def _load(self, data, prepared):
        self.checker.commit(prepared, time.monotonic())
        log.debug("health checks: routing data loaded: %d destinations", len(data.destinations))
        for worker in self.workers:  # states the workers may have missed
            worker.link.send({"op": "states", "states": self.checker.dispatcher.overrides()})

    # ---- the loop ---------------------------------------------------------------------
    def _ping_socket(self):
        listen = self.config.listen[0]
        sock = udp_socket(listen.family_v6)
        sock.bind((listen.host, 0))
        return sock, advertised(self.config, listen.host, sock.getsockname()[1])

    def run(self):
        data = self.store.open()  # fail once, clearly, before forking
        self.store.close()  # no SQLite connection may cross a fork
        links = self._fork_workers()
        sock, local = self._ping_socket()
        self.loop = Loop()

        def send(data, addr):
            try:
                sock.sendto(data, addr)
            except Exception as exc:  # pylint: disable=broad-except
                log.debug("ping to %r failed: %s", addr, exc)

        self.checker = Checker(self.config, send, local, on_event=self._on_event)
        now = time.monotonic()
        self.checker.commit(self.checker.prepare(data, resolve), now)
        for pid, link_sock in links:
            worker = Worker(pid)
            worker.link = Link(self.loop, link_sock, lambda m, w=worker: self._message(w, m),
                               lambda w=worker: self._worker_gone(w))
            self.workers.append(worker)

        def readable(now, _events):
            for _i in range(64):
                try:
                    self.checker.on_datagram(sock.recv(65535), now)
                except BlockingIOError:
                    return
                except OSError:
                    continue
        self.loop.add(sock.fileno(), readable)
        threading.Thread(target=self._poll_db, name="routing-db", daemon=True).start()
        servers = [self._control_server()]
        if self.config.admin_listen:
            from . import admin  # pylint: disable=import-outside-toplevel  # never in a worker
            servers.append(admin.start(self.config, self.ask))
        self.checker.start(now)
        try:
            self.loop.run(self.checker, on_signal=self._stop)
        finally:
            self.loop.stopping.set()
            self._poll_now.set()
            for server in servers:
                if server is not None:
                    server.close()
            sock.close()
        log.info("sipedge stopped")
        return self.status

    # ---- sipedge ctl ------------------------------------------------------------------
    def _control_server(self):
        """The control socket (root and the service group: 0660), served by a thread."""
        path = self.config.control_socket
        if not path:
            return None
        if os.path.exists(path):
            os.unlink(path)  # left over by a process that is gone
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(path)
        except OSError as exc:
            log.warning("no control socket at %s: %s", path, exc.strerror)
            server.close()
            return None
        os.chmod(path, 0o660)
        server.listen(8)
        server.settimeout(0.5)
        threading.Thread(target=self._control, args=(server,), name="control", daemon=True).start()
        return ControlServer(server, path)

    def _control(self, server):
        """One command line in, one JSON document out, per connection."""
        while not self.loop.stopping.is_set():
            try:
                conn, _addr = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed at shutdown
            with conn:
                try:
                    conn.settimeout(2.0)
                    line = conn.makefile("rb").readline(1024).decode("utf-8", "replace")
                    conn.sendall(json.dumps(self.ask(line.split())).encode() + b"\n")
                except OSError:
                    continue


class ControlServer:  # pylint: disable=too-few-public-methods
    def __init__(self, sock, path):
        self.sock, self.path = sock, path

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def run(config):
    """`sipedge run`: the exit status."""
    return Manager(config).run()
