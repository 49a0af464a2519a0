"""Start the two lanes: Kamailio (reference, seed config) and sipedge (subject).

Addresses (all loopback, chosen to stay clear of other suites):
    reference: Kamailio 127.43.75.10 (alg 4, the seed) and 127.43.75.12 (alg 8),
               client 127.43.75.11, backends 127.43.76.N
    subject:   sipedge 127.43.75.20, client 127.43.75.21, backends 127.43.77.N
Router ports are free ports picked at start; backends bind port 0.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
REPO = TESTS.parent
for p in (str(HERE), str(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

from kamailio.reference import Kamailio, prepare_db, _probe  # noqa: E402

import conf_routing  # noqa: E402
from conf_cases import CASES  # noqa: E402
from conf_harness import Ctx, Lane, Router  # noqa: E402

REF = dict(router="127.43.75.10", router8="127.43.75.12", client="127.43.75.11", backends="127.43.76")
SUB = dict(router="127.43.75.20", client="127.43.75.21", backends="127.43.77")


def free_port(addr: str) -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((addr, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _resolver(lane: Lane):
    def resolve(name: str) -> str:
        if name.startswith("dead:"):
            return lane.dead_uri(int(name.split(":")[1]))
        return lane.backends[name].uri
    return resolve


# ------------------------------------------------------------------ sipedge command

def sipedge_command() -> tuple[list[str], dict] | None:
    """How to run sipedge here: $SIPEDGE_CMD, the repo's .venv, PATH, or the source tree."""
    env = dict(os.environ)
    if os.environ.get("SIPEDGE_CMD"):
        return os.environ["SIPEDGE_CMD"].split(), env
    venv = REPO / ".venv" / "bin" / "sipedge"
    if venv.exists():
        return [str(venv)], env
    src = REPO / "files" / "sipedge" / "src"
    if (src / "sipedge" / "__main__.py").exists() or (src / "sipedge" / "cli.py").exists():
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
        return [sys.executable, "-m", "sipedge"], env
    found = shutil.which("sipedge")
    if found:
        return [found], env
    return None


class SipedgeProc:
    def __init__(self, cmd, env, config: Path, workdir: Path, addr: str, port: int):
        self.cmd, self.env, self.config, self.addr, self.port = cmd, env, config, addr, port
        self.log_path = workdir / "sipedge.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self, timeout: float = 10.0) -> "SipedgeProc":
        r = subprocess.run([*self.cmd, "check-config", str(self.config)], env=self.env,
                           capture_output=True, text=True, timeout=60, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"sipedge check-config failed: {r.stdout}{r.stderr}")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([*self.cmd, "run", "--config", str(self.config)],
                                     env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipedge exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-3000:])
            if _probe(self.addr, self.port, 0.2):
                return self
        self.stop()
        raise RuntimeError("sipedge did not answer within %s s:\n%s" % (timeout, self.log_text()[-3000:]))

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        if self._log:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


SIPEDGE_TOML = """\
[sip]
listen = ["udp:{addr}:{port}"]
drain_timeout = 0

[dispatcher]
set_algorithms = {{ {alg8} }}
# The seed has no failure_route: compared with it, sipedge answers as it does.
failover = false

[database]
path = "{db}"

[log]
level = "info"

[control]
socket = "{control}"
"""


# ------------------------------------------------------------------ lanes

class Setup:
    """Both lanes, started; ``close()`` stops everything this object started."""

    def __init__(self, workdir: Path, *, with_sipedge: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kams: list[Kamailio] = []
        self.sipedge: SipedgeProc | None = None
        self.ref: Lane | None = None
        self.sub: Lane | None = None
        try:
            self._start_reference()
            if with_sipedge:
                self._start_subject()
        except BaseException:
            self.close()
            raise

    def _start_reference(self) -> None:
        lane = Lane("kamailio", REF["client"], REF["backends"], conf_routing.BACKENDS)
        self.ref = lane
        db = self.workdir / "kamailio-routing.db"
        if db.exists():
            db.unlink()
        conf_routing.create_seed_db(db, _resolver(lane))
        prepare_db(db)
        k = Kamailio(REF["router"], free_port(REF["router"]), db, self.workdir, name="kamailio")
        k8 = Kamailio(REF["router8"], free_port(REF["router8"]), db, self.workdir,
                      name="kamailio-alg8", algorithm=8)
        for inst in (k, k8):
            self.kams.append(inst)
            inst.start()
        lane.add_router("main", Router(k.listen_addr, k.listen_port))
        lane.add_router("alg8", Router(k8.listen_addr, k8.listen_port))

    def _start_subject(self) -> None:
        found = sipedge_command()
        if found is None:
            raise RuntimeError("sipedge is not available (no .venv/bin/sipedge, no "
                               "files/sipedge/src/sipedge/__main__.py, nothing on PATH)")
        cmd, env = found
        lane = Lane("sipedge", SUB["client"], SUB["backends"], conf_routing.BACKENDS)
        self.sub = lane
        db = self.workdir / "sipedge-routing.db"
        for suffix in ("", "-wal", "-shm"):
            Path(str(db) + suffix).unlink(missing_ok=True)
        conf_routing.create_sipedge_db(db, cmd, _resolver(lane), env)
        port = free_port(SUB["router"])
        cfg = self.workdir / "sipedge.toml"
        alg8 = ", ".join(f'"{s}" = 8' for s in conf_routing.ALG8_SETS)
        self.control = self.workdir / "ctl.sock"
        self.sipedge_cmd, self.sipedge_env = cmd, env
        cfg.write_text(SIPEDGE_TOML.format(addr=SUB["router"], port=port, db=db, alg8=alg8, control=self.control))
        self.sipedge = SipedgeProc(cmd, env, cfg, self.workdir, SUB["router"], port).start()
        r = Router(SUB["router"], port)
        lane.add_router("main", r)
        lane.add_router("alg8", r)

    def close(self) -> None:
        if self.sipedge:
            self.sipedge.stop()
        for k in self.kams:
            k.stop()
        for lane in (self.ref, self.sub):
            if lane:
                lane.close()


def run_lane(lane: Lane, names: list[str]) -> dict[str, list]:
    out: dict[str, list] = {}
    for name in names:
        stage, desc, fn = CASES[name]
        ctx = Ctx(lane, name)
        try:
            fn(ctx)
            out[name] = ctx.steps
        except Exception:  # noqa: BLE001 - recorded as the outcome
            out[name] = [{"error": traceback.format_exc(limit=3)}]
        finally:
            ctx.close()
    return out


def run_both(setup: Setup, names: list[str] | None = None) -> tuple[dict, dict | None]:
    names = names or list(CASES)
    lanes = [setup.ref] + ([setup.sub] if setup.sub else [])
    with ThreadPoolExecutor(len(lanes)) as ex:
        futs = [ex.submit(run_lane, lane, names) for lane in lanes]
        results = [f.result() for f in futs]
    return results[0], (results[1] if len(results) > 1 else None)
