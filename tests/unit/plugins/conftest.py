"""Fixtures of the module and module_utils tests: a real routing DB."""

from __future__ import annotations

import os
import sqlite3

import pytest

from ansible_collections.voip.sip_edge.plugins.module_utils.sipedge_schema import ensure_schema

# When the tests run as root, the DB belongs to this other user, as it
# belongs to `sipedge` on a node; the files the modules make must follow it.
OWNER = (4242, 4243)


@pytest.fixture
def db(tmp_path):
    """Path of a fresh routing DB made as the router role makes it (sipedge db init)."""
    path = str(tmp_path / 'routing.db')
    ensure_schema(path)
    os.chmod(path, 0o640)
    if os.geteuid() == 0:
        os.chown(path, *OWNER)
    return path


@pytest.fixture
def sql():
    """sql(path, statement, params=()) -> rows, run in its own connection (autocommit)."""
    def run(path, statement, params=()):
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            return conn.execute(statement, params).fetchall()
        finally:
            conn.close()
    return run
