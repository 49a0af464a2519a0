"""Kamailio 5.6 running the seed configuration: the reference router for tests.

The seed's configuration text is kept verbatim in ``seed_cfg.SEED_TEXT`` (copied byte
for byte from the ```kamailio block of the seed's notes, see seed_cfg.py; a .py file
because ansible-test's sanity rejects the "#!KAMAILIO" first line in a text file).  Kamailio
cannot run it as written (docs/sip-spec-notes.md §0.2), so :func:`render_config` applies a
short list of named substitutions to that text.  Each substitution names the exact
anchor text it replaces and how many times it must occur; a missing anchor raises
:class:`SubstitutionError`, so the reference cannot silently drift from the seed.

Public API (kept small on purpose; the benchmark suite imports it too)::

    SEED_TEXT                    the verbatim seed config (str)
    write_seed_cfg(path)         write it to a file, byte for byte
    SUBSTITUTIONS                the always-applied substitutions (name, reason, ...)
    render_config(listen_addr, listen_port, db_path, *, probing_mode=None,
                  algorithm=None, timers_ms=True) -> str
    SEED_SCHEMA_SQL              the seed's CREATE TABLE statements (for a fresh DB)
    prepare_db(db_path, src=None)    copy src (optional) to db_path, make sure the
                                     seed's tables exist, add Kamailio's `version` rows
    Kamailio(listen_addr, listen_port, db_path, workdir, **render_kwargs)
        .start(timeout=10.0)  check the config (kamailio -c), start
                              `kamailio -DD -E`, wait until it answers on its port
        .stop()               SIGTERM to the process it started, SIGKILL after 5 s
        .log_text()           what Kamailio wrote to stderr so far
        .pid, .cfg_path, .log_path
    Used as a context manager it starts and stops itself.

Nothing here resolves names or sends traffic anywhere but to the given listen
address: `auto_aliases=no` (Kamailio would otherwise reverse-resolve its listen
address at start-up) is part of the listen substitution.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import uuid
from pathlib import Path

__all__ = [
    "SEED_TEXT", "write_seed_cfg", "SUBSTITUTIONS", "SEED_SCHEMA_SQL", "Substitution", "SubstitutionError",
    "render_config", "prepare_db", "Kamailio", "KAMAILIO_BIN", "MODULES_DIR",
]

try:
    from .seed_cfg import SEED_TEXT
except ImportError:  # imported as a top-level module (tests/kamailio on sys.path)
    from seed_cfg import SEED_TEXT  # type: ignore[no-redef]
KAMAILIO_BIN = os.environ.get("KAMAILIO_BIN", "/usr/sbin/kamailio")
MODULES_DIR = os.environ.get("KAMAILIO_MODULES", "/usr/lib/x86_64-linux-gnu/kamailio/modules")

# The seed's schema ("Database Layout" of the seed's notes; docs/design.md "Data"), for a DB built
# without the sipedge tooling.  CREATE ... IF NOT EXISTS so it is harmless on a
# DB that sipedge already created.
SEED_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS sip_domains (
    domain TEXT PRIMARY KEY,
    dispatcher_setid INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS idx_sip_domains_enabled ON sip_domains(enabled);
CREATE TABLE IF NOT EXISTS dispatcher (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    setid INTEGER NOT NULL,
    destination TEXT NOT NULL,
    flags INTEGER DEFAULT 0,
    priority INTEGER DEFAULT 0,
    attrs TEXT
);
CREATE INDEX IF NOT EXISTS idx_dispatcher_setid ON dispatcher(setid);
"""


class SubstitutionError(RuntimeError):
    """An anchor of a substitution is not in the seed text (or not as often as expected)."""


@dataclasses.dataclass(frozen=True)
class Substitution:
    name: str
    reason: str          # why Kamailio needs it; points at docs/sip-spec-notes.md
    anchor: str          # exact text of the seed that is replaced
    replacement: str     # may contain {placeholders} filled by render_config
    count: int = 1       # how many times the anchor must occur

    def apply(self, text: str, **values) -> str:
        found = text.count(self.anchor)
        if found != self.count:
            raise SubstitutionError(
                f"substitution {self.name!r}: anchor {self.anchor!r} found {found} times, "
                f"expected {self.count}; the seed text changed")
        replacement = self.replacement
        for key, value in values.items():  # only known {placeholders}; other braces stay
            replacement = replacement.replace("{" + key + "}", str(value))
        return text.replace(self.anchor, replacement)


