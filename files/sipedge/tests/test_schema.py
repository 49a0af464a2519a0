"""Unit tests of sipedge.schema: create, migrate from the seed / Kamailio DDL, errors."""

import sqlite3

import pytest

from sipedge import schema
from sipedge.schema import SCHEMA_VERSION, SchemaError, ensure_schema, read_version

# The seed's DDL, verbatim (the seed's notes, "Database Layout"; tests/kamailio/reference.py has it too)
SEED_DDL = """
CREATE TABLE sip_domains (
    domain TEXT PRIMARY KEY,
    dispatcher_setid INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    comment TEXT
);

CREATE INDEX idx_sip_domains_enabled
ON sip_domains(enabled);

CREATE TABLE dispatcher (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    setid INTEGER NOT NULL,
    destination TEXT NOT NULL,
    flags INTEGER DEFAULT 0,
    priority INTEGER DEFAULT 0,
    attrs TEXT
);

CREATE INDEX idx_dispatcher_setid
ON dispatcher(setid);
"""

# Kamailio's stock SQLite schema for dispatcher (utils/kamctl/db_sqlite), with its version table
KAMAILIO_DDL = """
CREATE TABLE version (id INTEGER PRIMARY KEY NOT NULL, table_name VARCHAR(32) NOT NULL,
    table_version INTEGER DEFAULT 0 NOT NULL, CONSTRAINT version_t_name_idx UNIQUE (table_name));
INSERT INTO version (table_name, table_version) VALUES ('dispatcher', 4);
CREATE TABLE dispatcher (
    id INTEGER PRIMARY KEY NOT NULL,
    setid INTEGER DEFAULT 0 NOT NULL,
    destination VARCHAR(192) DEFAULT '' NOT NULL,
    flags INTEGER DEFAULT 0 NOT NULL,
    priority INTEGER DEFAULT 0 NOT NULL,
    attrs VARCHAR(198) DEFAULT '' NOT NULL,
    description VARCHAR(64) DEFAULT '' NOT NULL
);
CREATE TABLE sip_domains (domain TEXT PRIMARY KEY, dispatcher_setid INTEGER NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1, comment TEXT);
"""

SEED_ROWS = """
INSERT INTO sip_domains (domain, dispatcher_setid) VALUES ('tenant1.example.com', 10);
INSERT INTO sip_domains (domain, dispatcher_setid, enabled) VALUES ('tenant2.example.com', 20, 0);
INSERT INTO dispatcher (setid, destination, priority) VALUES (10, 'sip:10.0.1.10:5060', 0);
INSERT INTO dispatcher (setid, destination, priority) VALUES (10, 'sip:10.0.1.11:5060', 10);
INSERT INTO dispatcher (setid, destination, priority) VALUES (20, 'sip:10.0.2.20:5060', 0);
"""


def build(path, script):
    conn = sqlite3.connect(path)
    conn.executescript(script)
    conn.close()


