"""Fuzz a real ``sipedge run`` with mutated datagrams (fuzz_datagrams.py) and check
that it stays alive and answers, logs no traceback, drains to zero transactions,
and keeps its memory and open file descriptors flat.

    python fuzz_run.py --count 200000                # the long run (`make fuzz`)
    python fuzz_run.py --replay DIR/findings.jsonl   # a run's offending datagrams again

test_fuzz.py runs a short one with the same code.

Isolation: the whole run, the router included, happens in a network namespace of
its own that has nothing but loopback (testsupport.net), on 127.0.66.0/24.  A
mutated Via, Route or received= can make the router send anywhere; there, nowhere
but loopback can be reached and no name can be resolved.

Attribution: after every datagram another socket sends a Max-Forwards: 0 OPTIONS
and waits for the router's 483 (the "barrier").  The router (one worker) reads its
socket in order, so the datagram has been handled by then, and whatever the router logged
meanwhile is put down to that datagram (seed and index); the backend's answers to
what it forwarded are sent before a second barrier, so they count for that
datagram too.  The offending datagrams go to ``findings.jsonl`` in the work dir.
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import select
import socket
import sys
import tempfile
import time
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
if str(PROJECT) not in sys.path:       # run as a script: the test support package
    sys.path.insert(0, str(PROJECT))

from fuzz_datagrams import (BACKEND, CLIENT, CONTACT, CORPUS_DOMAIN, EDGE, PROBE_HOST,  # noqa: E402
                            TENANT, Datagram, Generator)
from testsupport import procs  # noqa: E402
from testsupport.edge import Sipedge  # noqa: E402
from testsupport.net import run_in_loopback_namespace  # noqa: E402
from testsupport.sip import Msg, Req, response_for  # noqa: E402

SETTINGS = {
    "sip": {"workers": 1},     # one process reads the socket: the barrier below relies on it
    "timers": {"fr_timer": 0.5, "fr_inv_timer": 1.0, "t1": 0.05, "t2": 0.2},  # transactions end fast
    "dispatcher": {"ping_interval": 1.0},   # health checks on: their transactions get fuzzed too
    "log": {"level": "info"},
}
# The longest a transaction may live after the last datagram: fr_inv_timer (1 s) to its
# 408, fr_timer (0.5 s) waiting for the ACK, then the 5 s that a finished transaction
# lingers (docs/router.md): 6.5 s, and room for a loaded machine.
DRAIN_LIMIT = 9.0
BARRIER_TIMEOUT = 5.0   # s for the router to handle one datagram (the machine is shared)
CHECK_TIMEOUT = 3.0     # s for a final reply to a well-formed OPTIONS through the router
# Resident memory may grow this much from the warm-up to the end: room for caches the
# router bounds by entries (8,192 short URIs are about 3 MB) and allocator noise.
RSS_MARGIN_KB = 8 * 1024
FD_MARGIN = 0              # open file descriptors may not grow at all
# Memory cannot be put down to one datagram (the allocator grows when it must, not when
# something is kept), so a memory failure keeps the datagrams that carry long unique
# values, at most this many, for a replay of each kind (--only long-method, ...).
LONG_VALUES = ("long-", "huge-value")
LONG_KEPT = 1000
ERROR_WORDS = ("Traceback", "internal error")


@dataclass
class Finding:
    check: str          # "error", "silent", "died", "unresponsive", "memory"
    index: int
    cls: str
    detail: str


@dataclass
class Report:
    seed: int
    count: int
    warmup: int
    workdir: Path
    sent: int = 0
    seconds: float = 0.0                # sending, without the waits for the drains
    stopped: str = ""                   # why sending stopped before `count`, if it did
    outcomes: Counter = field(default_factory=Counter)
    errors: list = field(default_factory=list)       # Finding: the router logged an error
    liveness: list = field(default_factory=list)     # Finding: it died, stalled or did not answer
    drained: bool = False
    idle_timers: int = 0                             # timers of the idle router (health checks)
    stats: dict = field(default_factory=dict)        # `sipedge ctl stats` after the drain
    warm: dict = field(default_factory=dict)         # /proc facts after the warm-up (drained)
    end: dict = field(default_factory=dict)          # /proc facts at the end (drained)
    long_values: int = 0                             # datagrams with long unique values, after the warm-up
    replay: Path | None = None

    @property
    def rss_growth_kb(self) -> int:
        return self.end.get("rss_kb", 0) - self.warm.get("rss_kb", 0)

    @property
    def fd_growth(self) -> int:
        return self.end.get("fds", 0) - self.warm.get("fds", 0)

    @property
    def memory_flat(self) -> bool:
        return bool(self.warm and self.end) and self.rss_growth_kb <= RSS_MARGIN_KB and self.fd_growth <= FD_MARGIN

    def transactions(self) -> dict:
        """What `sipedge ctl stats` said of transactions and timers after the drain."""
        return {k: v for k, v in self.stats.items() if k in ("server_transactions", "client_transactions", "timers", "error")}

    def where(self, f: Finding) -> str:
        return f"seed {self.seed} datagram #{f.index} ({f.cls})"

    def describe(self, findings: list, limit: int = 12) -> str:
        """The first findings one a line, then each kind of error: how many, and the
        mutations of those datagrams."""
        lines = [f"  {self.where(f)}: {_last_line(f)}" for f in findings[:limit]]
        if len(findings) > limit:
            lines.append(f"  ... and {len(findings) - limit} more")
        kinds: dict[str, list] = {}
        for f in findings:
            kinds.setdefault(re.sub(r"\d+", "N", _last_line(f)), []).append(f)
        lines.append("by kind (the mutations of those datagrams):")
        for kind, group in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
            labels = Counter(m for f in group for m in (f.cls.split("+")[1:] or ["none"]))
            lines.append(f"  {len(group)} x {kind}: " + ", ".join(f"{m} {c}" for m, c in labels.most_common(5)))
        return "\n".join(lines + [f"replay: {self.replay}"])

    def summary(self) -> str:
        rate = self.sent / self.seconds if self.seconds else 0.0
        out = [f"seed {self.seed}: {self.sent} of {self.count} datagrams in {self.seconds:.1f} s ({rate:.0f}/s)"
               + (f"; stopped: {self.stopped}" if self.stopped else ""),
               "outcomes: " + ", ".join(f"{k} {n}" for k, n in self.outcomes.most_common()),
               f"errors logged: {len(self.errors)}; liveness failures: {len(self.liveness)}",
               f"after the drain: {self.transactions()} ({'drained' if self.drained else 'NOT drained'}; "
               f"{self.idle_timers} timers when idle)",
               f"warm-up {self.warm} -> end {self.end}: RSS {self.rss_growth_kb:+d} kB "
               f"(margin {RSS_MARGIN_KB}), fds {self.fd_growth:+d} (margin {FD_MARGIN})"]
        if self.replay:
            out.append(f"offending datagrams: {self.replay}")
        return "\n".join(out)


def _last_line(f: Finding) -> str:
    return f.detail.strip().splitlines()[-1] if f.detail.strip() else f.check


def _udp(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _pending(sock: socket.socket) -> list[tuple[bytes, tuple]]:
    """Every datagram queued on a non-blocking socket."""
    out = []
    while True:
        try:
            out.append(sock.recvfrom(65535))
        except (BlockingIOError, InterruptedError):
            return out
        except OSError:     # an ICMP error surfacing: nothing to read
            return out


def answers(req: Msg) -> list[bytes]:
    """What a SIP server answers: 100, 180, 200 to INVITE, 200 to the rest, nothing to ACK."""
    if not req.ok or not req.is_request or req.method == "ACK":
        return []
    tag = "be%08x" % zlib.crc32((req.call_id or "").encode())
    contact = [("Contact", f"<{CONTACT}>")]
    if req.method == "INVITE":
        return [response_for(req, 100, "Trying"),
                response_for(req, 180, "Ringing", to_tag=tag, extra=contact, copy_rr=True),
                response_for(req, 200, "OK", to_tag=tag, extra=contact, copy_rr=True)]
    return [response_for(req, 200, "OK", to_tag=tag, extra=contact, copy_rr=True)]


class Driver:
    """The run's sockets (client, backend, probe) around a running router."""

    def __init__(self, edge: Sipedge):
        self.edge = edge
        self.pids: list[int] = []       # the router's processes (a main one and its workers, or one)
        self.client = _udp(*CLIENT)
        self.backend = _udp(*BACKEND)
        self.probe = _udp(PROBE_HOST, 0)
        self.forwarded: deque = deque(maxlen=32)   # requests the router forwarded: to answer again
        self.branches: deque = deque(maxlen=32)
        self.log_offset = 0
        self.probes = 0
        self.step = {"forwarded": False, "replies": [], "answered": 0}

    def close(self) -> None:
        for sock in (self.client, self.backend, self.probe):
            sock.close()

    # -- traffic ---------------------------------------------------------------
    def send(self, d: Datagram) -> None:
        self.step = {"forwarded": False, "replies": [], "answered": 0}
        try:
            (self.backend if d.source == "backend" else self.client).sendto(d.data, EDGE)
        except OSError as exc:
            self.step["replies"].append(f"not sent ({exc.strerror})")

    def outcome(self) -> str:
        if self.step["forwarded"]:
            return "forwarded"
        replies = self.step["replies"]
        return f"reply {replies[0]}" if replies else "no reply"

    def serve(self, sock, data: bytes, src) -> None:
        if sock is self.client:
            m = Msg(data)
            self.step["replies"].append(m.code if m.code is not None else "(not a response)")
        elif sock is self.backend and not data.startswith(b"SIP/2.0 "):
            req = Msg(data)
            self.step["forwarded"] = True
            if req.top_branch not in self.branches:
                self.branches.append(req.top_branch)
                self.forwarded.append(data)
            for answer in answers(req):
                self.backend.sendto(answer, src)
                self.step["answered"] += 1

    def serve_pending(self) -> None:
        for sock in (self.client, self.backend):
            for data, src in _pending(sock):
                self.serve(sock, data, src)

    def wait_final(self, call_id: str | None, timeout: float) -> Msg | None:
        """Serve the sockets until the probe socket gets a final reply for ``call_id``
        (with None: for ``timeout`` seconds)."""
        end = time.monotonic() + timeout
        while (left := end - time.monotonic()) > 0:
            readable, _w, _x = select.select([self.probe, self.client, self.backend], [], [], left)
            for sock in readable:
                for data, src in _pending(sock):
                    if sock is not self.probe:
                        self.serve(sock, data, src)
                        continue
                    m = Msg(data)
                    if call_id is not None and m.call_id == call_id and m.code is not None and m.code >= 200:
                        return m
        return None

    def probe_request(self, kind: str, max_forwards: int) -> tuple[str, bytes]:
        self.probes += 1
        call_id = f"{kind}-{self.probes}"
        port = self.probe.getsockname()[1]
        return call_id, bytes(Req("OPTIONS", f"sip:probe@{TENANT}", [
            ("Via", f"SIP/2.0/UDP {PROBE_HOST}:{port};branch=z9hG4bK{call_id};rport"),
            ("Max-Forwards", str(max_forwards)), ("From", f"<sip:probe@{TENANT}>;tag=p{self.probes}"),
            ("To", f"<sip:probe@{TENANT}>"), ("Call-ID", call_id), ("CSeq", "1 OPTIONS")]))

    def barrier(self) -> bool:
        """The router's 483 to a Max-Forwards: 0 OPTIONS came: all sent before is handled."""
        call_id, data = self.probe_request("barrier", 0)
        self.probe.sendto(data, EDGE)
        return self.wait_final(call_id, BARRIER_TIMEOUT) is not None

    def settle(self) -> bool:
        """Barriers until the router has handled the datagram and the backend's answers
        to what it forwarded; False when it stopped answering."""
        for _round in range(4):
            self.step["answered"] = 0
            if not self.barrier():
                return False
            self.serve_pending()
            if not self.step["answered"]:
                return True
        return True

    def responsive(self) -> bool:
        """A well-formed OPTIONS to the tenant gets a final reply through the router."""
        call_id, data = self.probe_request("check", 70)
        self.probe.sendto(data, EDGE)
        return self.wait_final(call_id, CHECK_TIMEOUT) is not None

    def facts(self) -> dict:
        """Open files and resident memory of all the router's processes."""
        return procs.total_facts(self.pids)

    def drain(self, max_timers: int | None) -> tuple[bool, dict]:
        """Serve the sockets and ask `sipedge ctl stats` until no transaction and at
        most ``max_timers`` timers are left (at most DRAIN_LIMIT s)."""
        last: dict = {}

        def quiet() -> bool:
            self.wait_final(None, 0.2)      # answer the health checks meanwhile
            last.clear()
            try:
                last.update(self.edge.ctl("stats"))
            except RuntimeError as exc:
                last["error"] = str(exc)
                return False
            if "server_transactions" not in last:   # the answer lacks a worker's counts
                last["error"] = "sipedge ctl stats gave no transaction counts"
                return False
            return (last["server_transactions"] == 0 and last["client_transactions"] == 0
                    and (max_timers is None or last["timers"] <= max_timers))
        return bool(procs.poll(quiet, DRAIN_LIMIT, interval=0)), last

    # -- the router's log ----------------------------------------------------------
    def new_error_lines(self) -> str:
        """What the router logged since the last call, if it holds an error."""
        with open(self.edge.log_path, "rb") as f:
            f.seek(self.log_offset)
            text = f.read()
        end = text.rfind(b"\n") + 1          # whole lines only
        self.log_offset += end
        # NOTICE and WARNING lines quote the sender's bytes (a domain): never an error
        own = "\n".join(line for line in text[:end].decode("utf-8", "replace").splitlines()
                        if not line.startswith(("NOTICE ", "WARNING ", "INFO ", "DEBUG ")))
        return own if any(word in own for word in ERROR_WORDS) else ""


