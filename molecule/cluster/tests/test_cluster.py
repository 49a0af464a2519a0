"""The fleet, end to end: two edges converged by playbooks/site.yml, two SIPp backends, a
SIPp caller, all on the scenario's Docker network.

The tests run in file order; each leaves the fleet as the next one expects it:
routing as converged; check mode (the converged edges and a fresh node, with prebuilt
wheels; a package change; a refused value); prebuilt wheels with a wrong sha256; backend1
stopped under load; tenant2 purged by a routing-only run; a run that fails on edge1 after
its config changed (the restart stays pending); the rolling config change under load, each
edge's out-of-service window measured; a listen address that cannot be bound, which stops
the rollout at edge1 while edge2 keeps serving.
"""

import time

import pytest

from conftest import (CONFIG, CONTAINER, EDGES, INVENTORY, IP, MARKER, Caller, collection_root, copy_tree, edge_state,
                      journal_count, out_of_service, recap, rolled, run_site, task_results, task_runs, wait_for)

TENANT1, TENANT2, UNKNOWN = "tenant1.cluster.test", "tenant2.cluster.test", "unknown.cluster.test"
TENANTS = {tenant["name"]: tenant for tenant in INVENTORY["sip_edge_tenants"]}
# The inventory once tenant2 is removed (test_removing_tenant2...): the later runs keep it so.
WITHOUT_TENANT2 = {"sip_edge_tenants": [TENANTS["tenant1"]]}
CHANGED = {"sip_edge_router_timers_fr_inv_timer": 31.0}  # the rolling config change
DOWN = "Asterisk DOWN: sip:%s:5060" % IP["backend1"]
UP = "Asterisk UP: sip:%s:5060" % IP["backend1"]


def names(*edges):
    return [CONTAINER % edge for edge in edges]


# --- routing, as converged --------------------------------------------------------------------

@pytest.mark.parametrize("edge, port", [("edge1", 5061), ("edge2", 5062)])
def test_tenant1_calls_complete_and_alternate_between_the_backends(hosts, edge, port):
    rc, calls = Caller(hosts["client"], "t1-" + edge, edge, TENANT1, port).run(count=6)
    answered = [call.answered_by for call in calls]
    print("\ntenant1 through %s: answered by %s" % (edge, answered))
    assert rc == 0 and len(calls) == 6 and all(call.completed for call in calls)
    assert set(answered) == {"backend1", "backend2"}
    assert all(a != b for a, b in zip(answered, answered[1:])), answered  # round robin


@pytest.mark.parametrize("edge, port", [("edge1", 5061), ("edge2", 5062)])
def test_tenant2_reaches_only_backend2(hosts, edge, port):
    rc, calls = Caller(hosts["client"], "t2-" + edge, edge, TENANT2, port).run(count=4)
    assert rc == 0 and len(calls) == 4 and all(call.completed for call in calls)
    assert {call.answered_by for call in calls} == {"backend2"}


@pytest.mark.parametrize("edge, port", [("edge1", 5061), ("edge2", 5062)])
def test_an_unknown_domain_gets_nothing_back(hosts, edge, port):
    knock = "Door-knock blocked: domain=%s src=%s" % (UNKNOWN, IP["client"])
    before = journal_count(hosts[edge], knock)
    caller = Caller(hosts["client"], "unknown-" + edge, edge, UNKNOWN, port)
    rc, calls = caller.run(count=1, recv_timeout_ms=2000)
    assert rc != 0 and not any(call.completed for call in calls)
    assert "message received" not in caller.messages().lower(), caller.messages()
    assert wait_for(lambda: journal_count(hosts[edge], knock) > before)


# --- check mode ------------------------------------------------------------------------------