def query(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def columns(path, table):
    return query(path, "PRAGMA table_info(%s)" % table)


def indexes(path):
    return {name for (name,) in query(path, "SELECT name FROM sqlite_master WHERE type = 'index' AND name NOT LIKE 'sqlite_%'")}


@pytest.fixture(name="db")
def fixture_db(tmp_path):
    return str(tmp_path / "routing.db")


def test_create(db):
    assert ensure_schema(db) == "created"
    assert read_version(db) == SCHEMA_VERSION == 2
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    assert indexes(db) == {"idx_sip_domains_enabled", "idx_dispatcher_setid", "uq_dispatcher_setid_destination"}
    conn = sqlite3.connect(db)
    conn.execute("INSERT INTO dispatcher (setid, destination) VALUES (10, 'sip:10.0.1.10')")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO dispatcher (setid, destination) VALUES (10, 'sip:10.0.1.10')")
    conn.execute("INSERT INTO dispatcher (setid, destination) VALUES (20, 'sip:10.0.1.10')")  # other set: fine
    assert conn.execute("SELECT flags, priority, attrs, description FROM dispatcher WHERE id = 1").fetchone() == (0, 0, None, None)
    conn.close()


def test_tables_are_the_seed_column_for_column_plus_kamailios_description(db, tmp_path):
    seed = str(tmp_path / "seed.db")
    build(seed, SEED_DDL)
    ensure_schema(db)
    assert columns(db, "sip_domains") == columns(seed, "sip_domains")
    assert columns(db, "dispatcher") == columns(seed, "dispatcher") + [(6, "description", "TEXT", 0, None, 0)]
    for index in ("idx_sip_domains_enabled", "idx_dispatcher_setid"):
        sql = "SELECT sql FROM sqlite_master WHERE name = '%s'" % index
        assert " ".join(query(db, sql)[0][0].split()) == " ".join(query(seed, sql)[0][0].split())


def test_schema_sql_is_the_ddl():
    conn = sqlite3.connect(":memory:")
    conn.executescript(schema.SCHEMA_SQL)
    assert {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")} == set(schema.TABLES)
    for table, wanted in schema.COLUMNS.items():
        assert tuple(row[1] for row in conn.execute("PRAGMA table_info(%s)" % table)) == wanted


def test_idempotent_and_writes_nothing(db):
    ensure_schema(db)
    reader = sqlite3.connect(db)
    before = reader.execute("PRAGMA data_version").fetchone()[0]
    assert ensure_schema(db) == "up to date"
    assert ensure_schema(db) == "up to date"
    assert reader.execute("PRAGMA data_version").fetchone()[0] == before
    reader.close()


def test_migrate_seed_db_keeps_rows(db):
    build(db, SEED_DDL + SEED_ROWS)
    assert read_version(db) == 0
    before = query(db, "SELECT * FROM dispatcher ORDER BY id"), query(db, "SELECT * FROM sip_domains ORDER BY domain")
    assert ensure_schema(db) == "migrated 0 -> 2"
    after = query(db, "SELECT * FROM dispatcher ORDER BY id"), query(db, "SELECT * FROM sip_domains ORDER BY domain")
    assert after == ([row + (None,) for row in before[0]], before[1])  # description added, empty
    assert read_version(db) == 2
    assert "uq_dispatcher_setid_destination" in indexes(db)
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    assert ensure_schema(db) == "up to date"


def test_migrate_kamailio_db_tolerates_description_and_version(db):
    build(db, KAMAILIO_DDL + """
        INSERT INTO sip_domains (domain, dispatcher_setid) VALUES ('tenant1.example.com', 10);
        INSERT INTO dispatcher (setid, destination, priority, description) VALUES (10, 'sip:10.0.1.10:5060', 0, 'primary');
        INSERT INTO dispatcher (setid, destination, priority, description) VALUES (10, 'sip:10.0.1.11:5060', 10, 'backup');
        INSERT INTO dispatcher (setid, destination, flags, priority) VALUES (20, 'sip:10.0.2.20:5060', 8, 0);""")
    assert ensure_schema(db) == "migrated 0 -> 2"
    assert query(db, "SELECT table_name, table_version FROM version") == [("dispatcher", 4)]
    assert [row[1] for row in columns(db, "dispatcher")].count("description") == 1  # Kamailio's own column kept
    assert query(db, "SELECT description FROM dispatcher ORDER BY id") == [("primary",), ("backup",), ("",)]
    assert len(query(db, "SELECT * FROM dispatcher")) == 3
    assert indexes(db) >= {"idx_sip_domains_enabled", "idx_dispatcher_setid", "uq_dispatcher_setid_destination"}


def test_migrate_adds_a_missing_table(db):
    build(db, SEED_DDL.split("CREATE TABLE dispatcher", maxsplit=1)[0] + "INSERT INTO sip_domains VALUES ('a', 1, 1, NULL);")
    assert ensure_schema(db) == "migrated 0 -> 2"
    assert query(db, "SELECT count(*) FROM dispatcher") == [(0,)]
    assert query(db, "SELECT domain FROM sip_domains") == [("a",)]


def test_duplicates_fail_and_change_nothing(db):
    build(db, SEED_DDL + SEED_ROWS + """
        INSERT INTO dispatcher (setid, destination) VALUES (10, 'sip:10.0.1.10:5060');
        INSERT INTO dispatcher (setid, destination) VALUES (20, 'sip:10.0.2.20:5060');
        INSERT INTO dispatcher (setid, destination) VALUES (20, 'sip:10.0.2.20:5060');""")
    with pytest.raises(SchemaError) as err:
        ensure_schema(db)
    text = str(err.value)
    assert "duplicate" in text
    assert "setid 10 destination sip:10.0.1.10:5060 (ids 1,4)" in text
    assert "setid 20 destination sip:10.0.2.20:5060 (ids 3,5,6)" in text
    assert read_version(db) == 0
    assert len(query(db, "SELECT * FROM dispatcher")) == 6
    assert "uq_dispatcher_setid_destination" not in indexes(db)


def test_newer_version_is_refused(db):
    ensure_schema(db)
    build(db, "PRAGMA user_version = 7;")
    with pytest.raises(SchemaError, match="schema version 7 is newer than this sipedge knows"):
        ensure_schema(db)
    assert read_version(db) == 7


def test_missing_column_is_refused(db):
    build(db, "CREATE TABLE sip_domains (domain TEXT PRIMARY KEY, dispatcher_setid INTEGER NOT NULL, enabled INTEGER, comment TEXT);"
              "CREATE TABLE dispatcher (id INTEGER PRIMARY KEY, setid INTEGER, destination TEXT);")
    with pytest.raises(SchemaError, match="dispatcher lacks column.*flags, priority, attrs"):
        ensure_schema(db)
    assert read_version(db) == 0


def test_migrate_version_1_adds_description_and_keeps_rows(db):
    version_1 = "CREATE UNIQUE INDEX uq_dispatcher_setid_destination ON dispatcher(setid, destination); PRAGMA user_version = 1;"
    build(db, SEED_DDL + SEED_ROWS + version_1)
    before = query(db, "SELECT * FROM dispatcher ORDER BY id")
    reader = sqlite3.connect(db)
    assert ensure_schema(db) == "migrated 1 -> 2"
    assert query(db, "SELECT * FROM dispatcher ORDER BY id") == [row + (None,) for row in before]
    assert read_version(db) == 2
    assert ensure_schema(db) == "up to date"
    reader.close()


def test_migration_is_all_or_nothing(db, monkeypatch):
    """A step that fails leaves the DB at its old version, without the columns an
    earlier step added."""
    build(db, SEED_DDL + SEED_ROWS)

    def broken(_conn, _path):
        raise SchemaError("broken step")
    monkeypatch.setattr(schema, "MIGRATIONS", [schema.MIGRATIONS[0], broken])
    with pytest.raises(SchemaError, match="broken step"):
        ensure_schema(db)
    assert read_version(db) == 0
    assert "uq_dispatcher_setid_destination" not in indexes(db)
    assert "description" not in [row[1] for row in columns(db, "dispatcher")]


def test_current_version_with_missing_table_is_refused(db):
    build(db, "CREATE TABLE dispatcher (id INTEGER PRIMARY KEY, setid, destination, flags, priority, attrs, description);"
              " PRAGMA user_version = 2;")
    with pytest.raises(SchemaError, match="table sip_domains is missing"):
        ensure_schema(db)


def test_foreign_db_is_left_alone(db):
    build(db, "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
    with pytest.raises(SchemaError, match="no routing table"):
        ensure_schema(db)
    assert read_version(db) == 0
    assert {name for (name,) in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")} == {"users"}


def test_not_a_database(db):
    with open(db, "wb") as handle:
        handle.write(b"this is not sqlite" * 100)
    with pytest.raises(SchemaError, match="not a database"):
        ensure_schema(db)
    with pytest.raises(SchemaError, match="not a database"):
        read_version(db)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(SchemaError, match="no such file"):
        read_version(str(tmp_path / "absent.db"))
    with pytest.raises(SchemaError, match="cannot open"):
        ensure_schema(str(tmp_path / "no-dir" / "routing.db"))


def test_path_with_uri_characters(tmp_path):
    path = str(tmp_path / "odd ?name#%.db")
    assert ensure_schema(path) == "created"
    assert read_version(path) == 2
