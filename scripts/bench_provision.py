"""Provisioning at scale (`make bench-provision`): 10,000 tenants through Ansible.

On this machine, nothing leaves loopback:

* a routing DB made by `sipedge db init`, and a running `sipedge run` reading it
  (health checks off: the 20,000 destinations are loopback addresses nobody
  answers on, and none of them is ever sent a call but the new tenant's);
* an inventory with one host (`ansible_connection: local`) and, in its
  group_vars, 10,000 tenants of one domain and two destinations each;
* `ansible-playbook` applying the collection's tenants role, three times: the
  first converge, a rerun with no change, and a change of one tenant (a new
  one among 10,000), each timed;
* after the change, the time from the play's end to the first request of the
  new tenant that the router forwards to the new tenant's backend (a socket of
  this script on loopback);
* all along, a prober sends a request the router answers itself (an OPTIONS
  with Max-Forwards 0, which gets 483) every 5 ms and keeps every reply's
  delay: the worst one while the router reloads is what a reload costs calls
  in flight;
* then, with Ansible idle, reloads alone: one row changed, and every one of the
  20,000 destination rows changed at once (written with sqlite3), each with the
  worst reply delay while the router took it in: what a reload costs the SIP
  loop, apart from the CPU that ansible-playbook takes from the router on this
  2-core machine during the plays (on a real edge the controller is elsewhere);
* the router's RSS (main process and worker) with 30,000 rows loaded.

It prints the figures and the targets of issue 8, and exits non-zero only when
a step could not run at all.
"""

import argparse
import json
import re
import sqlite3
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
EDGE = "127.0.90.1"
PROBER, NEWBACKEND = "127.0.90.2", "127.0.90.3"
TARGETS = {"converge": 15.0, "rerun": 5.0, "change": 5.0, "routed": 1.0, "stall_ms": 10.0}


def tenants(count, extra=None):
    """count tenants: one domain and two loopback destinations each (never contacted)."""
    out = []
    for i in range(count):
        a, b = divmod(i, 250)
        out.append({"name": "tenant%05d" % i, "setid": 1000 + i, "domains": ["t%05d.bench.invalid" % i],
                    "destinations": [{"uri": "sip:127.1.%d.%d:5060" % (a, b + 1), "priority": 0, "weight": 50},
                                     {"uri": "sip:127.2.%d.%d:5060" % (a, b + 1), "priority": 10, "weight": 50}]})
    if extra:
        out.append(extra)
    return out