def test_check_mode_reports_nothing_on_the_converged_edges_and_the_install_on_a_fresh_node(hosts, tmp_path,
                                                                                           prebuilt_wheels):
    """site.yml --check on the two edges plus the client container, which has never been an
    edge, with the wheels given prebuilt (and their sha256) instead of built by the run: the
    same content as converge installed, so the edges have nothing to change."""
    fresh = CONTAINER % "client"
    # check mode restarts nothing: all three at once
    result = run_site(tmp_path, "--check", "-e", "sip_edge_serial=3", edges=names(*EDGES) + [fresh],
                      sip_edge_router_wheels=prebuilt_wheels)
    assert result.returncode == 0
    assert set(task_results(result, "Build the sipedge wheel").values()) <= {"skipping"}  # given, not built
    changed = {host: counters["changed"] for host, counters in recap(result).items()}
    print("\ncheck mode, tasks reported changed: %s" % changed)
    assert changed[CONTAINER % "edge1"] == changed[CONTAINER % "edge2"] == 0
    assert recap(result)[fresh]["failed"] == 0 and changed[fresh] >= 10
    for task in ("Create the venv", "Copy the wheels to the node", "Mark a restart as pending on the node",
                 "Install it on the node", "Report the rows a real run would write"):
        assert task_results(result, task)[fresh] == "changed", task
    assert "check mode, nothing written: /var/lib/sipedge/routing.db does not exist yet" in result.stdout
    for path in ("/opt/sipedge", "/etc/sipedge", "/var/lib/sipedge", "/etc/systemd/system/sipedge.service"):
        assert not hosts["client"].file(path).exists, path
    assert not hosts["client"].user("sipedge").exists


def test_check_mode_shows_a_package_change_and_its_restart(hosts, tmp_path):
    """A changed router source (one comment more): check mode says the wheels and the restart."""
    source = tmp_path / "sipedge"
    copy_tree(collection_root() + "/files/sipedge", source)
    with open(source / "src" / "sipedge" / "__init__.py", "a", encoding="utf-8") as handle:
        handle.write("# a change that makes another package\n")
    before = edge_state(hosts["edge1"])
    stamp = hosts["edge1"].file("/opt/sipedge/wheels/.installed").content_string
    result = run_site(tmp_path, "--check", "--limit", CONTAINER % "edge1", sip_edge_router_source_dir=str(source))
    assert result.returncode == 0
    edge1 = CONTAINER % "edge1"
    assert task_results(result, "Copy the wheels to the node") == {edge1: "changed"}
    assert task_results(result, "Restart sipedge") == {edge1: "changed"}
    assert edge_state(hosts["edge1"]) == before
    assert hosts["edge1"].file("/opt/sipedge/wheels/.installed").content_string == stamp
    assert not hosts["edge1"].file(MARKER).exists


def test_check_mode_refuses_a_value_the_router_would_refuse(hosts, tmp_path):
    before = {edge: edge_state(hosts[edge]) for edge in EDGES}
    result = run_site(tmp_path, "--check", sip_edge_router_timers_fr_timer=-1.0)
    assert result.returncode != 0
    assert "sip_edge_router_timers_fr_timer: must be >= 0.001 (got -1.0)" in result.stdout + result.stderr
    assert {edge: edge_state(hosts[edge]) for edge in EDGES} == before


def test_a_prebuilt_wheel_with_another_sha256_is_refused_before_any_node_changes(hosts, tmp_path, prebuilt_wheels):
    before = {edge: edge_state(hosts[edge]) for edge in EDGES}
    wrong = [dict(wheel, sha256="0" * 64) if "/sipedge-" in wheel["path"] else wheel for wheel in prebuilt_wheels]
    result = run_site(tmp_path, sip_edge_router_wheels=wrong)
    assert result.returncode != 0
    assert "expected %s: not installing it" % ("0" * 64) in result.stdout + result.stderr
    assert rolled(result) == []
    assert {edge: edge_state(hosts[edge]) for edge in EDGES} == before


# --- health under load ---------------------------------------------------------------------------