def _write_findings(path: Path, seed: int, rows: list[tuple[Datagram, str, str]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for d, check, detail in rows:
            f.write(json.dumps({"seed": seed, "index": d.index, "class": d.cls, "source": d.source,
                                "check": check, "detail": detail,
                                "data": base64.b64encode(d.data).decode()}) + "\n")


def load_findings(path, only: str = "") -> list[Datagram]:
    """The datagrams of a findings file, in their order, each once; with ``only``, those
    whose class names that mutation (e.g. long-method)."""
    seen, out = set(), []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if only and only not in [m.split("(")[0] for m in row["class"].split("+")]:
            continue
        if row["index"] not in seen:
            seen.add(row["index"])
            out.append(Datagram(row["index"], row["source"], row["class"], base64.b64decode(row["data"])))
    return out


class _Run:
    """One run inside the namespace: the router, the driver, and what was found."""

    def __init__(self, workdir: Path, seed: int, count: int, warmup: int, rss_limit_kb: int):
        self.report = Report(seed, count, warmup, workdir)
        self.rss_limit_kb = rss_limit_kb
        self.edge = Sipedge(workdir, *EDGE, settings=SETTINGS, domains=[(TENANT, 10), (CORPUS_DOMAIN, 10)],
                            destinations=[(10, f"sip:{BACKEND[0]}:{BACKEND[1]}")])
        self.drv = Driver(self.edge)    # the backend listens before the router's first health check
        self.offending: list[tuple[Datagram, str, str]] = []
        self.last: list[Datagram] = []  # the latest datagrams, kept when the router stops answering
        self.long_values: list[Datagram] = []   # kept for a memory failure
        self.rss = 0

    def start(self) -> None:
        self.edge.start()
        self.drv.pids = procs.session_pids(self.edge.pid)
        self.report.idle_timers = self.drv.drain(None)[1].get("timers", 0)   # what the idle router keeps
        if self.report.warmup == 0:
            self.report.warm = self.drv.facts()
        self.rss = self.drv.facts().get("rss_kb", 0)

    def step(self, d: Datagram, after_warmup: bool) -> bool:
        """Send one datagram and check what followed; False when the run must stop."""
        report, drv = self.report, self.drv
        self.last = (self.last + [d])[-5:]
        drv.send(d)
        settled = drv.settle()
        report.sent += 1
        report.outcomes[drv.outcome()] += 1
        logged = drv.new_error_lines()
        if logged:
            report.errors.append(Finding("error", d.index, d.cls, logged))
            self.offending.append((d, "error", logged))
        if not settled:
            check = "silent" if self.edge.alive() else "died"
            report.liveness.append(Finding(check, d.index, d.cls, f"no answer within {BARRIER_TIMEOUT} s "
                                           f"after this datagram ({check})"))
            self.offending += [(x, check, "") for x in self.last]
            report.stopped = f"the router {'stopped answering' if check == 'silent' else 'died'}"
            return False
        if after_warmup and any(m.startswith(LONG_VALUES) for m in d.cls.split("+")[1:]):
            report.long_values += 1
            if len(self.long_values) < LONG_KEPT:
                self.long_values.append(d)
        self.rss = rss = drv.facts().get("rss_kb", self.rss)
        if rss > self.rss_limit_kb:
            report.stopped = f"the router's RSS passed {self.rss_limit_kb} kB"
            return False
        return True

    def check_responsive(self, d: Datagram) -> None:
        if not self.drv.responsive():
            self.report.liveness.append(Finding("unresponsive", d.index, d.cls, "a well-formed OPTIONS got no "
                                                f"final reply within {CHECK_TIMEOUT} s"))
            self.offending += [(x, "unresponsive", "") for x in self.last]

    def baseline(self) -> None:
        """The end of the warm-up: every transaction gone, then the memory baseline."""
        self.drv.drain(self.report.idle_timers)
        self.report.warm = self.drv.facts()
        self.rss = self.report.warm.get("rss_kb", self.rss)

    def finish(self) -> Report:
        report = self.report
        try:
            if self.edge.alive():
                report.drained, report.stats = self.drv.drain(report.idle_timers)
                report.end = self.drv.facts()
        finally:
            self.edge.stop()
            self.drv.close()
        if not report.memory_flat:
            self.offending += [(d, "memory", "a long unique value after the warm-up") for d in self.long_values]
        if self.offending:
            report.replay = report.workdir / "findings.jsonl"
            _write_findings(report.replay, report.seed, self.offending)
        return report


def _fuzz(workdir: Path, seed: int, count: int, warmup: int, probe_every: int, budget: float,
          rss_limit_kb: int, datagrams: list | None, progress) -> Report:
    gen = Generator(seed)
    run = _Run(workdir, seed, count, warmup, rss_limit_kb)
    try:
        run.start()
        t0 = time.monotonic()
        for i in range(count):
            if time.monotonic() - t0 > budget:
                run.report.stopped = f"time budget of {budget:g} s spent"
                break
            d = datagrams[i] if datagrams is not None else gen.datagram(i, run.drv.forwarded)
            if not run.step(d, after_warmup=i >= warmup):
                break
            if (i + 1) % probe_every == 0:
                run.check_responsive(d)
            if i + 1 == warmup:
                waited = time.monotonic()
                run.baseline()
                t0 += time.monotonic() - waited      # the drain is not sending time
            if progress and (i + 1) % 10000 == 0:
                progress(f"{i + 1} datagrams, {(i + 1) / (time.monotonic() - t0):.0f}/s, "
                         f"RSS {run.rss} kB, errors {len(run.report.errors)}")
        run.report.seconds = time.monotonic() - t0
    finally:
        report = run.finish()
    return report


def run(workdir, *, seed: int, count: int, warmup: int, probe_every: int = 100, budget: float = 120.0,
        rss_limit_mb: int = 1024, datagrams: list | None = None, progress=None) -> Report:
    """Start a router and fuzz it, all inside a loopback-only network namespace."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    return run_in_loopback_namespace(
        lambda: _fuzz(workdir, seed, count, warmup, probe_every, budget, rss_limit_mb * 1024, datagrams, progress),
        timeout=budget + 4 * DRAIN_LIMIT + 60)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--seed", type=int, default=9)
    ap.add_argument("--count", type=int, default=200_000, help="datagrams to send (default 200,000)")
    # The router's caches bounded by entries fill up over about 100,000 datagrams (measured):
    # the long run's baseline comes after them.
    ap.add_argument("--warmup", type=int, default=100_000, help="datagrams before the memory baseline (default 100,000)")
    ap.add_argument("--probe-every", type=int, default=1000, help="a full OPTIONS check every N datagrams")
    ap.add_argument("--budget", type=float, default=1200.0, help="seconds of sending at most (default 1200)")
    ap.add_argument("--rss-limit-mb", type=int, default=1024, help="stop when the router holds more (default 1024)")
    ap.add_argument("--out", default=None, help="work dir: config, DB, router log, findings.jsonl")
    ap.add_argument("--replay", default=None, help="send the datagrams of a findings.jsonl instead")
    ap.add_argument("--only", default="", help="with --replay: only datagrams with this mutation (e.g. long-method)")
    a = ap.parse_args(argv)
    workdir = Path(a.out or tempfile.mkdtemp(prefix="sipedge-fuzz-"))
    datagrams = load_findings(a.replay, a.only) if a.replay else None
    count = len(datagrams) if datagrams is not None else a.count
    warmup = 0 if datagrams is not None else min(a.warmup, count)
    print(f"fuzz: seed {a.seed}, {count} datagrams, work dir {workdir}", flush=True)
    report = run(workdir, seed=a.seed, count=count, warmup=warmup, probe_every=a.probe_every, budget=a.budget,
                 rss_limit_mb=a.rss_limit_mb, datagrams=datagrams, progress=lambda m: print("  " + m, flush=True))
    print(report.summary())
    if report.errors:
        print("errors:\n" + report.describe(report.errors))
    if report.liveness:
        print("liveness:\n" + report.describe(report.liveness))
    if not report.memory_flat:
        print(f"memory: {report.long_values} datagrams with long unique values after the warm-up; replay "
              f"those of one kind with --replay {report.replay} --only long-method (long-ruri, long-header-name, ...)")
    ok = not report.errors and not report.liveness and report.drained and report.memory_flat and not report.stopped
    print("fuzz: " + ("PASSED" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
