"""Verify playbooks/site.yml with the two tenants of this scenario's inventory.

The container was converged with inventory/group_vars/sip_edge.yml (tenants alpha and beta,
purge on) and the second converge changed nothing. These tests check the rows, place one
SIPp call per tenant through the edge (127.0.0.1:5060) to that tenant's SIPp backend on the
container's loopback, then run the playbook again as an operator would after editing the
inventory: beta removed with purge off (nothing deleted), every tenant removed with purge
on (refused), beta removed with purge on in check mode (reported, not written), then for
real (its rows go). Then beta's calls get nothing back,
alpha's are still answered, and the router was never restarted.

The tests run in file order: the later ones depend on the earlier ones' changes.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from conftest import SCENARIO
from sip_testinfra import (SERVICE, WORK, journal_count, journal_tail, place_call,
                           start_backend, stop_backend, wait_for)

DB = "/var/lib/sipedge/routing.db"
PYTHON = "/opt/sipedge/bin/python"
RELOADED = "routing data reloaded"

with open(os.path.join(SCENARIO, "inventory", "group_vars", "sip_edge.yml"), encoding="utf-8") as _handle:
    INVENTORY = yaml.safe_load(_handle)
TENANTS = {tenant["name"]: tenant for tenant in INVENTORY["sip_edge_tenants"]}

# What the scenario's tenants mean, spelled out: domain, backend name, its address.
CALLS = {
    "alpha": ("alpha.tenants.test", "backend-alpha", "127.0.0.2"),
    "beta": ("beta.tenants.test", "backend-beta", "127.0.0.3"),
}

_ROWS = r"""
import json, sqlite3, sys
conn = sqlite3.connect(sys.argv[1])
print(json.dumps({
    "domains": sorted(conn.execute("SELECT domain, dispatcher_setid, enabled, comment FROM sip_domains")),
    "destinations": sorted(conn.execute("SELECT setid, destination, flags & 4, priority, description FROM dispatcher")),
}))
"""


def rows(host):
    return json.loads(host.check_output("%s -c %s %s", PYTHON, _ROWS, DB))


def expected_rows(*names):
    """The rows the named tenants of the scenario's inventory stand for."""
    domains, destinations = [], []
    for name in names:
        tenant = TENANTS[name]
        domains += [[domain, tenant["setid"], 1, name] for domain in tenant["domains"]]
        destinations += [[tenant["setid"], d["uri"], 0, 0, "%s: %s" % (name, d["description"])]
                         for d in tenant["destinations"]]
    return {"domains": sorted(domains), "destinations": sorted(destinations)}


def run_site(directory, *options, **group_vars):
    """ansible-playbook voip.sip_edge.site --tags sip_edge_tenants [options] on this scenario's
    host, with the scenario's group_vars changed as given (a fresh inventory in directory)."""
    inventory = directory / "inventory"
    (inventory / "group_vars").mkdir(parents=True)
    with open(os.environ["MOLECULE_INVENTORY_FILE"], encoding="utf-8") as handle:
        (inventory / "hosts.yml").write_text(handle.read(), encoding="utf-8")
    (inventory / "group_vars" / "sip_edge.yml").write_text(yaml.safe_dump(dict(INVENTORY, **group_vars)), encoding="utf-8")
    command = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory),
               "--tags", "sip_edge_tenants", *options, "voip.sip_edge.site"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    print("\n$ %s  (with %s)\n%s%s" % (" ".join(command[1:]), group_vars, result.stdout[-2500:], result.stderr[-2500:]))
    return result


def recap(result):
    """The PLAY RECAP counters of the one host, e.g. {'ok': 5, 'changed': 1, 'failed': 0, ...}."""
    line = re.search(r"^\S+\s+: (ok=.*)$", result.stdout, re.M).group(1)
    return {key: int(value) for key, value in re.findall(r"(\w+)=(\d+)", line)}


def reloads(host):
    return journal_count(host, RELOADED)


def call(host, tenant, caller_ip):
    """Start the tenant's backend, place one call to its domain and stop the backend;
    (sipp rc, log, messages, the requests the backend received)."""
    domain, backend, ip = CALLS[tenant]
    start_backend(host, backend, ip)
    rc, log, messages = place_call(host, domain, caller_ip)
    print("\ncall to %s: sipp rc=%s %s" % (domain, rc, log.strip()))
    return rc, log, messages, stop_backend(host, backend)


