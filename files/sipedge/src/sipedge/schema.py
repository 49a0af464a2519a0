"""The one definition of the routing DB schema, and its forward migrations.

Schema version N is stored as `PRAGMA user_version = N`.  Version 1 is the
seed's two tables column for column (so an existing Kamailio routing DB keeps
working), the seed's two indexes, and a unique index on
dispatcher(setid, destination).  Version 2 adds Kamailio's `description`
column to `dispatcher` (who a destination belongs to, for the operator
reading the DB), so the table is Kamailio's stock `dispatcher` column for
column.  Extra columns and extra tables (Kamailio's `version`) are left alone.

This file is also the Ansible modules' copy of the schema: the collection's
`plugins/module_utils/sipedge_schema.py` is a symlink to it (docs/CONTRACT.md),
so it stays standard library only and runs on the node's Python.

`ensure_schema` runs in one `BEGIN IMMEDIATE` transaction: either the DB ends
up at SCHEMA_VERSION or nothing changed.  It never deletes a row.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Callable, Optional
from urllib.request import pathname2url

SCHEMA_VERSION = 2

TABLES = {
    "sip_domains": """CREATE TABLE sip_domains (
    domain TEXT PRIMARY KEY,
    dispatcher_setid INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    comment TEXT
)""",
    "dispatcher": """CREATE TABLE dispatcher (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    setid INTEGER NOT NULL,
    destination TEXT NOT NULL,
    flags INTEGER DEFAULT 0,
    priority INTEGER DEFAULT 0,
    attrs TEXT,
    description TEXT
)""",
}

# IF NOT EXISTS lets the migration add what a seed DB lacks (SQLite does not store those words)
INDEXES = {
    "idx_sip_domains_enabled": "CREATE INDEX IF NOT EXISTS idx_sip_domains_enabled ON sip_domains(enabled)",
    "idx_dispatcher_setid": "CREATE INDEX IF NOT EXISTS idx_dispatcher_setid ON dispatcher(setid)",
    "uq_dispatcher_setid_destination": "CREATE UNIQUE INDEX IF NOT EXISTS uq_dispatcher_setid_destination ON dispatcher(setid, destination)",
}

# The columns the router and the modules use, per table (others are tolerated).
COLUMNS = {
    "sip_domains": ("domain", "dispatcher_setid", "enabled", "comment"),
    "dispatcher": ("id", "setid", "destination", "flags", "priority", "attrs", "description"),
}
# What version 1 required: the seed's columns (migration 1 -> 2 adds the rest).
COLUMNS_V1 = {"sip_domains": COLUMNS["sip_domains"], "dispatcher": COLUMNS["dispatcher"][:6]}

DDL = tuple(TABLES.values()) + tuple(INDEXES.values())
SCHEMA_SQL = ";\n".join(DDL) + ";\n"


class SchemaError(Exception):
    """The DB cannot be brought to (or read at) the current schema; the message says why."""


def _connect(path: str, read_only: bool = False) -> sqlite3.Connection:
    if read_only:
        if not os.path.exists(path):
            raise SchemaError("%s: no such file" % path)
        target, uri = "file:%s?mode=ro" % pathname2url(os.path.abspath(path)), True
    else:
        target, uri = path, False
    try:
        return sqlite3.connect(target, uri=uri, isolation_level=None, timeout=5.0)
    except sqlite3.Error as exc:
        raise SchemaError("%s: cannot open: %s" % (path, exc)) from exc


def _user_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def _tables(conn: sqlite3.Connection) -> set[str]:
    rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return {name for (name,) in rows}


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute("PRAGMA table_info(%s)" % table)}


def check_tables(conn: sqlite3.Connection, path: str, columns: Optional[dict] = None) -> None:
    """Raise SchemaError unless both routing tables exist with their columns
    (`columns`: table -> names, default the current COLUMNS)."""
    tables = _tables(conn)
    for table, wanted in (columns or COLUMNS).items():
        if table not in tables:
            raise SchemaError("%s: table %s is missing" % (path, table))
        missing = [c for c in wanted if c not in _columns(conn, table)]
        if missing:
            raise SchemaError("%s: table %s lacks column(s) %s" % (path, table, ", ".join(missing)))


def _create(conn: sqlite3.Connection) -> None:
    for statement in DDL:
        conn.execute(statement)


def _migrate_0_to_1(conn: sqlite3.Connection, path: str) -> None:
    """Adopt a DB made by the seed's DDL (or Kamailio's stock one): add the indexes."""
    tables = _tables(conn)
    if not tables & set(TABLES):
        raise SchemaError("%s: has tables (%s) but no routing table; refusing to touch another application's DB"
                          % (path, ", ".join(sorted(tables))))
    for table, ddl in TABLES.items():
        if table not in tables:
            conn.execute(ddl)
    check_tables(conn, path, COLUMNS_V1)
    dupes = conn.execute(
        "SELECT setid, destination, group_concat(id, ',') FROM dispatcher"
        " GROUP BY setid, destination HAVING count(*) > 1 ORDER BY min(id)").fetchall()
    if dupes:
        listed = "; ".join("setid %s destination %s (ids %s)" % row for row in dupes)
        raise SchemaError("%s: dispatcher has duplicate (setid, destination) rows: %s; remove the extra rows and run again"
                          % (path, listed))
    for ddl in INDEXES.values():
        conn.execute(ddl)


def _migrate_1_to_2(conn: sqlite3.Connection, _path: str) -> None:
    """Add dispatcher.description unless the DB has it (Kamailio's stock DDL does)."""
    if "description" not in _columns(conn, "dispatcher"):
        conn.execute("ALTER TABLE dispatcher ADD COLUMN description TEXT")


# MIGRATIONS[n] brings version n to n + 1.
MIGRATIONS: list[Callable[[sqlite3.Connection, str], None]] = [_migrate_0_to_1, _migrate_1_to_2]


def ensure_schema(path: str) -> str:
    """Create or migrate the routing DB; returns 'created', 'migrated N -> M' or 'up to date'."""
    conn = _connect(path)
    try:
        return _ensure(conn, path)
    except sqlite3.DatabaseError as exc:
        raise SchemaError("%s: %s" % (path, exc)) from exc
    finally:
        conn.close()


def _ensure(conn: sqlite3.Connection, path: str) -> str:
    # journal_mode cannot change inside a transaction; it is persistent once set
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            raise SchemaError("%s: cannot switch to WAL journal mode" % path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = _user_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaError("%s: schema version %d is newer than this sipedge knows (%d); upgrade sipedge"
                              % (path, version, SCHEMA_VERSION))
        if version == SCHEMA_VERSION:
            check_tables(conn, path)
            conn.execute("ROLLBACK")  # nothing written: readers see no change
            return "up to date"
        if version == 0 and not _tables(conn):
            _create(conn)
            result = "created"
        else:
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn, path)
            result = "migrated %d -> %d" % (version, SCHEMA_VERSION)
        # PRAGMA takes no bound parameters; the value is our own int
        conn.execute("PRAGMA user_version = %d" % SCHEMA_VERSION)
        conn.execute("COMMIT")
        return result
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def read_version(path: str) -> int:
    """PRAGMA user_version of an existing DB, opened read-only."""
    conn = _connect(path, read_only=True)
    try:
        return _user_version(conn)
    except sqlite3.DatabaseError as exc:
        raise SchemaError("%s: %s" % (path, exc)) from exc
    finally:
        conn.close()