def test_stopping_backend1_under_load_fails_no_call(hosts):
    """Both edges carry tenant1's calls (10 a second each) while backend1 stops gracefully:
    its calls in progress end, then it answers nothing. The edges fail its next calls over
    to backend2 and take it out of rotation: no call fails, each edge logs DOWN once."""
    downs = {edge: journal_count(hosts[edge], DOWN) for edge in EDGES}
    callers = [Caller(hosts["client"], "steady-" + edge, edge, TENANT1, port).start(rate=10, count=120, limit=10)
               for edge, port in (("edge1", 5061), ("edge2", 5062))]
    assert wait_for(lambda: all(caller.completed() >= 20 for caller in callers), timeout=20)
    stopped = time.time()
    hosts["backend1"].check_output("systemctl stop sipp-uas.service")
    assert wait_for(lambda: all(journal_count(hosts[edge], DOWN) > downs[edge] for edge in EDGES), timeout=10)
    for caller in callers:
        assert caller.exit_code(timeout=60) == 0, caller.client.run("tail -n 30 /tmp/sipedge-test/%s.out", caller.name).stdout
        calls = caller.calls()
        after = [call for call in calls if call.started > stopped + 2]
        print("\n%s: %d calls, all completed; %d after backend1 stopped, answered by %s"
              % (caller.edge, len(calls), len(after), sorted({call.answered_by for call in after})))
        assert len(calls) == 120 and all(call.completed for call in calls)
        assert after and {call.answered_by for call in after} == {"backend2"}
    assert {edge: journal_count(hosts[edge], DOWN) for edge in EDGES} == {edge: downs[edge] + 1 for edge in EDGES}
    # backend1 back: the keep-alives put it back into rotation on both edges
    ups = {edge: journal_count(hosts[edge], UP) for edge in EDGES}
    hosts["backend1"].check_output("systemctl start sipp-uas.service")
    assert wait_for(lambda: all(journal_count(hosts[edge], UP) > ups[edge] for edge in EDGES), timeout=10)


# --- routing-only change ---------------------------------------------------------------------------

def test_removing_tenant2_with_purge_restarts_nothing_and_its_calls_get_nothing(hosts, tmp_path):
    before = {edge: edge_state(hosts[edge]) for edge in EDGES}
    reloads = {edge: journal_count(hosts[edge], "routing data reloaded") for edge in EDGES}
    result = run_site(tmp_path, "--tags", "sip_edge_tenants", "-e", "sip_edge_serial=2", **WITHOUT_TENANT2)
    assert result.returncode == 0
    # the router role's preflight runs under every tag; nothing else of it does
    assert task_results(result, "Check that the node runs Debian 12 or newer") == {name: "ok" for name in names(*EDGES)}
    assert task_results(result, "Render it on the controller") == {}
    assert result.stdout.count("domains 0 added, 0 updated, 1 removed; destinations 0 added, 0 updated, 1 removed") == 2
    assert wait_for(lambda: all(journal_count(hosts[edge], "routing data reloaded") > reloads[edge] for edge in EDGES))
    for edge, port in (("edge1", 5061), ("edge2", 5062)):
        caller = Caller(hosts["client"], "t2-gone-" + edge, edge, TENANT2, port)
        rc, calls = caller.run(count=1, recv_timeout_ms=2000)
        assert rc != 0 and not any(call.completed for call in calls)
        assert "message received" not in caller.messages().lower(), caller.messages()
    assert {edge: edge_state(hosts[edge]) for edge in EDGES} == before


# --- restarts --------------------------------------------------------------------------------------

def test_a_run_failing_after_the_config_changed_leaves_the_restart_pending(hosts, tmp_path):
    """edge1's routing DB is locked (say, by a backup) while the run changes a timer: the
    config is written, `sipedge db init` fails, the run stops at edge1 before any restart."""
    before = {edge: edge_state(hosts[edge]) for edge in EDGES}
    lock = ("import sqlite3, time; db = sqlite3.connect('/var/lib/sipedge/routing.db', isolation_level=None);"
            " db.execute('BEGIN IMMEDIATE'); print('locked', flush=True); time.sleep(60)")
    hosts["edge1"].check_output("systemd-run --unit cluster-db-lock --uid sipedge /opt/sipedge/bin/python -c %s", lock)
    try:
        assert wait_for(lambda: "locked" in hosts["edge1"].run("journalctl -u cluster-db-lock -o cat -q").stdout)
        result = run_site(tmp_path, **WITHOUT_TENANT2, **CHANGED)
    finally:
        hosts["edge1"].run("systemctl stop cluster-db-lock")
    assert result.returncode != 0
    assert "database is locked" in result.stdout + result.stderr
    assert rolled(result) == names("edge1")  # the rollout stopped there
    edge1 = edge_state(hosts["edge1"])
    assert edge1["pid"] == before["edge1"]["pid"] and edge1["config"] != before["edge1"]["config"]
    assert "fr_inv_timer = 31.0" in hosts["edge1"].file(CONFIG).content_string
    assert hosts["edge1"].file(MARKER).exists
    assert edge_state(hosts["edge2"]) == before["edge2"]