def assert_answered_by_its_backend(host, tenant, caller_ip):
    rc, log, messages, received = call(host, tenant, caller_ip)
    backend = CALLS[tenant][1]
    assert rc == 0, messages
    assert "answered_by=%s " % backend in log
    assert received == ["INVITE", "ACK", "BYE"], host.run("cat %s/%s.out", WORK, backend).stdout
    # Through the edge: it record-routed itself into the dialog.
    assert re.search(r"^Record-Route: <sip:[^>]*;lr", messages, re.M | re.I), messages


# --- as converged ------------------------------------------------------------------------

def test_the_rows_are_the_inventorys(host, first_pid):
    assert first_pid > 0
    assert rows(host) == expected_rows("alpha", "beta")


@pytest.mark.parametrize("tenant, caller_ip", [("alpha", "127.0.0.11"), ("beta", "127.0.0.12")])
def test_each_tenant_is_answered_by_its_backend(host, tenant, caller_ip):
    assert_answered_by_its_backend(host, tenant, caller_ip)


# --- the inventory changes ----------------------------------------------------------------

def test_without_purge_nothing_is_deleted(host, tmp_path):
    result = run_site(tmp_path, sip_edge_tenants=[TENANTS["alpha"]], sip_edge_tenants_purge=False)
    assert result.returncode == 0
    assert recap(result)["changed"] == 0
    assert "domains 0 added, 0 updated, 0 removed; destinations 0 added, 0 updated, 0 removed" in result.stdout
    assert rows(host) == expected_rows("alpha", "beta")


def test_a_purge_of_every_tenant_is_refused(host, tmp_path):
    """An empty tenant list (a group_vars file gone astray) must not wipe the edge."""
    result = run_site(tmp_path, sip_edge_tenants=[])
    assert result.returncode != 0
    assert recap(result)["failed"] == 1
    assert "purge would remove all 2 rows of sip_domains" in result.stderr
    assert "refused without force" in result.stderr
    assert rows(host) == expected_rows("alpha", "beta")


def test_check_mode_shows_the_purge_and_writes_nothing(host, tmp_path):
    result = run_site(tmp_path, "--check", "--diff", sip_edge_tenants=[TENANTS["alpha"]])
    assert result.returncode == 0
    assert recap(result)["changed"] == 1
    assert ("check mode, nothing written; would be: domains 0 added, 0 updated, 1 removed;"
            " destinations 0 added, 0 updated, 1 removed\"") in result.stdout
    assert "beta.tenants.test" in result.stdout and "sip:127.0.0.3:5070" in result.stdout  # the diff
    assert rows(host) == expected_rows("alpha", "beta")


def test_removing_a_tenant_with_purge_removes_its_rows(host, tmp_path):
    before = reloads(host)
    result = run_site(tmp_path, sip_edge_tenants=[TENANTS["alpha"]])
    assert result.returncode == 0
    assert "[WARNING]" not in result.stderr
    assert recap(result)["changed"] == 1
    report = re.search(r"domains 0 added, 0 updated, 1 removed; destinations 0 added, 0 updated, 1 removed;"
                       r" DB backed up before the purge to (\S+?)\"", result.stdout)
    assert report, result.stdout
    assert host.file(report.group(1)).is_file
    assert rows(host) == expected_rows("alpha")
    # No restart, no handler: the router reads the commit by itself.
    assert wait_for(lambda: reloads(host) > before, timeout=10), journal_tail(host)


# --- and the edge follows ------------------------------------------------------------------

def test_the_removed_tenant_gets_nothing_back(host):
    domain, _backend, _ip = CALLS["beta"]
    knock = "Door-knock blocked: domain=%s src=127.0.0.13" % domain
    before = journal_count(host, knock)
    # beta's backend still runs while the caller waits for an answer: the edge must send it nothing.
    rc, _log, messages, received = call(host, "beta", "127.0.0.13")
    assert rc != 0
    assert "message received" not in messages.lower(), messages
    assert wait_for(lambda: journal_count(host, knock) > before), journal_tail(host)
    assert received == [], "beta's backend got %s" % received


def test_the_remaining_tenant_still_routes(host):
    assert_answered_by_its_backend(host, "alpha", "127.0.0.14")


def test_the_router_was_never_restarted(host, first_pid):
    assert int(host.check_output("systemctl show -p MainPID --value %s", SERVICE)) == first_pid
    # Started once, by the first converge: no restart by the idempotence run or any test.
    assert journal_count(host, "Started sipedge.service", unit="sipedge.service") == 1