# Always applied.  Everything else in the seed runs as written.
SUBSTITUTIONS: tuple[Substitution, ...] = (
    Substitution(
        "listen",
        "run on a loopback test address instead of udp:0.0.0.0:5060 (docs/sip-spec-notes.md §0.2#7: "
        "a wildcard socket puts 0.0.0.0 in Via/Record-Route); auto_aliases=no keeps Kamailio "
        "from reverse-resolving the address (tests must not use DNS); mpath names the module dir",
        "listen=udp:0.0.0.0:5060\n",
        "listen=udp:{listen_addr}:{listen_port}\nauto_aliases=no\nmpath=\"{modules_dir}\"\n",
    ),
    Substitution(
        "db_path",
        "the routing DB lives in the test's work dir, not /var/lib/kamailio",
        "sqlite:///var/lib/kamailio/routing.db",
        "sqlite://{db_path}",
        count=2,
    ),
    Substitution(
        "scanner_regex",
        "docs/sip-spec-notes.md §0.2#1: `(?i)` is PCRE; POSIX regcomp rejects it and Kamailio does not "
        "start. `=~` is already case-insensitive (REG_ICASE), so the intent is the bare alternation",
        '$ua =~ "(?i)sipvicious|friendly-scanner|sipcli|nmap"',
        '$ua =~ "sipvicious|friendly-scanner|sipcli|nmap"',
    ),
    Substitution(
        "sql_query_result",
        "docs/sip-spec-notes.md §0.2#2-3: sql_query() needs a result name to keep rows, and returns true "
        "for 0 rows; the intent is 'no enabled row -> blocked' (empty-result guard)",
        "WHERE domain='$var(domain)' AND enabled=1\")) {",
        "WHERE domain='$var(domain)' AND enabled=1\", \"ra\") || $dbr(ra=>rows) == 0) {",
    ),
    Substitution(
        "sql_result",
        "docs/sip-spec-notes.md §0.2#2: sql_result() does not exist in sqlops; read the value with $dbr",
        'sql_result("cb", "dispatcher_setid", "$var(setid)");',
        "$var(setid) = $dbr(ra=>[0,0]);",
    ),
    Substitution(
        "fr_timer_ms",
        "docs/sip-spec-notes.md §0.1#12: tm timers are in milliseconds; 5 means 5 s",
        'modparam("tm", "fr_timer", 5)\n',
        'modparam("tm", "fr_timer", 5000)\n',
    ),
    Substitution(
        "fr_inv_timer_ms",
        "docs/sip-spec-notes.md §0.1#12: tm timers are in milliseconds; 30 means 30 s",
        'modparam("tm", "fr_inv_timer", 30)\n',
        'modparam("tm", "fr_inv_timer", 30000)\n',
    ),
)

# Applied only when asked for.
PROBING_MODE = Substitution(
    "probing_mode",
    "docs/sip-spec-notes.md §0.1#7/§2.9: with ds_probing_mode 0 and flags 0 nothing is ever pinged; "
    "health checks need mode 1 (only where a test exercises health checking)",
    'modparam("dispatcher", "ds_ping_interval", 30)\n',
    'modparam("dispatcher", "ds_ping_interval", {ping_interval})\n'
    'modparam("dispatcher", "ds_probing_mode", {probing_mode})\n',
)
ALGORITHM = Substitution(
    "algorithm",
    "the seed's own notes: 'for priority-based selection change ds_select_dst() to use "
    "algorithm 8' (used by the priority cases only)",
    'ds_select_dst($var(setid), "4")',
    'ds_select_dst($var(setid), "{algorithm}")',
)


def render_config(listen_addr: str, listen_port: int, db_path: str | os.PathLike, *,
                  probing_mode: int | None = None, ping_interval: int = 30,
                  algorithm: int | None = None, seed_text: str | None = None) -> str:
    """Return the seed config with the substitutions applied.

    ``probing_mode`` (with ``ping_interval`` in seconds) adds ``ds_probing_mode``;
    ``algorithm`` replaces the seed's ``"4"`` in ``ds_select_dst``.
    """
    text = seed_text if seed_text is not None else SEED_TEXT
    values = dict(listen_addr=listen_addr, listen_port=int(listen_port),
                  db_path=str(Path(db_path).resolve()), modules_dir=MODULES_DIR,
                  probing_mode=probing_mode, ping_interval=int(ping_interval),
                  algorithm=algorithm)
    for sub in SUBSTITUTIONS:
        text = sub.apply(text, **values)
    if probing_mode is not None:
        text = PROBING_MODE.apply(text, **values)
    if algorithm is not None:
        text = ALGORITHM.apply(text, **values)
    return text


def write_seed_cfg(path: str | os.PathLike) -> Path:
    """Write the unmodified seed config to ``path`` (e.g. to diff it with a rendered one)."""
    path = Path(path)
    path.write_text(SEED_TEXT)
    return path


