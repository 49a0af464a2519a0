"""Throughput benchmark: sipedge against Kamailio 5.6 running the seed config.

For each router (sipedge first, then Kamailio, in the same invocation):

* start the router on ``<net>.1:5060`` with a fresh routing DB holding one
  domain (``bench.invalid``, never resolved) mapped to a set of two backends;
* start two SIPp UAS backends (``tests/e2e/scenarios/uas_answer.xml``, with
  ``-aa`` so that keep-alive OPTIONS are answered) on ``<net>.11`` / ``<net>.12``;
* run a short warm-up, then SIPp UACs (``tests/e2e/scenarios/uac_call.xml``:
  INVITE, 100/180/200, ACK and BYE through the proxy following Record-Route;
  ``--uacs`` of them, default 4, on ``<net>.21`` and up, sharing the rate) at
  rising call rates, each step bounded by ``-m rate*duration`` and ``-timeout``;
* read SIPp's final statistics (``-trace_stat`` CSV) and count every call that
  was created but did not end successfully as failed (a caller shed with 503
  counts against the step as well);
* measure the router's CPU time (utime+stime of every process in its session,
  from /proc, before and after each step) and its memory (VmHWM of each
  process, and the peak of the summed PSS sampled every 0.25 s);
* stop at the first step with >= 1 % failed calls (or whose calls could not be
  created at 95 % of the asked rate: the tester short of CPU, or SIPp's limit
  of open calls reached because the router answers too slowly), then try one
  step half-way between the last good rate and the failed one.

The highest good rate of each router is reported, and the last line is::

    ratio sipedge/kamailio = X.XX (sipedge N cps, kamailio M cps)

Everything listens on 127.0.0.0/8 only; every SIPp run is bounded in calls
and time, and every process this script starts is stopped by its PID at the
end (also on Ctrl-C).  See docs/benchmark.md.
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent                      # files/sipedge
REPO = PROJECT.parent.parent               # collection root
sys.path.insert(0, str(PROJECT))           # the test support package (files/sipedge/testsupport)

from testsupport import procs, routing  # noqa: E402
from testsupport.procs import session_pids  # noqa: E402
from testsupport.edge import Sipedge, sipedge_command  # noqa: E402
from testsupport.net import udp_free, wait_udp_bound  # noqa: E402

SCENARIOS = PROJECT / "tests" / "e2e" / "scenarios"
UAC_XML = SCENARIOS / "uac_call.xml"
UAC_SHED_XML = SCENARIOS / "uac_call_or_503.xml"  # the overload steps: a 503 is an outcome of its own
OVERLOAD = (1.25, 1.5)                              # overload steps, times the highest good rate
UAS_XML = SCENARIOS / "uas_answer.xml"
DOMAIN = "bench.invalid"                   # RFC 2606: never resolvable; looked up in the DB only
SETID = 10
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

# A proxy with several workers (Kamailio's 4 UDP children) may relay a 180 after
# the 200, and under load a backend sees INVITE retransmissions and repeated ACKs:
# all legal over UDP.  SIPp aborts a call on any message its scenario does not
# expect at that point; here such messages are counted and ignored instead.  A
# call still fails when its final response does not come (recv timeout 10 s, or
# UDP retransmission limit) or is not a 200.
TOLERANT = ["-default_behaviors", "all,-abortunexp"]

DEFAULT_RATES = [500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000]


def log(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- processes

class Procs:
    """Every process this script starts, so that each is stopped by its PID."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], logfile: Path, **kw) -> subprocess.Popen:
        p = procs.start(cmd, logfile, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, grace: float = 5.0) -> None:
        procs.stop(p, grace)
        self.procs = [(n, q) for n, q in self.procs if q is not p]

    def stop_all(self) -> None:
        for _name, p in reversed(list(self.procs)):
            self.stop(p)


PROCS = Procs()


# --------------------------------------------------------------------------- /proc

def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                st = f.read()
        except OSError:
            continue
        fields = st[st.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])   # utime, stime
    return total / CLK_TCK


def host_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return sum(v) - idle, sum(v)


def host_busy_pct(seconds: float = 1.0) -> float:
    b0, t0 = host_jiffies()
    time.sleep(seconds)
    b1, t1 = host_jiffies()
    return 100.0 * (b1 - b0) / max(1, t1 - t0)


def status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return status_kb(pid, "VmRSS")


