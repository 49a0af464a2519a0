"""module_utils.routing_db against real SQLite files."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from ansible_collections.voip.sip_edge.plugins.module_utils import routing, routing_db, sipedge_schema
from ansible_collections.voip.sip_edge.plugins.module_utils.routing_db import RoutingDBError, connect

COLLECTION = Path(__file__).resolve().parents[4]


def test_module_utils_schema_is_the_routers_schema():
    """The modules and the router share one schema definition (docs/CONTRACT.md)."""
    shipped = Path(sipedge_schema.__file__)
    router = COLLECTION / 'files' / 'sipedge' / 'src' / 'sipedge' / 'schema.py'
    assert shipped.read_bytes() == router.read_bytes()


def test_missing_db_is_refused_and_not_created(tmp_path):
    path = str(tmp_path / 'routing.db')
    for read_only in (True, False):
        with pytest.raises(RoutingDBError, match='no such routing DB; the router role creates it with "sipedge db init", the modules never do'):
            connect(path, read_only)
    assert not os.listdir(tmp_path)


def test_other_schema_version_is_refused_saying_so(db, sql):
    sql(db, 'PRAGMA user_version = 1')
    with pytest.raises(RoutingDBError) as info:
        connect(db, read_only=False)
    assert 'schema version 1, the modules need version %d' % sipedge_schema.SCHEMA_VERSION in str(info.value)
    assert '"sipedge db init --db %s" migrates it' % db in str(info.value)
    assert sql(db, 'PRAGMA user_version') == [(1,)]


def test_newer_schema_version_is_refused(db, sql):
    sql(db, 'PRAGMA user_version = 3')
    with pytest.raises(RoutingDBError, match='schema version 3, the modules need version 2'):
        connect(db, read_only=True)


def test_empty_sqlite_file_is_refused(tmp_path):
    path = str(tmp_path / 'other.db')
    sqlite3.connect(path).close()
    Path(path).write_bytes(b'')
    with pytest.raises(RoutingDBError, match='schema version 0'):
        connect(path, read_only=True)


def test_not_a_database_is_refused(tmp_path):
    path = tmp_path / 'routing.db'
    path.write_text('hello, not SQLite ' * 100)
    with pytest.raises(RoutingDBError, match='file is not a database'):
        connect(str(path), read_only=False)
    assert path.read_text().startswith('hello')


def test_missing_column_is_refused(db, sql):
    sql(db, 'ALTER TABLE dispatcher DROP COLUMN description')
    with pytest.raises(RoutingDBError, match='table dispatcher lacks column.*description'):
        connect(db, read_only=True)


def test_read_only_connection_cannot_write(db):
    conn = connect(db, read_only=True)
    try:
        with pytest.raises(sqlite3.OperationalError, match='readonly'):
            conn.execute("INSERT INTO sip_domains VALUES ('a.example', 1, 1, NULL)")
    finally:
        conn.close()


def test_read_write_connection_keeps_wal(db, sql):
    sql(db, 'PRAGMA journal_mode = DELETE')
    connect(db, read_only=False).close()
    assert sql(db, 'PRAGMA journal_mode') == [('wal',)]


def test_write_then_read_gives_the_planned_rows(db):
    domain = {'domain': 'a.example', 'setid': 1, 'enabled': False, 'comment': 'acme'}
    destination = {'setid': 1, 'uri': 'sip:h', 'priority': 3, 'weight': 9, 'attrs': {'duid': 'x'}, 'admin_state': 'disabled',
                   'description': 'acme'}
    desired = [(routing.DOMAINS, {('a.example',): domain}), (routing.DESTINATIONS, {(1, 'sip:h'): destination})]
    conn = connect(db, read_only=False)
    try:
        for table, rows in desired:
            routing_db.write(conn, table, routing.plan_table(table, routing_db.read_rows(conn, table), rows))
        for table, rows in desired:
            assert routing_db.read_rows(conn, table) == rows
    finally:
        conn.close()


def test_update_changes_only_the_disabled_bit_of_flags(db, sql):
    sql(db, "INSERT INTO dispatcher (setid, destination, flags, attrs) VALUES (1, 'sip:h', 11, 'weight=5')")
    conn = connect(db, read_only=False)
    try:
        for state, flags in (('disabled', 15), ('active', 11)):
            changes = routing.plan_table(routing.DESTINATIONS, routing_db.read_rows(conn, routing.DESTINATIONS),
                                         {(1, 'sip:h'): {'setid': 1, 'uri': 'sip:h', 'admin_state': state}})
            routing_db.write(conn, routing.DESTINATIONS, changes)
            assert conn.execute('SELECT flags, attrs FROM dispatcher').fetchall() == [(flags, 'weight=5')]
    finally:
        conn.close()


def test_backup_copies_the_db_with_its_owner_and_mode(db, sql):
    sql(db, "INSERT INTO sip_domains VALUES ('a.example', 1, 1, NULL)")
    copy = routing_db.backup(db)
    assert copy.startswith(db + '.') and copy.endswith('~')
    assert sql(copy, 'SELECT domain FROM sip_domains') == [('a.example',)]
    assert sql(copy, 'PRAGMA user_version') == [(sipedge_schema.SCHEMA_VERSION,)]
    original, backup = os.stat(db), os.stat(copy)
    assert (backup.st_uid, backup.st_gid, backup.st_mode & 0o777) == (original.st_uid, original.st_gid, 0o640)
