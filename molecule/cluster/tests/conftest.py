"""Hosts and helpers of the cluster scenario's tests.

The containers and their addresses come from molecule.yml, the tenants from the scenario's
inventory. Calls are placed by SIPp on the client container (molecule/shared/sipp/uac.xml,
whose log gives each call's start, completion and answering backend); playbook runs go
through the collection's playbooks/site.yml with a fresh copy of the scenario's inventory.
"""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass

import pytest
import testinfra
import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from sip_testinfra import (SERVICE, SIPP_DIR, collection_root, journal_count,  # noqa: E402,F401 pylint: disable=wrong-import-position,unused-import
                           wait_for)

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(SCENARIO, "molecule.yml"), encoding="utf-8") as _handle:
    PLATFORMS = yaml.safe_load(_handle)["platforms"]
with open(os.path.join(SCENARIO, "inventory", "group_vars", "sip_edge.yml"), encoding="utf-8") as _handle:
    INVENTORY = yaml.safe_load(_handle)

IP = {p["name"].replace("sipedge-cluster-", ""): p["networks"][0]["ipv4_address"] for p in PLATFORMS}
EDGES = ("edge1", "edge2")
CONTAINER = "sipedge-cluster-%s"
CONFIG = "/etc/sipedge/sipedge.toml"
SIPEDGE = "/opt/sipedge/bin/sipedge"
MARKER = "/opt/sipedge/.restart-pending"
WORK = "/tmp/sipedge-test"  # on the client


@pytest.fixture(scope="session")
def hosts():
    """name (edge1, backend2, client, ...) -> testinfra host (docker exec into the container)."""
    return {name: testinfra.get_host("docker://" + CONTAINER % name) for name in IP}


@pytest.fixture(scope="session")
def prebuilt_wheels(tmp_path_factory):
    """The wheels as a pipeline would publish them, [{path, sha256}]: built on the controller
    with the role's own build script, outside any playbook run."""
    out = tmp_path_factory.mktemp("prebuilt")
    role_files = os.path.join(collection_root(), "roles", "router", "files")
    subprocess.run(["sh", os.path.join(role_files, "build_wheels.sh"), sys.executable,
                    os.path.join(collection_root(), "files", "sipedge"), str(out)], check=True, timeout=300)
    wheels = []
    for path in sorted((out / "wheels").glob("*.whl")):
        wheels.append({"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()})
    assert [w for w in wheels if os.path.basename(w["path"]).startswith("sipedge-")]
    return wheels


# --- the edges -----------------------------------------------------------------------

def edge_state(host):
    """The edge's main PID, the number of starts in its journal, and its config's SHA-256."""
    return {
        "pid": int(host.check_output("systemctl show -p MainPID --value %s", SERVICE)),
        "starts": host.run("journalctl -u %s -o cat -q --no-pager | grep -c '^Started sipedge.service'", SERVICE).stdout.strip(),
        "config": host.check_output("sha256sum %s", CONFIG).split()[0],
    }


def journal_since(host, since, unit=SERVICE):
    """[(epoch seconds, message)] of the unit's journal since `since` (epoch seconds)."""
    out = host.check_output("journalctl -u %s --since @%s -o short-unix --no-pager -q", unit, str(int(since)))
    entries = []
    for line in out.splitlines():
        match = re.match(r"^(\d+\.\d+) \S+ [^:]+: (.*)$", line)
        if match:
            entries.append((float(match.group(1)), match.group(2)))
    return entries


def out_of_service(host, since):
    """The window of the edge's restart after `since`: (stop, ready), epoch seconds.

    It starts when systemd stops the old process (SIGTERM: new INVITEs get 503 while the
    transactions in flight finish) and ends when the new one reports ready (READY=1, logged
    as "sipedge ready": every worker has bound its socket and loaded the routing DB)."""
    entries = journal_since(host, since)
    stops = [t for t, message in entries if message.startswith("Stopping sipedge.service")]
    assert len(stops) == 1, entries
    ready = [t for t, message in entries if t > stops[0] and "sipedge ready" in message]
    assert ready, entries
    return stops[0], ready[0]


# --- playbook runs ---------------------------------------------------------------------

def run_site(directory, *options, edges=None, **group_vars):
    """ansible-playbook voip.sip_edge.site [options] with the scenario's inventory, its
    group_vars changed as given; `edges` (container names) replaces the group sip_edge."""
    inventory = directory / "inventory"
    shutil.rmtree(inventory, ignore_errors=True)
    (inventory / "group_vars").mkdir(parents=True)
    with open(os.environ["MOLECULE_INVENTORY_FILE"], encoding="utf-8") as handle:
        hosts_file = yaml.safe_load(handle)
    if edges is not None:
        connection = next(iter(hosts_file["all"]["hosts"].values()))
        hosts_file = {"sip_edge": {"hosts": {name: dict(connection) for name in edges}}}
    (inventory / "hosts.yml").write_text(yaml.safe_dump(hosts_file), encoding="utf-8")
    (inventory / "group_vars" / "sip_edge.yml").write_text(yaml.safe_dump(dict(INVENTORY, **group_vars)), encoding="utf-8")
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory), *options,
               "voip.sip_edge.site"]
    started = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    print("\n$ %s  (group_vars %s; %.0f s, exit code %d)\n%s%s" % (
        " ".join(command[1:]), group_vars, time.monotonic() - started, result.returncode,
        result.stdout[-3000:], result.stderr[-3000:]))
    return result