def prepare_db(db_path: str | os.PathLike, src: str | os.PathLike | None = None) -> Path:
    """Make ``db_path`` a routing DB Kamailio accepts.

    With ``src`` the DB is copied from it (SQLite backup API, so a WAL-mode source is
    copied consistently); otherwise the file is used or created as it is.  The seed's
    tables are created if missing, the journal mode is set to DELETE (Kamailio opens
    the file read-mostly from several processes), and the `version` table gets
    ``dispatcher=4`` (5 columns; docs/sip-spec-notes.md §0.2#6).
    """
    db_path = Path(db_path)
    if src is not None:
        if db_path.exists():
            db_path.unlink()
        with sqlite3.connect(str(src)) as s, sqlite3.connect(str(db_path)) as d:
            s.backup(d)
    con = sqlite3.connect(str(db_path))
    try:
        con.executescript(SEED_SCHEMA_SQL)
        con.execute("PRAGMA journal_mode=DELETE")
        con.execute("CREATE TABLE IF NOT EXISTS version ("
                    "table_name VARCHAR(32) NOT NULL, table_version INTEGER DEFAULT 0 NOT NULL, "
                    "CONSTRAINT version_table_name_idx UNIQUE (table_name))")
        con.execute("INSERT OR REPLACE INTO version (table_name, table_version) "
                    "VALUES ('dispatcher', 4)")
        con.commit()
    finally:
        con.close()
    return db_path


def _probe(addr: str, port: int, timeout: float) -> bool:
    """True when something at addr:port answers a Max-Forwards: 0 OPTIONS (483 expected)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((addr.rsplit(".", 1)[0] + ".1" if addr.startswith("127.") else "0.0.0.0", 0))
        lport = s.getsockname()[1]
        lhost = s.getsockname()[0]
        branch = "z9hG4bKprobe" + uuid.uuid4().hex[:12]
        msg = (f"OPTIONS sip:probe@{addr}:{port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {lhost}:{lport};branch={branch};rport\r\n"
               f"Max-Forwards: 0\r\n"
               f"From: <sip:probe@{lhost}>;tag={uuid.uuid4().hex[:8]}\r\n"
               f"To: <sip:probe@{addr}>\r\n"
               f"Call-ID: probe-{uuid.uuid4().hex}\r\n"
               f"CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
        s.settimeout(timeout)
        s.sendto(msg, (addr, port))
        try:
            data = s.recvfrom(65535)[0]
        except (socket.timeout, ConnectionRefusedError, OSError):
            return False
        return data.startswith(b"SIP/2.0 ")
    finally:
        s.close()


class Kamailio:
    """One Kamailio process running the rendered seed config in the foreground."""

    def __init__(self, listen_addr: str, listen_port: int, db_path: str | os.PathLike,
                 workdir: str | os.PathLike, *, shm_mb: int = 64, pkg_mb: int = 8,
                 name: str = "kamailio", **render_kwargs):
        self.listen_addr = listen_addr
        self.listen_port = int(listen_port)
        self.db_path = Path(db_path)
        self.workdir = Path(workdir)
        self.shm_mb = shm_mb
        self.pkg_mb = pkg_mb
        self.name = name
        self.render_kwargs = render_kwargs
        self.cfg_path = self.workdir / f"{name}.cfg"
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def _cmd(self, *extra: str) -> list[str]:
        return [KAMAILIO_BIN, "-f", str(self.cfg_path), "-m", str(self.shm_mb),
                "-M", str(self.pkg_mb), "-Y", str(self.workdir / f"{self.name}.run"), *extra]

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / f"{self.name}.run").mkdir(exist_ok=True)
        self.cfg_path.write_text(render_config(self.listen_addr, self.listen_port,
                                               self.db_path, **self.render_kwargs))
        return self.cfg_path

    def check_config(self) -> None:
        """`kamailio -c`: raise RuntimeError with Kamailio's own words if the config is bad."""
        r = subprocess.run(self._cmd("-c"), capture_output=True, text=True, timeout=30,
                           check=False)
        if r.returncode != 0:
            tail = "\n".join((r.stderr or r.stdout).splitlines()[-25:])
            raise RuntimeError(f"kamailio -c rejected {self.cfg_path}:\n{tail}")

    def start(self, timeout: float = 10.0) -> "Kamailio":
        if shutil.which(KAMAILIO_BIN) is None and not Path(KAMAILIO_BIN).exists():
            raise RuntimeError(f"{KAMAILIO_BIN} not found (apt-get install kamailio "
                               "kamailio-sqlite-modules)")
        if not self.db_path.exists():
            raise RuntimeError(f"routing DB {self.db_path} missing (use prepare_db)")
        self.write_config()
        self.check_config()
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self._cmd("-DD", "-E"), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited with {self.proc.returncode}:\n"
                                   + self.log_text()[-3000:])
            if _probe(self.listen_addr, self.listen_port, 0.2):
                return self
        self.stop()
        raise RuntimeError(f"kamailio did not answer on {self.listen_addr}:{self.listen_port} "
                           f"within {timeout} s:\n" + self.log_text()[-3000:])

    def stop(self) -> None:
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            # Kamailio's main process ends its own children on SIGTERM.
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)  # the session this object started
                p.wait(5)
        if self._log:
            self._log.close()
            self._log = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> "Kamailio":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