class MemSampler(threading.Thread):
    """Samples the summed PSS and each process's VmHWM of a session."""

    def __init__(self, sid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.sid, self.interval = sid, interval
        self.peak_pss_kb = 0
        self.last_pss_kb = 0
        self.hwm_kb: dict[int, int] = {}
        self.cpu_s: dict[int, float] = {}      # last seen utime+stime per process
        self.nprocs = 0
        self._halt = threading.Event()

    def sample(self) -> None:
        pids = session_pids(self.sid)
        self.nprocs = max(self.nprocs, len(pids))
        self.last_pss_kb = sum(pss_kb(p) for p in pids)
        self.peak_pss_kb = max(self.peak_pss_kb, self.last_pss_kb)
        for p in pids:
            self.hwm_kb[p] = max(self.hwm_kb.get(p, 0), status_kb(p, "VmHWM"))
            c = cpu_seconds([p])
            if c:
                self.cpu_s[p] = c

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join(2)
        self.sample()


# --------------------------------------------------------------------------- SIPp

def sipp_bin() -> str:
    b = shutil.which("sipp")
    if not b:
        raise SystemExit("bench: sipp not found (apt-get install sip-tester)")
    return b


def start_uas(name: str, addr: str, port: int, workdir: Path) -> subprocess.Popen:
    cmd = [sipp_bin(), "-sf", str(UAS_XML), "-aa", "-i", addr, "-p", str(port), "-nostdin",
           *TOLERANT,
           "-trace_err", "-error_file", str(workdir / f"{name}_errors.log")]
    p = PROCS.start(name, cmd, workdir / f"{name}.out")
    wait_udp_bound(addr, port, p, 5, f"SIPp UAS {name}")
    return p


def hms_to_ms(v: str) -> float:
    """SIPp's 'HH:MM:SS:uuuuuu' (or 'HH:MM:SS') to milliseconds."""
    parts = v.strip().split(":")
    try:
        h, m, s = int(parts[0]), int(parts[1]), int(parts[2])
        us = int(parts[3]) if len(parts) > 3 else 0
    except (ValueError, IndexError):
        return float("nan")
    return ((h * 60 + m) * 60 + s) * 1000 + us / 1000


@dataclass
class Step:
    rate: int
    calls: int = 0            # created by the UAC
    ok: int = 0
    failed: int = 0           # created - successful
    fail_pct: float = 100.0
    achieved_cps: float = 0.0
    retrans: int = 0
    rtt_ms: float = float("nan")   # INVITE -> 200, mean
    wall_s: float = 0.0
    cpu_s: float = 0.0
    cpu_pct: float = 0.0      # of one core
    cpu_us_per_call: float = 0.0
    host_pct: float = 0.0     # busy share of all CPUs (router + SIPp + anything else)
    uac_pct: float = 0.0      # SIPp UAC CPU, % of one core
    uas_pct: float = 0.0      # both SIPp UAS, % of one core
    other_pct: float = 0.0    # everything else on the machine, % of one core
    mem_mb: float = 0.0       # router's summed PSS at the end of the step
    passed: bool = False
    note: str = ""
    queue_ms: float = float("nan")  # sipedge: the longest a datagram waited in a receive queue
    shed: int = 0             # calls answered 503 (overload steps)
    shed_fast: int = 0        # of which within 100 ms
    goodput: float = 0.0      # calls completed per second of offered load


def run_uacs(edge: tuple[str, int], uacs: list[tuple[str, int]], rate: int, calls: int,
             timeout_s: int, workdir: Path, tag: str, scenario: Path = UAC_XML) -> list[list[dict]]:
    """Run one SIPp UAC per address in ``uacs`` at the same time, sharing ``rate``
    and ``calls``; wait for all; return each one's statistics rows."""
    runs = []
    for i, uac in enumerate(uacs):
        name = f"uac_{tag}" + (f"_{i + 1}" if len(uacs) > 1 else "")
        share_r = rate / len(uacs)
        share_m = calls // len(uacs) + (1 if i < calls % len(uacs) else 0)
        stf = workdir / f"{name}.csv"
        cmd = [sipp_bin(), "-sf", str(scenario), "-key", "domain", DOMAIN, "-s", "bench",
               "-i", uac[0], "-p", str(uac[1]), f"{edge[0]}:{edge[1]}",
               "-r", f"{share_r:g}", "-m", str(share_m),
               "-timeout", f"{timeout_s}s", "-timeout_error",
               "-cid_str", f"bench-{tag}-{i}-%u-%p@%s", *TOLERANT,
               "-nostdin", "-trace_stat", "-stf", str(stf), "-fd", "1",
               "-trace_err", "-error_file", str(workdir / f"{name}_errors.log")]
        if stf.exists():
            stf.unlink()
        runs.append((name, stf, PROCS.start(name, cmd, workdir / f"{name}.out")))
    out = []
    deadline = time.monotonic() + timeout_s + 20
    for name, stf, p in runs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for _name, _stf, q in runs:
                PROCS.stop(q)
            raise RuntimeError(f"SIPp UAC did not stop by itself within {timeout_s + 20} s")
        PROCS.procs = [(n, q) for n, q in PROCS.procs if q is not p]
        try:
            with open(stf, newline="") as f:
                rows = list(csv.DictReader(f, delimiter=";"))
        except FileNotFoundError:
            rows = []
        if not rows:
            tail = (workdir / f"{name}.out").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"SIPp UAC wrote no statistics (exit {p.returncode}):\n{tail}")
        out.append(rows)
    return out


