"""Fixtures of the tenants scenario's testinfra tests."""

import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
from sip_testinfra import SERVICE, collection_root  # noqa: E402 pylint: disable=wrong-import-position

SCENARIO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROLE = os.path.join(collection_root(), "roles", "tenants")


@pytest.fixture(scope="module")
def first_pid(host):
    """The router's PID when the verifier starts (after converge and idempotence)."""
    return int(host.check_output("systemctl show -p MainPID --value %s", SERVICE))
