"""A ``sipedge run`` process for tests: its config, its routing DB (made by
``sipedge db init``), its log, started and stopped by its PID."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from . import procs, routing
from .net import free_udp_port, udp_bound

PROJECT = Path(__file__).resolve().parents[1]      # files/sipedge
REPO = PROJECT.parents[1]                          # the collection root
QUIET_LEVELS = ("notice", "warning", "error")      # levels that do not log "sipedge ready"


def sipedge_command() -> tuple[list[str], dict]:
    """How to run sipedge, and the environment for it: $SIPEDGE_CMD, the ``sipedge``
    beside this Python, the repo's .venv, PATH, or ``python -m sipedge`` from src/."""
    env = dict(os.environ)
    if env.get("SIPEDGE_CMD"):
        return env["SIPEDGE_CMD"].split(), env
    for exe in (Path(sys.executable).with_name("sipedge"), REPO / ".venv" / "bin" / "sipedge"):
        if exe.exists():
            return [str(exe)], env
    found = shutil.which("sipedge")
    if found:
        return [found], env
    env["PYTHONPATH"] = str(PROJECT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    return [sys.executable, "-m", "sipedge"], env


def db_init(db, command: list[str] | None = None, env: dict | None = None) -> None:
    """``sipedge db init --db DB``: create the routing DB (or migrate it)."""
    if command is None:
        command, env = sipedge_command()
    r = subprocess.run([*command, "db", "init", "--db", str(db)], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"sipedge db init failed ({r.returncode}): {r.stderr or r.stdout}")


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def render_config(sections: dict) -> str:
    """A sipedge.toml from {section: {key: value}}."""
    out = []
    for section, keys in sections.items():
        out.append(f"[{section}]")
        out += [f"{key} = {_toml(value)}" for key, value in keys.items()]
        out.append("")
    return "\n".join(out)


class Sipedge:
    """``sipedge run`` on ``host:port`` (a free port unless given), with the files
    ``NAME.toml``, ``NAME-routing.db``, ``NAME.log`` and the control socket
    ``NAME.sock`` in ``workdir``.  ``settings`` ({section: {key: value}}) go over the
    listen address, DB and control socket; ``domains`` and ``destinations`` are the
    routing rows (see routing.fill)."""

    def __init__(self, workdir, host: str, port: int | None = None, *, settings: dict | None = None,
                 domains=(), destinations=(), name: str = "sipedge", command: list[str] | None = None):
        self.workdir = Path(workdir).resolve()   # the router runs in it: paths must not be relative
        self.host = host
        self.port = port or free_udp_port(host)
        self.command, self.env = (command, dict(os.environ)) if command else sipedge_command()
        self.db = str(self.workdir / f"{name}-routing.db")
        self.control = str(self.workdir / f"{name}.sock")
        self.config_path = self.workdir / f"{name}.toml"
        self.log_path = self.workdir / f"{name}.log"
        # drain_timeout 0: a test's router stops at once, whatever is in flight
        self.sections = {"sip": {"listen": [f"udp:{host}:{self.port}"], "drain_timeout": 0},
                         "database": {"path": self.db}, "control": {"socket": self.control}}
        for section, keys in (settings or {}).items():
            self.sections.setdefault(section, {}).update(keys)
        self.domains, self.destinations = list(domains), list(destinations)
        self.proc: subprocess.Popen | None = None

    @property
    def edge(self) -> tuple[str, int]:
        return self.host, self.port

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self, timeout: float = 15.0) -> "Sipedge":
        """Create a fresh DB and the config, start the router and wait until it listens."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):   # a previous run's
            Path(self.db + suffix).unlink(missing_ok=True)
        db_init(self.db, self.command, self.env)
        routing.fill(self.db, self.domains, self.destinations)
        self.config_path.write_text(render_config(self.sections), encoding="utf-8")
        self.proc = procs.start([*self.command, "run", "--config", str(self.config_path)], self.log_path,
                                env=self.env, cwd=self.workdir)
        quiet = self.sections.get("log", {}).get("level") in QUIET_LEVELS

        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError(f"sipedge exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            # "sipedge ready": every worker has bound its sockets and loaded the DB
            return udp_bound(self.host, self.port) if quiet else "sipedge ready" in self.log_text()
        if not procs.poll(ready, timeout):
            self.stop()
            raise RuntimeError(f"sipedge did not listen on {self.host}:{self.port} within {timeout} s:\n"
                               + self.log_text()[-3000:])
        return self

    def stop(self, grace: float = 5.0) -> int | None:
        """Stop the router by its PID; returns its exit code."""
        return procs.stop(self.proc, grace)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def lines(self) -> list[str]:
        return self.log_text().splitlines()

    def wait_log(self, text: str, timeout: float = 5.0) -> None:
        """Wait for a log line holding ``text``; fail if the router exits first."""
        def seen():
            assert self.alive(), self.lines()
            return any(text in line for line in self.lines())
        if not procs.poll(seen, timeout):
            raise AssertionError("no log line with %r in %s" % (text, self.lines()))

    def sql(self, *statements: str) -> None:
        for statement in statements:
            routing.execute(self.db, statement)

    def ctl(self, command: str = "stats"):
        """``sipedge ctl --socket ... --json COMMAND``: the router's answer (for the whole edge)."""
        r = subprocess.run([*self.command, "ctl", "--socket", self.control, "--json", *command.split()],
                           env=self.env, capture_output=True, text=True, timeout=20, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"sipedge ctl {command} failed ({r.returncode}): {r.stderr}")
        return json.loads(r.stdout)