def _epoch(v: str) -> float:
    """SIPp's time stamp 'YYYY-MM-DD<TAB>HH:MM:SS.us<TAB>epoch.us' -> epoch seconds."""
    try:
        return float(v.split()[-1])
    except (ValueError, IndexError):
        return float("nan")


def creation_rate(rows: list[dict]) -> float:
    """Calls/s at which SIPp created the step's calls: total created over the time
    until the last one was created (interpolated between the 1 s statistics rows).
    SIPp's own CallRate(C) divides by the whole run, the tail of slow calls included."""
    pts = []
    for r in rows:
        try:
            pts.append((_epoch(r["CurrentTime"]) - _epoch(r["StartTime"]),
                        int(r.get("OutgoingCall(C)") or 0)))
        except KeyError:
            continue
    if not pts or pts[-1][1] == 0:
        return 0.0
    total = pts[-1][1]
    prev = (0.0, 0)
    for t, n in pts:
        if n >= total:
            t_done = prev[0] + (t - prev[0]) * (total - prev[1]) / max(1, n - prev[1])
            return total / t_done if t_done > 0 else 0.0
        prev = (t, n)
    return 0.0


# --------------------------------------------------------------------------- routers

def sipedge_cmd(arg: str | None) -> list[str]:
    return arg.split() if arg else sipedge_command()[0]


def route_rows(backends: list[tuple[str, int]]) -> tuple[list, list]:
    """The one domain and its set of backends, as routing rows."""
    return [(DOMAIN, SETID, 1)], [(SETID, f"sip:{ip}:{port}", 0, 0) for ip, port in backends]