def test_a_rolling_config_change_under_load(hosts, tmp_path):
    """The next run (same inventory) restarts edge1 (pending from the failed run) and then
    edge2 (config changed), one at a time, while the client calls through both edges."""
    before = {edge: edge_state(hosts[edge]) for edge in EDGES}
    callers = {edge: Caller(hosts["client"], "roll-" + edge, edge, TENANT1, port).start(rate=10, count=2000, limit=20)
               for edge, port in (("edge1", 5061), ("edge2", 5062))}
    assert wait_for(lambda: all(caller.completed() >= 5 for caller in callers.values()), timeout=20)
    since = time.time()
    result = run_site(tmp_path, **WITHOUT_TENANT2, **CHANGED)
    for caller in callers.values():
        assert caller.stop() is not None
    assert result.returncode == 0
    # the wheels were built once for the run, not once per batch
    assert [status for _host, status in task_runs(result, "Build the sipedge wheel") if status != "skipping"] == ["ok"]
    after = {edge: edge_state(hosts[edge]) for edge in EDGES}
    for edge in EDGES:
        assert after[edge]["pid"] != before[edge]["pid"]
        assert int(after[edge]["starts"]) == int(before[edge]["starts"]) + 1
        assert "fr_inv_timer = 31.0" in hosts[edge].file(CONFIG).content_string
        assert not hosts[edge].file(MARKER).exists
    windows = {edge: out_of_service(hosts[edge], since) for edge in EDGES}
    assert windows["edge1"][1] < windows["edge2"][0], windows  # never both edges down
    for edge, other in (("edge1", "edge2"), ("edge2", "edge1")):
        start, end = windows[edge]
        calls = callers[edge].calls()
        failed = [call for call in calls if not call.completed]
        during = [call for call in calls if start <= call.started <= end and call.completed]
        # calls through the other edge while this one was out: all completed
        meanwhile = [call for call in callers[other].calls() if start - 1 <= call.started <= end + 1]
        print("\n%s out of service for %.3f s (SIGTERM to READY=1); through it %d calls, %d failed, %d started in the"
              " window (the longest took %.2f s: an INVITE in the gap is retransmitted to the new process);"
              " through %s meanwhile %d calls, all completed"
              % (edge, end - start, len(calls), len(failed), len(during),
                 max((call.completed - call.started for call in during), default=0), other, len(meanwhile)))
        assert meanwhile and all(call.completed for call in meanwhile)
        assert all(start - 1 <= call.started <= end + 1 for call in failed), (windows, failed)


def test_a_listen_address_that_cannot_be_bound_stops_the_rollout_at_the_first_edge(hosts, tmp_path):
    """check-config accepts the address; the bind fails: edge1's start fails, the host fails
    with its journal's last lines, and edge2 is never touched and keeps serving."""
    before = edge_state(hosts["edge2"])
    result = run_site(tmp_path, **WITHOUT_TENANT2, **CHANGED, sip_edge_router_sip_listen=["udp:172.16.211.99:5060"])
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "sipedge.service did not come up on %s" % (CONTAINER % "edge1") in output
    assert "Last lines of its journal" in output and "Cannot assign requested address" in output
    assert rolled(result) == names("edge1")
    assert edge_state(hosts["edge2"]) == before
    rc, calls = Caller(hosts["client"], "after-bind-failure", "edge2", TENANT1, 5062).run(count=2)
    assert rc == 0 and all(call.completed for call in calls)
