"""Verify the router role: service, files, DB schema, hardening, and real SIP calls.

Runs against the converged container (testinfra, docker backend). The SIP tests write
their own test domain and destination into the routing DB, start a SIPp backend (UAS)
on 127.0.0.2 inside the container and place a call with a SIPp caller (UAC) through
the edge on 127.0.0.1:5060. Nothing leaves the container.
"""

import json
import re
import uuid

import pytest

from conftest import (CONFIG, DB, SERVICE, SIPEDGE, VENV, WORK, collection_root,
                      journal_count, journal_tail, place_call, start_backend, stop_backend, wait_for)


# --- service ------------------------------------------------------------------------

def test_service_enabled_and_active(host):
    service = host.service(SERVICE)
    if not service.is_running:
        print(host.run("journalctl -u %s -n 50 --no-pager", SERVICE).stdout)
    assert service.is_enabled
    assert service.is_running


def test_service_runs_as_sipedge(host, main_pid):
    assert main_pid > 0
    user = host.check_output("ps -o user= -p %s", str(main_pid)).strip()
    group = host.check_output("ps -o group= -p %s", str(main_pid)).strip()
    assert (user, group) == ("sipedge", "sipedge")
    # The one capability it holds is the one that binds port 5060.
    status = host.file("/proc/%d/status" % main_pid).content_string
    caps = {k: int(v, 16) for k, v in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M)}
    cap_net_bind_service = 1 << 10
    assert caps["CapEff"] == cap_net_bind_service
    assert caps["CapBnd"] == cap_net_bind_service
    assert "NoNewPrivs:\t1" in status


def test_listens_on_udp_5060(host, main_pid):
    assert host.socket("udp://0.0.0.0:5060").is_listening
    # The socket is the service's own (ss cannot show another user's sockets without
    # CAP_SYS_PTRACE, which the container lacks): its worker says it listens, and the
    # main process that the edge is ready.
    log = host.check_output("journalctl -u %s --no-pager -o cat -q", SERVICE)
    assert "listening on udp:0.0.0.0:5060" in log, log
    assert "sipedge ready" in host.check_output("journalctl _PID=%s --no-pager -o cat -q", str(main_pid))


def test_security_rating(host):
    out = host.check_output("systemd-analyze security --no-pager %s", SERVICE)
    match = re.search(r"Overall exposure level for %s: ([0-9.]+) (\w+)" % re.escape(SERVICE), out)
    assert match, out
    exposure, verdict = float(match.group(1)), match.group(2)
    print("\nsystemd-analyze security %s: exposure %.1f %s" % (SERVICE, exposure, verdict))
    assert exposure <= 2.5 and verdict == "OK", out


def test_sandbox_properties(host):
    props = host.service(SERVICE).systemd_properties
    assert props["User"] == "sipedge"
    assert props["NoNewPrivileges"] == "yes"
    assert props["ProtectSystem"] == "strict"
    assert props["ProtectHome"] == "yes"
    assert props["PrivateTmp"] == "yes"
    assert props["AmbientCapabilities"] == "cap_net_bind_service"
    assert props["ReadWritePaths"] == "/var/lib/sipedge"


def test_control_socket_answers(host, main_pid):
    """The sandbox leaves the router its runtime directory for the control socket."""
    sock = host.file("/run/sipedge/sipedge.sock")
    assert sock.is_socket
    assert (sock.user, sock.group) == ("sipedge", "sipedge")
    stats = json.loads(host.check_output("%s ctl --config %s --json stats", SIPEDGE, CONFIG))
    assert stats["pid"] == main_pid


# --- files ---------------------------------------------------------------------------

@pytest.mark.parametrize("path, kind, user, group, mode", [
    ("/etc/sipedge", "directory", "root", "sipedge", 0o750),
    (CONFIG, "file", "root", "sipedge", 0o640),
    ("/var/lib/sipedge", "directory", "sipedge", "sipedge", 0o750),
    (DB, "file", "sipedge", "sipedge", 0o640),
    (VENV, "directory", "root", "root", 0o755),
    (SIPEDGE, "file", "root", "root", 0o755),
    (VENV + "/wheels", "directory", "root", "root", 0o755),
    ("/etc/systemd/system/sipedge.service", "file", "root", "root", 0o644),
])
def test_owner_and_mode(host, path, kind, user, group, mode):
    f = host.file(path)
    assert f.exists, path
    assert (f.is_directory if kind == "directory" else f.is_file), path
    assert (f.user, f.group, oct(f.mode)) == (user, group, oct(mode)), path