def recap(result):
    """{host: {'ok': n, 'changed': n, 'failed': n, ...}} from the PLAY RECAP."""
    return {host: {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", counters)}
            for host, counters in re.findall(r"^(\S+)\s+: (ok=.*)$", result.stdout, re.M)}


def rolled(result):
    """The hosts the rolling play of site.yml reached, in order."""
    if "PLAY [Roll the router" not in result.stdout:
        return []
    play = result.stdout.split("PLAY [Roll the router", 1)[1].split("PLAY RECAP", 1)[0]
    return list(dict.fromkeys(re.findall(r"^(?:ok|changed|skipping|failed|fatal): \[([^]\s]+)", play, re.M)))


def copy_tree(source, target):
    """A copy of a directory tree (the router's sources), without build leftovers."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache"))


def task_runs(result, task):
    """[(host, status), ...] of every run of the tasks whose name starts with `task`, in order."""
    runs = []
    for block in re.split(r"^TASK \[", result.stdout, flags=re.M)[1:]:
        name = block.split("]", 1)[0]
        if re.sub(r"^[\w.]+ : ", "", name).startswith(task):
            runs += [(host, status) for status, host in
                     re.findall(r"^(ok|changed|skipping|failed|fatal): \[([^]\s]+)", block, re.M)]
    return runs


def task_results(result, task):
    """{host: status} of the task whose name starts with `task` (the last time it ran)."""
    return dict(task_runs(result, task))


# --- calls from the client ------------------------------------------------------------------

@dataclass
class Call:
    number: int
    started: float
    completed: float = None
    answered_by: str = None


class Caller:
    """A SIPp UAC on the client placing calls for `domain` through one edge, in the background.

    Bounded: at most `count` calls, SIPp's own global timeout, and stop() (SIGUSR1 to its PID:
    no new calls, the ones in progress finish)."""

    def __init__(self, client, name, edge, domain, port):
        self.client, self.name, self.edge, self.domain, self.port = client, name, edge, domain, port

    def start(self, rate, count, limit=None, recv_timeout_ms=5000):
        self.client.check_output("mkdir -p %s && rm -f %s/%s.*", WORK, WORK, self.name)
        self.client.check_output(
            "cd %s && setsid sh -c 'sipp -sf %s/uac.xml -set domain %s -i %s -p %s -r %s -m %s -l %s -nostdin"
            " -recv_timeout %s -timeout 240s -timeout_error -trace_logs -log_file %s.log -trace_msg -message_file %s.msg"
            " %s:5060 > %s.out 2>&1 & echo $! > %s.pid; wait $!; echo $? > %s.rc' > /dev/null 2>&1 &",
            WORK, SIPP_DIR, self.domain, IP["client"], str(self.port), str(rate), str(count), str(limit or count),
            str(recv_timeout_ms), self.name, self.name, IP[self.edge], self.name, self.name, self.name)
        assert wait_for(lambda: self.client.run("test -s %s/%s.pid", WORK, self.name).rc == 0), "SIPp did not start"
        return self

    def _rc(self):
        return self.client.run("cat %s/%s.rc", WORK, self.name).stdout.strip()

    def exit_code(self, timeout=60):
        """SIPp's exit code (0: every call completed) once it ended; None while it runs."""
        rc = wait_for(self._rc, timeout=timeout)
        return int(rc) if rc else None

    def stop(self):
        pid = self.client.check_output("cat %s/%s.pid", WORK, self.name)
        self.client.run("kill -USR1 %s", pid)
        return self.exit_code()

    def calls(self):
        """Every call placed so far, by number."""
        calls = {}
        log = self.client.run("cat %s/%s.log", WORK, self.name).stdout
        for number, state, epoch in re.findall(r"^call (\d+) (started|completed) .*\t(\d+\.\d+)$", log, re.M):
            if state == "started":
                calls[int(number)] = Call(int(number), float(epoch))
            else:
                calls[int(number)].completed = float(epoch)
        for backend, number in re.findall(r"^answered_by=(\S+) .* call_id=(\d+)-", log, re.M):
            calls[int(number)].answered_by = backend
        return [calls[number] for number in sorted(calls)]

    def completed(self):
        return sum(1 for call in self.calls() if call.completed)

    def messages(self):
        return self.client.run("cat %s/%s.msg", WORK, self.name).stdout

    def run(self, count, rate=10, limit=1, recv_timeout_ms=5000, timeout=60):
        """Place `count` calls (one at a time by default) and wait for the end; (exit code, calls)."""
        self.start(rate, count, limit, recv_timeout_ms)
        return self.exit_code(timeout), self.calls()
