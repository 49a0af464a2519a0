"""Unit tests of sipedge.store: start-up errors, change detection, failures."""

import os
import queue
import shutil
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from sipedge.schema import ensure_schema
from sipedge.store import RoutingData, RoutingStore, StoreError, Watcher


def write(path, *statements):
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


@pytest.fixture(name="db")
def fixture_db(tmp_path):
    path = str(tmp_path / "routing.db")
    ensure_schema(path)
    write(path,
          "INSERT INTO sip_domains (domain, dispatcher_setid) VALUES ('tenant1.example.com', 10)",
          "INSERT INTO sip_domains (domain, dispatcher_setid, enabled) VALUES ('off.example.com', 20, 0)",
          "INSERT INTO dispatcher (id, setid, destination, priority) VALUES (5, 10, 'sip:10.0.1.11:5060', 10)",
          "INSERT INTO dispatcher (id, setid, destination, flags, attrs) VALUES (2, 10, 'sip:10.0.1.10:5060', 8, 'weight=50')",
          "INSERT INTO dispatcher (id, setid, destination, flags, priority) VALUES (9, 20, 'sip:10.0.2.20', NULL, NULL)")
    return path


@pytest.fixture(name="store")
def fixture_store(db):
    store = RoutingStore(db)
    yield store
    store.close()


EXPECTED = RoutingData(
    domains={"tenant1.example.com": 10},
    destinations=((10, "sip:10.0.1.10:5060", 8, 0, "weight=50"), (10, "sip:10.0.1.11:5060", 0, 10, None),
                  (20, "sip:10.0.2.20", None, None, None)))


def test_open_reads_enabled_domains_and_destinations_in_id_order(store):
    assert store.open() == EXPECTED
    assert store.poll() is None
    assert store.poll() is None


def test_init_does_no_io(tmp_path):
    RoutingStore(str(tmp_path / "absent.db"))  # no error until open()


def test_write_by_another_connection_is_seen(store, db):
    store.open()
    write(db, "UPDATE sip_domains SET enabled = 1 WHERE domain = 'off.example.com'",
          "DELETE FROM dispatcher WHERE id = 9")
    data = store.poll()
    assert data.domains == {"tenant1.example.com": 10, "off.example.com": 20}
    assert [row[1] for row in data.destinations] == ["sip:10.0.1.10:5060", "sip:10.0.1.11:5060"]
    assert store.poll() is None


def test_each_commit_is_seen(store, db):
    store.open()
    for setid in range(30, 35):
        write(db, "INSERT INTO dispatcher (setid, destination) VALUES (%d, 'sip:10.9.9.9')" % setid)
        assert store.poll().destinations[-1][0] == setid


def test_domains_are_exact(store, db):
    store.open()
    write(db, "INSERT INTO sip_domains (domain, dispatcher_setid) VALUES ('Tenant1.Example.com', 11)")
    assert store.poll().domains == {"tenant1.example.com": 10, "Tenant1.Example.com": 11}


def test_commit_without_change_returns_none(store, db):
    store.open()
    write(db, "UPDATE dispatcher SET priority = priority")
    assert store.poll() is None


def test_poll_in_executor_thread(store, db):
    store.open()
    write(db, "DELETE FROM sip_domains")
    with ThreadPoolExecutor(max_workers=1) as pool:
        assert pool.submit(store.poll).result().domains == {}
        assert pool.submit(store.poll).result() is None


def test_file_replaced(store, db, tmp_path):
    store.open()
    other = str(tmp_path / "new.db")
    ensure_schema(other)
    write(other, "INSERT INTO sip_domains (domain, dispatcher_setid) VALUES ('new.example.com', 30)")
    os.replace(other, db)
    assert store.poll() == RoutingData({"new.example.com": 30}, ())
    assert store.poll() is None


def test_locked_db_raises_then_recovers(store, db):
    # WAL readers are hardly ever blocked; a rollback-journal DB with a writer inside a transaction is
    write(db, "PRAGMA journal_mode=DELETE")
    store.open()
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("INSERT INTO sip_domains (domain, dispatcher_setid) VALUES ('late.example.com', 40)")
    with pytest.raises(StoreError, match="locked"):
        store.poll()
    with pytest.raises(StoreError, match="locked"):
        store.poll()
    writer.execute("COMMIT")
    writer.close()
    assert store.poll().domains == {"tenant1.example.com": 10, "late.example.com": 40}
    assert store.poll() is None