def test_system_user(host):
    user = host.user("sipedge")
    assert user.exists
    assert user.uid < 1000
    assert user.group == "sipedge"
    assert user.shell == "/usr/sbin/nologin"


def test_service_user_cannot_change_code_or_config(host):
    # sipedge may read its config but write neither the config nor the venv.
    assert host.run("runuser -u sipedge -- test -r %s", CONFIG).rc == 0
    assert host.run("runuser -u sipedge -- test -w %s", CONFIG).rc != 0
    assert host.run("runuser -u sipedge -- test -w %s/bin", VENV).rc != 0


# --- configuration ------------------------------------------------------------------

_CONFIG_CHECK = r"""
import dataclasses, json, tomllib
from sipedge import config
with open(%r, "rb") as handle:
    data = tomllib.load(handle)
keys = {"%%s.%%s" %% (s, k) for s, table in data.items() for k in table}
loaded = config.load(%r)
# converge gives the admin endpoint a user, which turns it on at its default address
print(json.dumps({"keys": sorted(keys),
                  "fields": [f.name for f in dataclasses.fields(config.Config)],
                  "sections": sorted(config.SECTIONS),
                  "equals_defaults": loaded == dataclasses.replace(config.Config(), admin_listen="127.0.0.1:9060")}))
"""


def test_config_is_valid_and_has_the_seed_defaults(host):
    assert host.run("%s check-config %s", SIPEDGE, CONFIG).rc == 0
    result = json.loads(host.check_output("%s/bin/python -c %s", VENV, _CONFIG_CHECK % (CONFIG, CONFIG)))
    # Converge used the role's defaults (and an admin user): the rendered file means the router's defaults.
    assert result["equals_defaults"]


def test_every_router_setting_has_a_role_variable(host):
    """A setting the router gains must get a sip_edge_router_<section>_<key> variable."""
    result = json.loads(host.check_output("%s/bin/python -c %s", VENV, _CONFIG_CHECK % (CONFIG, CONFIG)))
    rendered = set(result["keys"])
    assert {k.split(".")[0] for k in rendered} == set(result["sections"])
    # Config field -> section.key: "key", "<section>_key" (log_level, control_socket) or,
    # for [database], "db_key".

    def names(entry):
        section, key = entry.split(".")
        return {key, "%s_%s" % (section, key)} | ({"db_" + key} if section == "database" else set())
    covered = set().union(*(names(k) for k in rendered))
    missing = [f for f in result["fields"] if f not in covered]
    assert not missing, "router settings missing from the role's template: %s" % missing


# --- routing DB -----------------------------------------------------------------------

_SCHEMA_CHECK = r"""
import json, sqlite3
from sipedge import schema
conn = sqlite3.connect("file:%s?mode=ro", uri=True)
tables = {t: [r[1] for r in conn.execute("PRAGMA table_info(%%s)" %% t)] for t in schema.COLUMNS}
indexes = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")]
print(json.dumps({"expected": schema.SCHEMA_VERSION, "columns": schema.COLUMNS, "tables": tables,
                  "indexes": indexes, "journal_mode": conn.execute("PRAGMA journal_mode").fetchone()[0]}))
"""


def _source_schema_version():
    text = open("%s/files/sipedge/src/sipedge/schema.py" % collection_root(), encoding="utf-8").read()
    return int(re.search(r"^SCHEMA_VERSION\s*=\s*(\d+)", text, re.M).group(1))


def test_db_schema_version(host):
    version = int(host.check_output("runuser -u sipedge -- %s db version --db %s", SIPEDGE, DB))
    assert version == _source_schema_version()
    again = host.check_output("runuser -u sipedge -- %s db init --db %s", SIPEDGE, DB)
    assert again.strip() == "up to date"


def test_db_tables(host):
    info = json.loads(host.check_output("%s/bin/python -c %s", VENV, _SCHEMA_CHECK % DB))
    for table, columns in info["columns"].items():
        assert set(columns) <= set(info["tables"][table]), table
    assert "uq_dispatcher_setid_destination" in info["indexes"]
    assert info["journal_mode"] == "wal"


_SEED_DB = r"""
import sqlite3, sys
from sipedge import schema
conn = sqlite3.connect(sys.argv[1])
for ddl in schema.TABLES.values():  # the seed's tables, without our indexes, user_version 0
    conn.execute(ddl)
conn.execute("INSERT INTO sip_domains VALUES ('seed.molecule.test', 7, 1, 'kept')")
conn.execute("INSERT INTO dispatcher (setid, destination) VALUES (7, 'sip:127.0.0.7:5070')")
conn.commit()
"""


