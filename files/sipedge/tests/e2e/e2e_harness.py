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
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
REPO = HERE.parents[3]                      # files/sipedge/tests/e2e -> collection root
NET = os.environ.get("SIPEDGE_E2E_NET", "127.0.77")
if not re.fullmatch(r"127\.\d{1,3}\.\d{1,3}", NET):
    raise RuntimeError("SIPEDGE_E2E_NET must be three octets inside 127.0.0.0/8, e.g. 127.0.77")

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "m": "contact",
           "l": "content-length", "c": "content-type", "k": "supported", "s": "subject",
           "e": "content-encoding", "o": "event", "r": "refer-to", "b": "referred-by",
           "x": "session-expires", "u": "allow-events", "a": "accept-contact",
           "j": "reject-contact", "d": "request-disposition", "y": "identity"}


def addr(host_octet: int) -> str:
    return f"{NET}.{host_octet}"


def free_udp_port(host: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def udp_bound(host: str, port: int) -> bool:
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(host), "little"), port)
    with open("/proc/net/udp") as f:
        return any(line.split()[1] == want for line in f.readlines()[1:])


def wait_bound(host: str, port: int, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before binding {host}:{port}")
        if udp_bound(host, port):
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what} did not bind udp {host}:{port} within {timeout} s")


def stop_process(p: subprocess.Popen | None, grace: float = 5.0) -> None:
    """SIGTERM the process we started (by its PID), SIGKILL it after ``grace`` s."""
    if p is None or p.poll() is not None:
        return
    try:
        p.send_signal(signal.SIGTERM)
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(5)
    except ProcessLookupError:
        pass


# --------------------------------------------------------------------------- SIP text

@dataclass
class Msg:
    """One SIP message as SIPp logged it."""
    direction: str                # "recv" or "sent"
    text: str
    first: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        head = self.text.replace("\r\n", "\n").split("\n\n", 1)[0]
        lines = head.split("\n")
        self.first = lines[0].strip()
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and self.headers:      # folded line
                n, v = self.headers[-1]
                self.headers[-1] = (n, v + " " + line.strip())
                continue
            name, sep, value = line.partition(":")
            if not sep:
                continue
            name = name.strip().lower()
            self.headers.append((COMPACT.get(name, name), value.strip()))

    @property
    def is_request(self) -> bool:
        return not self.first.startswith("SIP/2.0")

    @property
    def method(self) -> str:
        return self.first.split(" ", 1)[0] if self.is_request else self.cseq_method

    @property
    def ruri(self) -> str:
        return self.first.split(" ")[1] if self.is_request else ""

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.first.split(" ")[1])

    def all(self, name: str) -> list[str]:
        """Every value of a header, comma-separated values split (Via, Route, RR)."""
        out = []
        for n, v in self.headers:
            if n == name:
                out += [x.strip() for x in split_commas(v)]
        return out

    def get(self, name: str) -> str | None:
        for n, v in self.headers:
            if n == name:
                return v
        return None

    @property
    def call_id(self) -> str:
        return self.get("call-id") or ""

    @property
    def cseq_method(self) -> str:
        return (self.get("cseq") or " ").split()[-1]


def split_commas(value: str) -> list[str]:
    """Split a header value on commas outside <...> and quotes."""
    out, cur, depth, quoted = [], [], 0, False
    for ch in value:
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            depth += 1
        elif not quoted and ch == ">":
            depth -= 1
        if ch == "," and depth == 0 and not quoted:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [x for x in out if x.strip()]


def via_sent_by(via: str) -> tuple[str, int]:
    """('host', port) of a Via value 'SIP/2.0/UDP host[:port];params'."""
    sent_by = via.split(None, 1)[1].split(";", 1)[0].strip()
    host, _sep, port = sent_by.rpartition(":") if sent_by.count(":") == 1 else (sent_by, "", "")
    return (host or sent_by), int(port) if port else 5060


def via_branch(via: str) -> str:
    m = re.search(r";\s*branch=([^;,\s]+)", via)
    return m.group(1) if m else ""