def test_corrupt_db_raises_then_recovers(store, db, tmp_path):
    store.open()
    backup = str(tmp_path / "backup.db")
    shutil.copy(db, backup)
    with open(db, "r+b") as handle:
        handle.write(b"garbage!" * 64)
    with pytest.raises(StoreError, match="not a database"):
        store.poll()
    shutil.copy(backup, db)
    assert store.poll() is None  # the same data as the last good read


def test_vanished_db_raises_then_recovers(store, db, tmp_path):
    store.open()
    moved = str(tmp_path / "moved.db")
    os.rename(db, moved)
    with pytest.raises(StoreError, match="does not exist"):
        store.poll()
    with pytest.raises(StoreError, match="does not exist"):
        store.poll()
    write(moved, "DELETE FROM dispatcher")
    os.rename(moved, db)
    assert store.poll().destinations == ()


def test_watcher_reports_each_change_and_each_new_failure_once(db, tmp_path):
    """The DB thread: woken (not by its hour-long interval), it hands over new tables;
    a failure is reported once however often it repeats, and the recovery once."""
    reads, events = queue.Queue(), []

    class Store(RoutingStore):
        def open(self):
            try:
                return super().open()
            finally:
                reads.put(None)

    stopping = threading.Event()
    watcher = Watcher(Store(db), 3600, stopping, lambda data: events.append(("changed", len(data.destinations))),
                      lambda error: events.append(("failed", error)))

    def read_now():
        watcher.wake()
        reads.get(timeout=5)

    watcher.start()
    try:
        read_now()
        shutil.move(db, tmp_path / "away.db")
        read_now()
        read_now()
        write(str(tmp_path / "away.db"), "DELETE FROM dispatcher WHERE id = 9")
        shutil.move(tmp_path / "away.db", db)
        read_now()
    finally:
        stopping.set()
        watcher.wake()
        watcher.thread.join(5)
    assert [kind for kind, _value in events] == ["changed", "failed", "failed", "changed"]
    assert events[0][1] == 3 and "does not exist" in events[1][1] and events[2][1] is None and events[3][1] == 2


def test_open_missing(tmp_path):
    path = str(tmp_path / "routing.db")
    with pytest.raises(StoreError, match="does not exist.*sipedge db init"):
        RoutingStore(path).open()
    assert not os.path.exists(path)  # never created by the reader


def test_open_not_a_database(tmp_path):
    path = str(tmp_path / "routing.db")
    with open(path, "wb") as handle:
        handle.write(b"not sqlite" * 100)
    with pytest.raises(StoreError, match="not a database"):
        RoutingStore(path).open()


def test_open_without_tables(tmp_path):
    path = str(tmp_path / "routing.db")
    write(path, "CREATE TABLE other (x)")
    with pytest.raises(StoreError, match="schema version 0, this sipedge needs 2; run 'sipedge db init"):
        RoutingStore(path).open()
    write(path, "PRAGMA user_version = 2")
    with pytest.raises(StoreError, match="table sip_domains is missing"):
        RoutingStore(path).open()


def test_open_newer_version(db):
    write(db, "PRAGMA user_version = 3")
    with pytest.raises(StoreError, match="schema version 3, this sipedge needs 2; upgrade sipedge"):
        RoutingStore(db).open()


def test_reader_never_writes(store):
    store.open()
    conn = store._conn  # pylint: disable=protected-access
    with pytest.raises(sqlite3.OperationalError, match="readonly"):
        conn.execute("INSERT INTO sip_domains (domain, dispatcher_setid) VALUES ('x', 1)")


def test_loosely_typed_domain_rows_are_reported(store, db):
    store.open()
    write(db, "INSERT INTO sip_domains (domain, dispatcher_setid) VALUES ('bad.example.com', 'ten')")
    data = store.poll()
    assert data.domains == {"tenant1.example.com": 10}
    assert len(data.warnings) == 1 and "bad.example.com" in data.warnings[0]