class SipedgeRouter:
    name = "sipedge"

    def __init__(self, cmd: list[str], edge: tuple[str, int], workdir: Path,
                 backends: list[tuple[str, int]], log_level: str | None,
                 workers: int | None = None, settings: dict | None = None) -> None:
        self.cmd, self.edge, self.workdir, self.backends = cmd, edge, workdir, backends
        self.log_level, self.workers, self.settings = log_level, workers, settings or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = workdir / "sipedge.log"

    def start(self) -> int:
        settings: dict = {section: dict(keys) for section, keys in self.settings.items()}
        if self.workers:
            settings.setdefault("sip", {})["workers"] = self.workers
        if self.log_level:
            settings.setdefault("log", {})["level"] = self.log_level
        domains, destinations = route_rows(self.backends)
        edge = self.sipedge = Sipedge(self.workdir, *self.edge, settings=settings, domains=domains,
                                      destinations=destinations, command=self.cmd).start(timeout=15)
        # started in a session of its own; stopped by its PID in stop()
        self.proc = edge.proc
        PROCS.procs.append(("sipedge", self.proc))
        self.log_path = edge.log_path
        return self.proc.pid

    def stop(self) -> None:
        if self.proc:
            PROCS.stop(self.proc)
            self.proc = None

    def dead(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def queue_ms(self) -> float:
        """The longest queue wait of a datagram since the last call (ctl stats resets it)."""
        try:
            return 1000 * self.sipedge.ctl("stats").get("queue_delay_max", float("nan"))
        except RuntimeError:
            return float("nan")

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


class KamailioRouter:
    name = "kamailio"

    def __init__(self, edge: tuple[str, int], workdir: Path,
                 backends: list[tuple[str, int]], shm_mb: int) -> None:
        sys.path.insert(0, str(REPO / "tests"))
        try:
            from kamailio.reference import Kamailio, prepare_db  # the conformance suite's
        finally:
            sys.path.pop(0)
        self._Kamailio, self._prepare_db = Kamailio, prepare_db
        self.edge, self.workdir, self.backends, self.shm_mb = edge, workdir, backends, shm_mb
        self.k = None

    def start(self) -> int:
        db = self.workdir / "routing.db"
        self._prepare_db(db)
        routing.fill(db, *route_rows(self.backends))
        self.k = self._Kamailio(self.edge[0], self.edge[1], db, self.workdir,
                                shm_mb=self.shm_mb, pkg_mb=16)
        self.k.start(timeout=15)
        # Kamailio.start() puts it in a session of its own; stopped by its PID in stop().
        PROCS.procs.append(("kamailio", self.k.proc))
        return self.k.pid

    def stop(self) -> None:
        if self.k:
            p = self.k.proc
            self.k.stop()
            PROCS.procs = [(n, q) for n, q in PROCS.procs if q is not p]
            self.k = None

    def dead(self) -> bool:
        return self.k is None or self.k.proc is None or self.k.proc.poll() is not None

    @staticmethod
    def queue_ms() -> float:
        return float("nan")  # not measured for Kamailio

    def log_tail(self) -> str:
        return self.k.log_text()[-2000:] if self.k else ""


# --------------------------------------------------------------------------- ramp

@dataclass
class Result:
    router: str
    steps: list[Step] = field(default_factory=list)
    best: int = 0
    nprocs: int = 0
    peak_pss_mb: float = 0.0
    max_hwm_mb: float = 0.0
    sum_hwm_mb: float = 0.0
    background_pct: float = 0.0   # host CPU busy before the router started
    cpu_by_process: list = field(default_factory=list)   # (pid, CPU seconds), whole run
    error: str = ""
    profile: dict = field(default_factory=dict)
    overload: list[Step] = field(default_factory=list)  # steps above the highest good rate


def measure_step(router_pid: int, uas_pids: list[int], edge, uacs, rate: int, duration: float,
                 workdir: Path, tag: str, scenario: Path = UAC_XML) -> Step:
    calls = max(1, int(rate * duration))
    timeout_s = int(duration) + 10
    pids = session_pids(router_pid)
    c0, u0, t0, h0 = cpu_seconds(pids), cpu_seconds(uas_pids), time.monotonic(), host_jiffies()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    runs = run_uacs(edge, uacs, rate, calls, timeout_s, workdir, tag, scenario)
    k1 = resource.getrusage(resource.RUSAGE_CHILDREN)      # the UACs, now reaped
    c1, u1, t1, h1 = (cpu_seconds(session_pids(router_pid) or pids), cpu_seconds(uas_pids),
                      time.monotonic(), host_jiffies())
    st = Step(rate=rate)
    last = [rows[-1] for rows in runs]

    def total(key: str) -> int:
        return sum(int(r.get(key) or 0) for r in last)

    st.calls = total("OutgoingCall(C)")
    st.shed = total("GenericCounter1(C)")   # a 503 ends a call "successfully" in SIPp's terms
    st.shed_fast = sum(total("ResponseTimeRepartition2_<%d" % ms) for ms in (10, 20, 50, 100))
    st.ok = total("SuccessfulCall(C)") - st.shed
    st.goodput = st.ok / (calls / rate)
    st.failed = max(st.calls - st.ok - st.shed, total("FailedCall(C)"))
    if st.calls < calls:   # calls never created (timeout) are failures too
        st.failed += calls - st.calls
    st.fail_pct = 100.0 * (st.failed + st.shed) / calls  # a caller shed with 503 has no call either
    st.achieved_cps = sum(creation_rate(rows) for rows in runs)
    st.retrans = total("Retransmissions(C)")
    rtts = [(hms_to_ms(r.get("ResponseTime1(C)", "")), int(r.get("SuccessfulCall(C)") or 0))
            for r in last]
    n_ok = sum(n for _rtt, n in rtts)
    st.rtt_ms = sum(v * n for v, n in rtts) / n_ok if n_ok else float("nan")
    st.wall_s = t1 - t0
    st.cpu_s = c1 - c0
    st.cpu_pct = 100.0 * st.cpu_s / st.wall_s if st.wall_s else 0.0
    st.cpu_us_per_call = 1e6 * st.cpu_s / st.ok if st.ok else float("nan")
    st.host_pct = 100.0 * (h1[0] - h0[0]) / max(1, h1[1] - h0[1])
    if st.wall_s:
        st.uac_pct = 100.0 * ((k1.ru_utime + k1.ru_stime) - (k0.ru_utime + k0.ru_stime)) / st.wall_s
        st.uas_pct = 100.0 * (u1 - u0) / st.wall_s
        st.other_pct = max(0.0, st.host_pct * NCPU - st.cpu_pct - st.uac_pct - st.uas_pct)
    st.passed = st.fail_pct < 1.0 and st.achieved_cps >= 0.95 * rate
    if st.fail_pct >= 1.0:
        st.note = ">=1% failed or shed"
    elif not st.passed:
        st.note = f"calls created at only {st.achieved_cps:.0f} cps"
    return st


def settle(router_pid: int, limit: float) -> float:
    """Wait (1 s at least, ``limit`` at most) until the router uses < 10% of a core:
    after an overloaded step its transactions keep retransmitting for up to 32 s,
    and the next step would pay for them."""
    t0 = time.monotonic()
    time.sleep(1.0)
    while time.monotonic() - t0 < limit:
        pids = session_pids(router_pid)
        c0 = cpu_seconds(pids)
        time.sleep(0.5)
        if cpu_seconds(pids) - c0 < 0.05:
            break
    return time.monotonic() - t0


def py_spy_start(pid: int, out: Path, seconds: int) -> subprocess.Popen | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        log("  (py-spy not installed: no profile; pip install py-spy)")
        return None
    cmd = [exe, "record", "--pid", str(pid), "--format", "raw", "--output", str(out),
           "--duration", str(seconds), "--rate", "200", "--nonblocking", "--subprocesses"]
    return PROCS.start("py-spy", cmd, out.with_suffix(".log"))


def _func(frame: str) -> str:
    """'name (path/file.py:123)' -> 'name (file.py)': aggregate by function, not line."""
    name, _sep, where = frame.partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    return f"{name} ({where})" if where else name


def summarize_profile(raw: Path, top: int = 25) -> dict:
    """Self and inclusive % per function from py-spy's collapsed-stack (raw) output."""
    self_c: collections.Counter = collections.Counter()
    incl_c: collections.Counter = collections.Counter()
    total = 0
    try:
        lines = raw.read_text(errors="replace").splitlines()
    except OSError:
        return {}
    for line in lines:
        stack, _sep, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        n = int(n)
        frames = [_func(f) for f in stack.split(";")]
        # drop the "process NNN:..." / thread frames py-spy puts first
        frames = [f for f in frames if not f.startswith(("process ", "thread "))] or frames
        total += n
        self_c[frames[-1]] += n
        for fr in set(frames):
            incl_c[fr] += n
    if not total:
        return {}
    return {"samples": total,
            "self": [(fn, 100.0 * c / total) for fn, c in self_c.most_common(top)],
            "inclusive": [(fn, 100.0 * c / total) for fn, c in incl_c.most_common(top)]}


def ramp(router, uas_pids: list[int], rates: list[int], duration: float, net: str, workdir: Path,
         deadline: float, refine: bool, profile_rate: int | None, n_uacs: int = 1) -> Result:
    res = Result(router.name)
    edge = (f"{net}.1", 5060)
    uacs = [(f"{net}.{21 + i}", 5060) for i in range(n_uacs)]
    idle_busy = host_busy_pct(1.0)
    res.background_pct = idle_busy
    log(f"\n=== {router.name}: starting on {edge[0]}:{edge[1]} (host busy before start: "
        f"{idle_busy:.0f}%{'; other work on this machine will skew the figures' if idle_busy > 10 else ''})")
    try:
        pid = router.start()
    except Exception as e:  # noqa: BLE001 - reported, the other router still runs
        res.error = f"could not start: {e}"
        log(f"  {res.error}")
        return res
    sampler = MemSampler(pid)
    sampler.start()
    try:
        warm = measure_step(pid, uas_pids, edge, uacs, 100, 2, workdir, "warmup")
        if warm.fail_pct > 0:
            res.error = (f"warm-up failed: {warm.failed}/{warm.calls} calls failed at 100 cps "
                         f"(see {workdir}/uac_warmup.out, {workdir}/uac_warmup_errors.log)")
            log(f"  {res.error}\n{router.log_tail()}")
            return res
        log(f"  warm-up ok ({warm.ok} calls, {warm.cpu_us_per_call:.0f} us CPU/call)")
        log(f"  {'rate':>6} {'calls':>6} {'failed':>6} {'shed':>5} {'fail%':>6} {'got cps':>8} "
            f"{'retr':>6} {'rtt ms':>7} {'cpu %':>6} {'us/call':>8} {'MB':>5} {'uac%':>5} "
            f"{'uas%':>5} {'other%':>6} {'queue ms':>8}")
        good = 0
        refined = not refine
        todo = list(rates)
        while todo:
            rate = todo.pop(0)
            after_failure = bool(res.steps) and not res.steps[-1].passed
            if time.monotonic() + duration + 12 + (20 if after_failure else 0) > deadline:
                log(f"  (time budget spent: stopping before {rate} cps)")
                break
            settle(pid, 20.0 if after_failure else 3.0)
            router.queue_ms()  # starts a new measurement
            prof = None
            if profile_rate and rate == profile_rate and router.name == "sipedge":
                prof = py_spy_start(pid, workdir / f"py-spy-{rate}.txt", int(duration))
            st = measure_step(pid, uas_pids, edge, uacs, rate, duration, workdir, f"r{rate}")
            if prof is not None:
                try:
                    prof.wait(15)
                except subprocess.TimeoutExpired:
                    pass
                PROCS.stop(prof)
                res.profile = summarize_profile(workdir / f"py-spy-{rate}.txt")
            sampler.sample()
            st.mem_mb = sampler.last_pss_kb / 1024
            st.queue_ms = router.queue_ms()
            res.steps.append(st)
            log(f"  {st.rate:>6} {st.calls:>6} {st.failed:>6} {st.shed:>5} {st.fail_pct:>6.2f} "
                f"{st.achieved_cps:>8.1f} {st.retrans:>6} {st.rtt_ms:>7.1f} {st.cpu_pct:>6.1f} "
                f"{st.cpu_us_per_call:>8.0f} {st.mem_mb:>5.0f} {st.uac_pct:>5.0f} {st.uas_pct:>5.0f} "
                f"{st.other_pct:>6.0f} {st.queue_ms:>8.1f}  {'ok' if st.passed else 'FAIL ' + st.note}")
            if router.dead():
                res.error = "router exited during the ramp"
                log(f"  {res.error}\n{router.log_tail()}")
                break
            if st.passed:
                good = max(good, rate)
                continue
            todo = []
            # one step half-way between the last good rate and the failed one
            mid = (good + (rate - good) // 2) // 50 * 50
            if not refined and good and good < mid < rate:
                todo, refined = [mid], True
        res.best = good
        for factor in OVERLOAD if good else ():
            rate = int(good * factor) // 50 * 50
            settle(pid, 20.0)
            router.queue_ms()
            st = measure_step(pid, uas_pids, edge, uacs, rate, duration, workdir, f"over{rate}", UAC_SHED_XML)
            st.queue_ms = router.queue_ms()
            res.overload.append(st)
            log(f"  overload {factor:g}x = {rate} cps: {st.ok} completed, {st.shed} shed with 503 "
                f"({st.shed_fast} within 100 ms), {st.failed} failed; goodput {st.goodput:.0f} cps "
                f"({100 * st.goodput / good:.0f}% of {good}); longest queue wait {st.queue_ms:.0f} ms")
            if router.dead():
                res.error = "router exited during the overload steps"
                break
    finally:
        sampler.stop()
        res.nprocs = sampler.nprocs
        res.peak_pss_mb = sampler.peak_pss_kb / 1024
        res.max_hwm_mb = max(sampler.hwm_kb.values(), default=0) / 1024
        res.sum_hwm_mb = sum(sampler.hwm_kb.values()) / 1024
        res.cpu_by_process = sorted(sampler.cpu_s.items(), key=lambda x: -x[1])
        router.stop()
    return res


# --------------------------------------------------------------------------- overhead

class Scraper(threading.Thread):
    """GET /metrics with credentials every `interval` s, as Prometheus would."""

    def __init__(self, url: str, auth: str, interval: float = 1.0) -> None:
        super().__init__(daemon=True)
        self.url, self.auth, self.interval = url, auth, interval
        self.stop_event, self.ok = threading.Event(), 0

    def run(self) -> None:
        import base64  # pylint: disable=import-outside-toplevel
        import urllib.request  # pylint: disable=import-outside-toplevel
        header = "Basic " + base64.b64encode(self.auth.encode()).decode()
        while not self.stop_event.wait(self.interval):
            request = urllib.request.Request(self.url, headers={"Authorization": header})
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    self.ok += answer.status == 200
            except OSError:
                pass


def overhead(a, backends, uas_pids, base: Path, rate: int, rounds: int = 4) -> None:
    """CPU per call at a fixed rate, without and with health checks (every
    destination pinged each second) and /metrics scraped each second.  The
    order alternates from round to round (plain first, then last): this
    machine drifts by several percent over a few minutes, which a fixed order
    would count as overhead."""
    from passlib.hash import sha512_crypt  # pylint: disable=import-outside-toplevel
    htpasswd = base / "admin.htpasswd"
    htpasswd.write_text("bench:%s\n" % sha512_crypt.hash("bench"))
    admin = f"{a.net}.1:9060"
    configs = {"plain": {"dispatcher": {"ping_interval": 0}},
               "health+metrics": {"dispatcher": {"ping_interval": 1.0},
                                  "admin": {"listen": admin, "htpasswd": str(htpasswd)}}}
    edge = (f"{a.net}.1", 5060)
    uacs = [(f"{a.net}.{21 + i}", 5060) for i in range(a.uacs)]
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    main_cpu: dict[str, list[float]] = {name: [] for name in configs}  # the main process: pings, scrapes
    log(f"\n=== sipedge: CPU per call at {rate} cps, without and with health checks and metrics "
        f"({rounds} rounds, the order alternating)")
    for round_no in range(rounds):
        for name, settings in list(configs.items())[::1 if round_no % 2 == 0 else -1]:
            wd = base / f"overhead-{name}-{round_no}"
            wd.mkdir(parents=True)
            router = SipedgeRouter(sipedge_cmd(a.sipedge), edge, wd, backends, a.sipedge_log_level,
                                   a.sipedge_workers, settings)
            pid = router.start()
            scraper = Scraper(f"http://{admin}/metrics", "bench:bench") if "admin" in settings else None
            try:
                if scraper:  # from the warm-up on: the one password verification (about 0.2 s of
                    scraper.start()  # CPU, then cached for a minute) is not counted in the step
                measure_step(pid, uas_pids, edge, uacs, 100, 2, wd, "warmup")
                main0 = cpu_seconds([pid])
                st = measure_step(pid, uas_pids, edge, uacs, rate, a.duration, wd, f"o{rate}")
                main_cpu[name].append(1e6 * (cpu_seconds([pid]) - main0) / max(1, st.ok))
            finally:
                if scraper:
                    scraper.stop_event.set()
                router.stop()
            cpu[name].append(st.cpu_us_per_call)
            log(f"  round {round_no + 1} {name:>15}: {st.cpu_us_per_call:.0f} us CPU/call "
                f"(main process {main_cpu[name][-1]:.1f}), {st.failed} failed"
                + (f", {scraper.ok} scrapes" if scraper else ""))
    plain, full = (statistics.mean(cpu[n]) for n in configs)
    main_plain, main_full = (statistics.mean(main_cpu[n]) for n in configs)
    log(f"overhead of health checks and metrics at {rate} cps: {plain:.0f} -> {full:.0f} us CPU per call "
        f"({100 * (full - plain) / plain:+.1f}%, means of {rounds} rounds); of which the main process, "
        f"where pings and scrapes run: {main_plain:.1f} -> {main_full:.1f} us "
        f"({100 * (main_full - main_plain) / plain:+.1f}% of the plain figure)")


# --------------------------------------------------------------------------- main

def print_table(res: Result) -> None:
    log(f"\n{res.router}: highest rate with < 1% of calls failed or shed: {res.best} cps")
    if res.error:
        log(f"  error: {res.error}")
    log(f"  host CPU busy before the run (other work): {res.background_pct:.0f}%")
    log(f"  {'rate':>6} {'calls':>7} {'failed':>7} {'shed':>5} {'fail%':>6} {'got cps':>8} {'rtt ms':>7} "
        f"{'CPU %':>6} {'us CPU/call':>11} {'MB':>5} {'uac%':>5} {'uas%':>5} {'other%':>6}  result")
    for s in res.steps:
        log(f"  {s.rate:>6} {s.calls:>7} {s.failed:>7} {s.shed:>5} {s.fail_pct:>6.2f} {s.achieved_cps:>8.1f} "
            f"{s.rtt_ms:>7.1f} {s.cpu_pct:>6.1f} {s.cpu_us_per_call:>11.0f} {s.mem_mb:>5.0f} "
            f"{s.uac_pct:>5.0f} "
            f"{s.uas_pct:>5.0f} {s.other_pct:>6.0f}  "
            f"{'ok' if s.passed else 'FAIL (' + s.note + ')'}")
    log(f"  processes: {res.nprocs}; peak memory: {res.peak_pss_mb:.1f} MB PSS (sum over "
        f"processes), VmHWM max {res.max_hwm_mb:.1f} MB / sum {res.sum_hwm_mb:.1f} MB")
    if len(res.cpu_by_process) > 1:
        log("  CPU seconds per process over the whole run: " + ", ".join(
            f"{pid}: {sec:.1f}" for pid, sec in res.cpu_by_process))
    for st in res.overload:
        admitted = st.calls - st.shed
        log(f"  overload {st.rate / res.best:.2f}x ({st.rate} cps offered): goodput {st.goodput:.0f} cps "
            f"= {100 * st.goodput / res.best:.0f}% of {res.best}; {st.shed} callers shed with 503 "
            f"({100 * st.shed_fast / st.shed if st.shed else 0:.0f}% of them within 100 ms); "
            f"{st.failed} of {admitted} admitted calls failed; CPU {st.cpu_us_per_call:.0f} us per completed call")
    if res.profile:
        log(f"  py-spy profile ({res.profile['samples']} samples while on CPU), by self time:")
        for fn, pct in res.profile["self"][:20]:
            log(f"    {pct:5.1f}%  {fn}")
        log("  by inclusive time:")
        for fn, pct in res.profile["inclusive"][:20]:
            log(f"    {pct:5.1f}%  {fn}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    ap.add_argument("--routers", default="sipedge,kamailio",
                    help="comma-separated, in order (default: sipedge,kamailio)")
    ap.add_argument("--rates", default=",".join(map(str, DEFAULT_RATES)),
                    help="call rates of the ramp, calls/s")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per step (default 10)")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="time budget of the ramps in seconds, shared equally by the routers (default 300); "
                         "the overload steps and --overhead come on top")
    ap.add_argument("--net", default=os.environ.get("SIPEDGE_BENCH_NET", "127.0.88"),
                    help="first three octets of the loopback addresses used (default 127.0.88)")
    ap.add_argument("--sipedge", default=os.environ.get("SIPEDGE_CMD"),
                    help="command that runs sipedge (default: sipedge beside this Python)")
    ap.add_argument("--sipedge-log-level", default=None,
                    help="[log] level for sipedge (default: the router's default)")
    ap.add_argument("--sipedge-workers", type=int, default=os.cpu_count() or 1,
                    help="[sip] workers for sipedge (default: one per CPU, the setting "
                         "docs/router.md recommends for throughput; the router's own default is 1)")
    ap.add_argument("--uacs", type=int, default=4,
                    help="SIPp UACs sharing each step's rate, on <net>.21, .22, ... (default 4: "
                         "traffic from several sources, as an edge sees it; one SIPp process "
                         "alone becomes the bottleneck near 3,000 calls/s)")
    ap.add_argument("--wait-idle", type=float, default=30.0, metavar="SECONDS",
                    help="before each router, wait up to SECONDS (default 30) for the machine to be "
                         "idle (< 15%% busy); the time is not taken from --budget")
    ap.add_argument("--kamailio-shm-mb", type=int, default=1024)
    ap.add_argument("--no-refine", action="store_true", help="no half-way step after a failure")
    ap.add_argument("--profile", type=int, default=None, metavar="RATE",
                    help="record sipedge with py-spy during the step at RATE")
    ap.add_argument("--overhead", type=int, default=2000, metavar="RATE",
                    help="also measure sipedge's CPU per call at RATE without and with health checks "
                         "and metrics (issue 10: at most 5%% more; default 2000, 0 skips it)")
    ap.add_argument("--workdir", default=None, help="keep logs here (default: a temp dir)")
    ap.add_argument("--json", default=None, help="also write the results as JSON")
    a = ap.parse_args(argv)

    if not a.net.startswith("127.") or a.net.count(".") != 2:
        raise SystemExit("bench: --net must be three octets inside 127.0.0.0/8, e.g. 127.0.88")
    rates = [int(x) for x in a.rates.split(",") if x]
    routers = [r.strip() for r in a.routers.split(",") if r.strip()]
    t_start = time.monotonic()
    base = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix="sipedge-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    log(f"bench: logs in {base}; {os.cpu_count()} CPUs; rates {rates}; {a.duration:g} s per step")
    backends = [(f"{a.net}.11", 5060), (f"{a.net}.12", 5060)]
    if not 1 <= a.uacs <= 20:
        raise SystemExit("bench: --uacs must be 1..20")
    uac_addrs = [(f"{a.net}.{21 + i}", 5060) for i in range(a.uacs)]
    for addr, port in [(f"{a.net}.1", 5060), *backends, *uac_addrs]:
        if not udp_free(addr, port):
            raise SystemExit(f"bench: udp {addr}:{port} is in use; choose another --net")

    def on_signal(signum, _frame):
        PROCS.stop_all()
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    results: dict[str, Result] = {}
    try:
        for name in routers:
            wd = base / name
            shutil.rmtree(wd, ignore_errors=True)      # a previous run's DB and logs
            wd.mkdir(parents=True)
            if a.wait_idle > 0:
                t_w = time.monotonic()
                busy = host_busy_pct(1.0)
                if busy > 15:
                    log(f"bench: the machine is {busy:.0f}% busy; waiting up to "
                        f"{a.wait_idle:g} s for it to be idle (--wait-idle)")
                while busy > 15 and time.monotonic() - t_w < a.wait_idle:
                    busy = host_busy_pct(2.0)
            uas = [start_uas(f"uas{i + 1}", ip, port, wd) for i, (ip, port) in enumerate(backends)]
            try:
                if name == "sipedge":
                    router = SipedgeRouter(sipedge_cmd(a.sipedge), (f"{a.net}.1", 5060), wd,
                                           backends, a.sipedge_log_level, a.sipedge_workers)
                elif name == "kamailio":
                    router = KamailioRouter((f"{a.net}.1", 5060), wd, backends, a.kamailio_shm_mb)
                else:
                    raise SystemExit(f"bench: unknown router {name!r}")
                # Each router's ramp gets the same share of the budget; its overload steps
                # and sipedge's overhead rounds come on top, never out of the next one's.
                r_deadline = time.monotonic() + a.budget / len(routers)
                results[name] = ramp(router, [p.pid for p in uas], rates, a.duration, a.net, wd, r_deadline,
                                     not a.no_refine, a.profile, a.uacs)
                if name == "sipedge" and a.overhead:
                    overhead(a, backends, [p.pid for p in uas], wd, a.overhead)
            finally:
                for p in uas:
                    PROCS.stop(p)
    except KeyboardInterrupt:
        log("bench: interrupted")
        return 130
    finally:
        PROCS.stop_all()

    log("\n================ results ================")
    for res in results.values():
        print_table(res)
    log(f"\nwhole run: {time.monotonic() - t_start:.0f} s; logs in {base}")
    if a.json:
        Path(a.json).write_text(json.dumps({k: asdict(v) for k, v in results.items()}, indent=2))
    s, k = results.get("sipedge"), results.get("kamailio")
    for res in results.values():
        for st in res.overload:
            log(f"overload {res.router} {st.rate / res.best:.2f}x: goodput {100 * st.goodput / res.best:.0f}% "
                f"of its best, shed {st.shed} ({st.shed_fast} within 100 ms), failed {st.failed}")
    if s and k:
        ratio = s.best / k.best if k.best else float("nan")
        log(f"ratio sipedge/kamailio = {ratio:.2f} (sipedge {s.best} cps, kamailio {k.best} cps)")
    return 0 if all(not r.error for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