def uri_hostport(value: str) -> tuple[str, int]:
    """(host, port) of the URI in '<sip:host[:port];params>' or 'sip:user@host:port;...'."""
    m = re.search(r"sips?:(?:[^@;>]*@)?([^;>:?]+)(?::(\d+))?", value)
    if not m:
        return "", 0
    return m.group(1), int(m.group(2)) if m.group(2) else 5060


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
        out = open(self.workdir / f"{self.name}.out", "wb")
        self.proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     start_new_session=True)
        out.close()
        wait_bound(self.host, self.port, self.proc, 5, f"SIPp UAS {self.name}")
        return self

    def stop(self) -> None:
        stop_process(self.proc)

    def received(self, tag_or_call_id: str) -> list[Msg]:
        """Requests and responses this backend received for one Call-ID, or for every
        Call-ID of a UAC run with that tag (``<tag>-<n>-<pid>@<ip>``)."""
        prefix = tag_or_call_id + "-"
        return [m for m in read_trace(self.trace) if m.direction == "recv"
                and (m.call_id == tag_or_call_id or m.call_id.startswith(prefix))]


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
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    call_id = call_id or f"raw-{uuid.uuid4().hex}@{local[0]}"
    body = b""
    return (f"{method} sip:{user}@{domain} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {local[0]}:{local[1]};branch={branch}\r\n"
            f"Max-Forwards: 70\r\n"
            f"From: <sip:caller@{local[0]}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{user}@{domain}>\r\n"
            f"Call-ID: {call_id}\r\n"
            f"CSeq: 1 {method}\r\n"
            f"Contact: <sip:caller@{local[0]}:{local[1]}>\r\n"
            f"User-Agent: {user_agent}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


# --------------------------------------------------------------------------- routers

ROUTES = {
    # domain: (setid, enabled)
    "tenant-a.test": (10, 1),
    "tenant-b.test": (20, 1),
    "ring.test": (30, 1),
    "disabled.test": (10, 0),
    "late.test": (20, 0),      # enabled by a test while the router runs
}


def fill_routes(db: Path, sets: dict[int, list[str]], domains: dict[str, tuple[int, int]]) -> None:
    con = sqlite3.connect(str(db))
    try:
        con.executemany("INSERT INTO sip_domains (domain, dispatcher_setid, enabled) VALUES (?,?,?)",
                        [(d, s, e) for d, (s, e) in domains.items()])
        con.executemany("INSERT INTO dispatcher (setid, destination, flags, priority) "
                        "VALUES (?, ?, 0, 0)",
                        [(setid, uri) for setid, uris in sets.items() for uri in uris])
        con.commit()
    finally:
        con.close()


def db_execute(db: Path, sql: str, params: tuple = ()) -> None:
    con = sqlite3.connect(str(db), timeout=5)
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def sipedge_cmd() -> list[str]:
    override = os.environ.get("SIPEDGE_CMD")
    if override:
        return override.split()
    exe = Path(sys.executable).with_name("sipedge")
    if exe.exists():
        return [str(exe)]
    return [sys.executable, "-m", "sipedge"]


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
        if self.kind == "kamailio":
            sys.path.insert(0, str(REPO / "tests"))
            try:
                from kamailio.reference import Kamailio, prepare_db
            finally:
                sys.path.pop(0)
            prepare_db(self.db)
            fill_routes(self.db, self.sets, ROUTES)
            self._kamailio = Kamailio(self.host, self.port, self.db, self.workdir)
            self._kamailio.start(timeout=15)
            self.proc = self._kamailio.proc
            self.log_path = self._kamailio.log_path
            return self
        cmd = sipedge_cmd()
        r = subprocess.run([*cmd, "db", "init", "--db", str(self.db)], capture_output=True,
                           check=False,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"sipedge db init failed ({r.returncode}): {r.stderr or r.stdout}")
        fill_routes(self.db, self.sets, ROUTES)
        cfg = self.workdir / "sipedge.toml"
        cfg.write_text(f'[sip]\nlisten = ["udp:{self.host}:{self.port}"]\n\n'
                       f'[database]\npath = "{self.db}"\n\n[log]\nlevel = "info"\n')
        out = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*cmd, "run", "--config", str(cfg)], stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, start_new_session=True)
        out.close()
        wait_bound(self.host, self.port, self.proc, 15, "sipedge run")
        return self

    def stop(self) -> None:
        if self._kamailio is not None:
            self._kamailio.stop()
        else:
            stop_process(self.proc)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
