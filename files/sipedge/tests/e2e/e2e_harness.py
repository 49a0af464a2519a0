"""Real-socket harness for the end-to-end tests: routers, SIPp peers, SIP traces.

Everything binds to 127.0.0.0/8 only (``SIPEDGE_E2E_NET``, default ``127.0.77``;
one address per role, ports picked free at start).  Every process started here
is kept with its PID and stopped by that PID; every SIPp run is bounded in
calls (``-m``) and time (``-timeout`` with ``-timeout_error``: SIPp 3.6 ignores a
bare ``-timeout`` while calls are still open) and by a subprocess timeout.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

from testsupport import procs, routing, sip
from testsupport.edge import Sipedge
from testsupport.net import free_udp_port, wait_udp_bound

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
REPO = HERE.parents[3]                      # files/sipedge/tests/e2e -> collection root
NET = os.environ.get("SIPEDGE_E2E_NET", "127.0.77")
if not re.fullmatch(r"127\.\d{1,3}\.\d{1,3}", NET):
    raise RuntimeError("SIPEDGE_E2E_NET must be three octets inside 127.0.0.0/8, e.g. 127.0.77")


def addr(host_octet: int) -> str:
    return f"{NET}.{host_octet}"


# --------------------------------------------------------------------------- SIP text

class Msg(sip.Msg):
    """One SIP message as SIPp logged it: the shared parser plus its direction."""

    def __init__(self, direction: str, text: str):
        super().__init__(text.encode("utf-8", "replace"))
        self.direction = direction        # "recv" or "sent"
        self.text = text

    @property
    def status(self) -> int:
        return self.code or 0


# the tests read Via and URI parts through this module
via_sent_by, via_branch, uri_hostport = sip.via_sent_by, sip.via_branch, sip.uri_hostport


_SEP = re.compile(r"^-{20,} \d{4}-\d\d-\d\d [\d:.]+\s*$", re.M)


def read_trace(path: Path) -> list[Msg]:
    """Parse a SIPp -trace_msg file into messages (oldest first)."""
    try:
        text = path.read_text(errors="replace")
    except FileNotFoundError:
        return []
    msgs = []
    for chunk in _SEP.split(text):
        chunk = chunk.lstrip("\n")
        m = re.match(r"(UDP|TCP) message (received|sent) (?:\[\d+\] bytes|\(\d+ bytes\))\s*:\s*\n\n?",
                     chunk)
        if not m:
            continue
        body = chunk[m.end():].strip("\n")
        if body:
            msgs.append(Msg("recv" if m.group(2) == "received" else "sent", body))
    return msgs


# --------------------------------------------------------------------------- SIPp

def sipp_bin() -> str | None:
    return shutil.which("sipp")


@dataclass
class Backend:
    """A SIPp UAS standing in for an Asterisk."""
    name: str
    host: str
    port: int
    scenario: str
    workdir: Path
    proc: subprocess.Popen | None = None

    @property
    def trace(self) -> Path:
        return self.workdir / f"{self.name}.msg"

    @property
    def uri(self) -> str:
        return f"sip:{self.host}:{self.port}"

    def start(self) -> "Backend":
        cmd = [sipp_bin(), "-sf", str(SCENARIOS / self.scenario), "-aa",
               "-i", self.host, "-p", str(self.port), "-nostdin",
               "-trace_msg", "-message_file", str(self.trace),
               "-trace_err", "-error_file", str(self.workdir / f"{self.name}_errors.log")]
        self.proc = procs.start(cmd, self.workdir / f"{self.name}.out", cwd=self.workdir)
        wait_udp_bound(self.host, self.port, self.proc, 5, f"SIPp UAS {self.name}")
        return self

    def stop(self) -> None:
        procs.stop(self.proc)

    def received(self, tag_or_call_id: str) -> list[Msg]:
        """Requests and responses this backend received for one Call-ID, or for every
        Call-ID of a UAC run with that tag (``<tag>-<n>-<pid>@<ip>``)."""
        prefix = tag_or_call_id + "-"
        return [m for m in read_trace(self.trace) if m.direction == "recv"
                and (m.call_id == tag_or_call_id or (m.call_id or "").startswith(prefix))]


@dataclass
class UacRun:
    ok: int
    failed: int
    created: int
    returncode: int
    messages: list[Msg]
    out: str
    errors: str

    def describe(self) -> str:
        return (f"SIPp UAC: {self.ok} ok, {self.failed} failed of {self.created} created, exit "
                f"{self.returncode}\n--- errors ---\n{self.errors[-3000:]}\n--- screen ---\n"
                f"{self.out[-2500:]}")


def run_uac(workdir: Path, scenario: str, edge: tuple[str, int], *, domain: str, tag: str,
            calls: int, rate: float = 20, user: str = "alice", timeout: float = 15) -> UacRun:
    """Run a SIPp UAC (``calls`` calls, Call-IDs ``<tag>-<n>-<pid>@<ip>``) and wait for it."""
    host = addr(100)
    port = free_udp_port(host)
    trace = workdir / f"uac-{tag}.msg"
    stf = workdir / f"uac-{tag}.csv"
    err = workdir / f"uac-{tag}_errors.log"
    cmd = [sipp_bin(), "-sf", str(SCENARIOS / scenario), "-key", "domain", domain, "-s", user,
           "-i", host, "-p", str(port), f"{edge[0]}:{edge[1]}",
           "-r", str(rate), "-m", str(calls), "-l", str(max(1, calls)),
           "-timeout", f"{int(timeout)}s", "-timeout_error",
           "-cid_str", f"{tag}-%u-%p@%s", "-nostdin",
           "-trace_msg", "-message_file", str(trace),
           "-trace_stat", "-stf", str(stf), "-fd", "1",
           "-trace_err", "-error_file", str(err)]
    r = subprocess.run(cmd, cwd=workdir, stdin=subprocess.DEVNULL, capture_output=True, check=False,
                       text=True, errors="replace", timeout=timeout + 15)
    rows = []
    if stf.exists():
        with open(stf, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=";"))
    last = rows[-1] if rows else {}
    ok = int(last.get("SuccessfulCall(C)") or 0)
    created = int(last.get("OutgoingCall(C)") or 0)
    return UacRun(ok=ok, failed=calls - ok, created=created, returncode=r.returncode,
                  messages=read_trace(trace), out=r.stdout + r.stderr,
                  errors=err.read_text(errors="replace") if err.exists() else "")


# --------------------------------------------------------------------------- raw UDP

def raw_request(method: str, domain: str, local: tuple[str, int], *, call_id: str | None = None,
                user: str = "probe", user_agent: str = "sipedge-e2e-probe") -> bytes:
    call_id = call_id or f"raw-{uuid.uuid4().hex}@{local[0]}"
    return bytes(sip.Req(method, f"sip:{user}@{domain}", [
        ("Via", f"SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bK{uuid.uuid4().hex[:16]}"),
        ("Max-Forwards", "70"),
        ("From", f"<sip:caller@{local[0]}>;tag={uuid.uuid4().hex[:8]}"),
        ("To", f"<sip:{user}@{domain}>"),
        ("Call-ID", call_id),
        ("CSeq", f"1 {method}"),
        ("Contact", f"<sip:caller@{local[0]}:{local[1]}>"),
        ("User-Agent", user_agent)]))


# --------------------------------------------------------------------------- routers

ROUTES = {
    # domain: (setid, enabled)
    "tenant-a.test": (10, 1),
    "tenant-b.test": (20, 1),
    "ring.test": (30, 1),
    "disabled.test": (10, 0),
    "late.test": (20, 0),      # enabled by a test while the router runs
}


db_execute = routing.execute


def route_rows(sets: dict[int, list[str]]) -> tuple[list, list]:
    """ROUTES and ``sets`` ({setid: [uri]}) as routing rows."""
    return ([(d, setid, enabled) for d, (setid, enabled) in ROUTES.items()],
            [(setid, uri, 0, 0) for setid, uris in sets.items() for uri in uris])


class Router:
    """The router under test; ``kind`` 'sipedge' (default) or 'kamailio' (reference)."""

    def __init__(self, kind: str, workdir: Path, sets: dict[int, list[str]]) -> None:
        self.kind = kind
        self.workdir = workdir
        self.sets = sets
        self.host = addr(1)
        self.port = free_udp_port(self.host)
        self.db = workdir / "routing.db"
        self.log_path = workdir / f"{kind}.log"
        self.proc: subprocess.Popen | None = None
        self._kamailio = None

    @property
    def edge(self) -> tuple[str, int]:
        return self.host, self.port

    def start(self) -> "Router":
        domains, destinations = route_rows(self.sets)
        if self.kind == "kamailio":
            sys.path.insert(0, str(REPO / "tests"))
            try:
                from kamailio.reference import Kamailio, prepare_db
            finally:
                sys.path.pop(0)
            prepare_db(self.db)
            routing.fill(self.db, domains, destinations)
            self._kamailio = Kamailio(self.host, self.port, self.db, self.workdir)
            self._kamailio.start(timeout=15)
            self.proc = self._kamailio.proc
            self.log_path = self._kamailio.log_path
            return self
        edge = Sipedge(self.workdir, self.host, self.port, settings={"log": {"level": "info"}},
                       domains=domains, destinations=destinations).start()
        self.db, self.log_path, self.proc = Path(edge.db), edge.log_path, edge.proc
        return self

    def stop(self) -> None:
        if self._kamailio is not None:
            self._kamailio.stop()
        else:
            procs.stop(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
