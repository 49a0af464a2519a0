"""Shared helpers of the default scenario's testinfra tests."""

import os
import time

import pytest

SERVICE = "sipedge.service"
VENV = "/opt/sipedge"
SIPEDGE = VENV + "/bin/sipedge"
CONFIG = "/etc/sipedge/sipedge.toml"
DB = "/var/lib/sipedge/routing.db"
SIPP_DIR = "/opt/sipedge-test/sipp"
WORK = "/tmp/sipedge-test"


def collection_root():
    """The collection checkout Molecule runs from (the controller side)."""
    return os.environ.get("MOLECULE_PROJECT_DIRECTORY") or os.path.abspath(
        os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def journal_count(host, text, unit=SERVICE):
    """How many journal lines of the unit contain text (compare before/after an action)."""
    out = host.run("journalctl -u %s --no-pager -o cat -q | grep -cF -- %s", unit, text).stdout
    return int(out.strip() or 0)


def journal_tail(host, lines=30, unit=SERVICE):
    return host.run("journalctl -u %s --no-pager -o cat -q -n %s", unit, str(lines)).stdout


def wait_for(predicate, timeout=10.0, step=0.2):
    """Poll predicate() until it returns something truthy; return it, or the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


@pytest.fixture(scope="module")
def main_pid(host):
    return int(host.check_output("systemctl show -p MainPID --value %s", SERVICE))
