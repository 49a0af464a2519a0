"""Shared helpers of the default scenario's testinfra tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from sip_testinfra import (SERVICE, SIPP_DIR, WORK, collection_root,  # noqa: E402,F401 pylint: disable=unused-import
                           journal_count, journal_tail, place_call, start_backend, stop_backend, wait_for)

VENV = "/opt/sipedge"
SIPEDGE = VENV + "/bin/sipedge"
CONFIG = "/etc/sipedge/sipedge.toml"
DB = "/var/lib/sipedge/routing.db"


@pytest.fixture(scope="module")
def main_pid(host):
    return int(host.check_output("systemctl show -p MainPID --value %s", SERVICE))