def test_db_init_reports_what_the_role_parses(host):
    """The role's changed_when looks for 'created' / 'migrated'; a seed DB keeps its rows."""
    path = "/var/lib/sipedge/molecule-seed.db"
    run = "runuser -u sipedge -- %s db init --db %s"
    try:
        host.run("rm -f %s %s-wal %s-shm", path, path, path)
        host.check_output("runuser -u sipedge -- %s/bin/python -c %s %s", VENV, _SEED_DB, path)
        assert host.check_output(run, SIPEDGE, path) == "migrated 0 -> %d" % _source_schema_version()
        assert host.check_output(run, SIPEDGE, path) == "up to date"
        rows = host.check_output("%s/bin/python -c %s %s", VENV,
                                 "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute("
                                 "'SELECT COUNT(*) FROM sip_domains JOIN dispatcher ON setid = dispatcher_setid')"
                                 ".fetchone()[0])", path)
        assert rows == "1"
        host.run("rm -f %s %s-wal %s-shm", path, path, path)
        assert host.check_output(run, SIPEDGE, path) == "created"
    finally:
        host.run("rm -f %s %s-wal %s-shm", path, path, path)


# --- SIP through the edge ----------------------------------------------------------------

_ROWS = r"""
import sqlite3, sys
action, domain, setid, destination = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
conn = sqlite3.connect(%r, timeout=5)
with conn:
    if action == "add":
        conn.execute("INSERT INTO sip_domains (domain, dispatcher_setid, enabled, comment) "
                     "VALUES (?, ?, 1, 'molecule verify')", (domain, setid))
        conn.execute("INSERT OR IGNORE INTO dispatcher (setid, destination, flags, priority, attrs) "
                     "VALUES (?, ?, 0, 0, '')", (setid, destination))
    else:
        conn.execute("DELETE FROM sip_domains WHERE domain = ?", (domain,))
        conn.execute("DELETE FROM dispatcher WHERE setid = ? AND destination = ?", (setid, destination))
""" % DB


def change_rows(host, action, domain, setid, destination):
    """Write test rows straight into the DB (the tenant modules are not used here)."""
    before = journal_count(host, "routing data reloaded")
    host.check_output("%s/bin/python -c %s %s %s %s %s", VENV, _ROWS, action, domain, str(setid), destination)
    # The router polls the DB and logs each reload; no restart, no handler.
    reloaded = wait_for(lambda: journal_count(host, "routing data reloaded") > before, timeout=10)
    assert reloaded, journal_tail(host)


@pytest.fixture
def tenant(host):
    """A test domain (new name each run) routed to a SIPp backend on 127.0.0.2; removed afterwards."""
    domain = "tenant-a-%s.molecule.test" % uuid.uuid4().hex[:8]
    row = (domain, 101, "sip:127.0.0.2:5070")
    change_rows(host, "add", *row)
    yield domain
    change_rows(host, "delete", *row)


def test_call_through_the_edge_is_answered_by_the_backend(host, main_pid, tenant):
    start_backend(host, "tenant-a", "127.0.0.2")
    rc, log, messages = place_call(host, tenant, "127.0.0.10")
    print("\ncall to %s: sipp rc=%s, %s" % (tenant, rc, log.strip()))
    assert rc == 0, messages
    assert "answered_by=tenant-a" in log
    assert stop_backend(host, "tenant-a") == ["INVITE", "ACK", "BYE"], host.run("cat %s/tenant-a.out", WORK).stdout
    # The call went through the edge: it record-routed itself into the dialog.
    assert re.search(r"^Record-Route: <sip:[^>]*;lr", messages, re.M | re.I), messages
    # Routing data was picked up without a restart.
    assert int(host.check_output("systemctl show -p MainPID --value %s", SERVICE)) == main_pid


def test_unknown_domain_gets_nothing(host):
    knock = "Door-knock blocked: domain=unknown.molecule.test src=127.0.0.11"
    before = journal_count(host, knock)
    rc, _stdout, messages = place_call(host, "unknown.molecule.test", "127.0.0.11", timeout_ms=2000)
    print("\ncall to unknown.molecule.test: sipp rc=%s (no answer expected)" % rc)
    assert rc != 0
    assert "message received" not in messages.lower(), messages
    blocked = wait_for(lambda: journal_count(host, knock) > before)
    assert blocked, journal_tail(host)