def write_inventory(workdir, db, tenant_list):
    inventory = workdir / "inventory"
    (inventory / "group_vars").mkdir(parents=True, exist_ok=True)
    (inventory / "hosts.yml").write_text(json.dumps({"sip_edge": {"hosts": {"bench-edge": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    # JSON is YAML: the group_vars an operator would write, without YAML's parse cost in this script
    (inventory / "group_vars" / "sip_edge.yml").write_text(json.dumps({
        "sip_edge_tenants": tenant_list, "sip_edge_tenants_db": str(db), "sip_edge_tenants_purge": True}))
    return inventory


def play(workdir, inventory):
    """Run the tenants role; (seconds, output)."""
    playbook = workdir / "tenants.yml"
    playbook.write_text("- hosts: sip_edge\n  gather_facts: false\n  roles:\n    - role: voip.sip_edge.tenants\n")
    start = time.monotonic()
    result = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(playbook)],
                            capture_output=True, text=True, timeout=600, check=False)
    took = time.monotonic() - start
    if result.returncode != 0:
        raise SystemExit("ansible-playbook failed:\n" + result.stdout[-3000:] + result.stderr[-2000:])
    return took, result.stdout


def counts(output):
    match = re.search(r"domains\s+(\d+) added, (\d+) updated,\s+(\d+) removed; destinations\s+(\d+) added, "
                      r"(\d+) updated,\s+(\d+) removed", output)
    return match.groups() if match else ("?",) * 6


class Prober(threading.Thread):
    """A request the router answers itself, every `interval` s; keeps (sent at, delay)."""

    def __init__(self, port, interval=0.005):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((PROBER, 0))
        self.sock.settimeout(0.5)
        self.port, self.interval = port, interval
        self.samples = []  # (sent at, reply delay or None)
        self.stop = threading.Event()

    def run(self):
        n = 0
        own = self.sock.getsockname()[1]
        while not self.stop.is_set():
            n += 1
            data = ("OPTIONS sip:probe@bench.invalid SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKprobe%d\r\n"
                    "Max-Forwards: 0\r\nFrom: <sip:p@bench.invalid>;tag=p\r\nTo: <sip:probe@bench.invalid>\r\n"
                    "Call-ID: probe%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" % (PROBER, own, n, n)).encode()
            sent = time.monotonic()
            self.sock.sendto(data, (EDGE, self.port))
            delay = None
            try:
                while delay is None:
                    reply = self.sock.recv(65535)
                    if b"probe%d\r\n" % n in reply:
                        delay = time.monotonic() - sent
            except socket.timeout:
                pass
            self.samples.append((sent, delay))
            time.sleep(max(0.0, self.interval - (time.monotonic() - sent)))

    def worst(self, start, end):
        window = [d for t, d in self.samples if start <= t <= end]
        lost = sum(1 for d in window if d is None)
        answered = sorted(d for d in window if d is not None)
        return (answered[-1] if answered else None), lost, len(window), (answered[len(answered) // 2] if answered else None)


class Watcher(threading.Thread):
    """Asks for `domain` every 10 ms until a request reaches `backend` (at most
    10 s after the play's end); `routed` is the monotonic time it did."""

    def __init__(self, port, domain, backend):
        super().__init__(daemon=True)
        self.port, self.domain, self.backend = port, domain, backend
        self.routed = None

    def run(self):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((PROBER, 0))
        own = sock.getsockname()[1]
        self.backend.settimeout(0.01)
        limit = time.monotonic() + 600
        n = 0
        try:
            while time.monotonic() < limit:
                n += 1
                sock.sendto(("OPTIONS sip:new@%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKnew%d\r\n"
                             "Max-Forwards: 70\r\nFrom: <sip:p@bench.invalid>;tag=n\r\nTo: <sip:new@%s>\r\n"
                             "Call-ID: new%d\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
                             % (self.domain, PROBER, own, n, self.domain, n)).encode(), (EDGE, self.port))
                try:
                    if self.domain.encode() in self.backend.recv(65535):
                        self.routed = time.monotonic()
                        return
                except socket.timeout:
                    continue
        finally:
            sock.close()


def reloads_alone(prober, workdir, db):
    """Reloads with nothing else running: one row, then every destination row at
    once; the worst reply delay while the router took each in (until its log
    says so, and 0.5 s more)."""
    worst = []
    for label, sql in (("one row", "UPDATE dispatcher SET priority = priority + 1 WHERE id = 1"),
                       ("all 20,000 destination rows", "UPDATE dispatcher SET priority = priority + 1")):
        reloads = (workdir / "sipedge.log").read_text().count("routing data reloaded")
        start = time.monotonic()
        with sqlite3.connect(str(db), timeout=30) as conn:
            conn.execute(sql)
        while (workdir / "sipedge.log").read_text().count("routing data reloaded") == reloads:
            if time.monotonic() - start > 30:
                raise SystemExit("the router did not reload within 30 s")
            time.sleep(0.01)
        time.sleep(0.5)
        delay, lost, sent, _median = prober.worst(start, time.monotonic())
        worst.append(delay)
        print("reload of %s alone: worst reply delay %.1f ms (%d probes, %d unanswered), in use %.2f s after the commit"
              % (label, delay * 1000, sent, lost, time.monotonic() - 0.5 - start))
    return worst


def rss_kb(pid):
    for line in Path("/proc/%d/status" % pid).read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def children(pid):
    try:
        return [int(p) for p in Path("/proc/%d/task/%d/children" % (pid, pid)).read_text().split()]
    except OSError:
        return []


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--tenants", type=int, default=10000)
    parser.add_argument("--workdir", help="keep the files here (default: a temporary directory)")
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-provision-")).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / "routing.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    subprocess.run([str(VENV_BIN / "sipedge"), "db", "init", "--db", str(db)], check=True, capture_output=True)
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((EDGE, 0))
    port = probe.getsockname()[1]
    probe.close()
    config = workdir / "sipedge.toml"
    config.write_text('[sip]\nlisten = ["udp:%s:%d"]\ndrain_timeout = 0\n[dispatcher]\nping_interval = 0\n'
                      '[database]\npath = "%s"\n[control]\nsocket = "%s"\n' % (EDGE, port, db, workdir / "ctl.sock"))
    log = open(workdir / "sipedge.log", "w", encoding="utf-8")  # pylint: disable=consider-using-with
    router = subprocess.Popen([str(VENV_BIN / "sipedge"), "run", "--config", str(config)],  # pylint: disable=consider-using-with
                              stderr=log, start_new_session=True)
    prober = Prober(port)
    backend = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    backend.bind((NEWBACKEND, 0))
    results = {}
    try:
        end = time.monotonic() + 10
        while "sipedge ready" not in (workdir / "sipedge.log").read_text() and time.monotonic() < end:
            time.sleep(0.05)
        prober.start()
        idle_from = time.monotonic()
        time.sleep(2.0)  # a baseline: the reply delay of an idle router on this machine as it is now
        idle_to = time.monotonic()
        base = tenants(args.tenants)
        print("tenants: %d (%d domains, %d destinations), inventory in %s" % (
            len(base), len(base), 2 * len(base), workdir), flush=True)
        inventory = write_inventory(workdir, db, base)
        start = time.monotonic()
        results["converge"], out = play(workdir, inventory)
        converged = time.monotonic()
        print("first converge:   %6.1f s  (rows: %s)" % (results["converge"], "/".join(counts(out))), flush=True)
        results["rerun"], out = play(workdir, inventory)
        print("rerun, no change: %6.1f s  (rows: %s)" % (results["rerun"], "/".join(counts(out))), flush=True)
        newcomer = {"name": "newcomer", "setid": 99999, "domains": ["newcomer.bench.invalid"],
                    "destinations": [{"uri": "sip:%s:%d" % (NEWBACKEND, backend.getsockname()[1])}]}
        write_inventory(workdir, db, base + [newcomer])
        changed_at = time.monotonic()
        watcher = Watcher(port, "newcomer.bench.invalid", backend)
        watcher.start()
        results["change"], out = play(workdir, inventory)
        ended = time.monotonic()
        print("one tenant added: %6.1f s  (rows: %s)" % (results["change"], "/".join(counts(out))), flush=True)
        watcher.join(12.0)
        if watcher.routed is None:
            print("the new tenant was not routed within 10 s of the play's end")
        else:
            results["routed"] = max(0.0, watcher.routed - ended)
            print("new tenant first routed %.2f s %s the play ended (%.2f s after it started)" % (
                abs(watcher.routed - ended), "after" if watcher.routed > ended else "before", watcher.routed - changed_at))
        time.sleep(1.0)
        idle_worst, _lost, idle_sent, idle_median = prober.worst(idle_from, idle_to)
        print("reply delay of the idle router: median %.2f ms, worst %.1f ms (%d probes)"
              % (idle_median * 1000, idle_worst * 1000, idle_sent))
        worst, lost, sent, median = prober.worst(start, converged)
        worst_change, lost_change, sent_change, _median = prober.worst(changed_at, time.monotonic())
        print("reply delay during the plays (ansible-playbook on the same 2 cores): median %.2f ms, worst %.1f ms "
              "during the converge (%d probes, %d unanswered), worst %.1f ms during the change (%d probes, "
              "%d unanswered)" % (median * 1000, worst * 1000, sent, lost, worst_change * 1000, sent_change,
                                  lost_change))
        results["stall_ms"] = max(reloads_alone(prober, workdir, db)) * 1000
        prober.stop.set()
        prober.join()
        workers = children(router.pid)
        print("router RSS with %d rows: main process %.1f MB, worker %s MB" % (
            3 * len(base) + 2, rss_kb(router.pid) / 1024, ", ".join("%.1f" % (rss_kb(w) / 1024) for w in workers)))
        reloads = [line for line in (workdir / "sipedge.log").read_text().splitlines() if "routing data reloaded" in line]
        print("router reloads seen: %d (last: %s)" % (len(reloads), reloads[-1] if reloads else "-"))
    finally:
        prober.stop.set()
        if router.poll() is None:
            router.send_signal(signal.SIGTERM)
            router.wait(timeout=15)
        log.close()
        backend.close()
    print()
    for key, target in TARGETS.items():
        value = results.get(key)
        verdict = "?" if value is None else ("met" if value <= target else "MISSED")
        print("%-10s %8s   target <= %s  %s" % (key, "-" if value is None else "%.2f" % value, target, verdict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
