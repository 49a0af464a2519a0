"""Read side of the routing DB for the router shell (no SIP logic here).

`RoutingStore.open()` reads everything once at start-up; `poll()` is the cheap
change check that each process's DB thread (a `Watcher`) runs every
`poll_interval`.

How changes are seen:
  * commits by other connections (Ansible's modules, `sqlite3`): `PRAGMA
    data_version` on the kept-open connection, which costs no table read;
  * the file replaced or rewritten under us (rename over it, restore from a
    backup): the (device, inode, mtime, size) of the DB and of its -wal file.
    A change there reopens the connection before reading.
Both tables are read in one read transaction, so domains and destinations
always come from the same commit.  New data is returned only when it differs
from the last data returned.

Read-only: the DB is opened as `file:PATH?mode=ro`, so the router can never
modify it.  A reader of a WAL database still needs the -shm (and -wal) file:
SQLite creates them if the directory is writable by the router's user and
otherwise needs them to exist and be writable.  Deployments keep the DB
directory and files owned by the router's user (writers run as that user or
keep the ownership).

The connection is made with check_same_thread=False: it is used from one
executor thread at a time, never concurrently.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from dataclasses import dataclass
from typing import Callable, Optional
from urllib.request import pathname2url

from .loop import background
from .schema import SCHEMA_VERSION, SchemaError, check_tables

BUSY_TIMEOUT = 0.25  # seconds; a locked DB must not hold the executor thread for long

_DOMAINS_SQL = "SELECT domain, dispatcher_setid FROM sip_domains WHERE enabled = 1"
_DESTINATIONS_SQL = "SELECT setid, destination, flags, priority, attrs FROM dispatcher ORDER BY id"


class StoreError(Exception):
    """The routing DB cannot be read; the message says why."""


@dataclass(frozen=True)
class RoutingData:
    """One consistent view of the routing tables."""

    domains: dict[str, int]  # enabled domains only: domain (exact, case-sensitive) -> dispatcher_setid
    destinations: tuple[tuple, ...]  # (setid, destination, flags, priority, attrs) in id order
    warnings: tuple[str, ...] = ()  # rows left out of `domains`, one line each


def _file_stamp(path: str) -> Optional[tuple[int, int, int, int]]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


class RoutingStore:
    """Reads the routing DB and notices when it changed."""

    def __init__(self, path: str):
        self.path = path
        self._conn: Optional[sqlite3.Connection] = None
        self._stamp: Optional[tuple] = None
        self._data_version: Optional[int] = None
        self._data: Optional[RoutingData] = None

    def open(self) -> RoutingData:
        """First read at start-up; raises StoreError with a clear message."""
        self.close()
        data = self._reload()
        self._data = data
        return data

    def poll(self) -> Optional[RoutingData]:
        """New data if the DB changed since the last read, else None.

        Raises StoreError when the DB is locked, corrupt or gone; the caller
        keeps its last good data, and the next poll tries again.
        """
        try:
            if self._conn is None or self._stamp != self._stamps():
                data = self._reload()
            elif self._query_data_version() != self._data_version:
                data = self._read()
            else:
                return None
        except StoreError:
            self.close()  # start afresh next time
            raise
        if data == self._data:
            return None
        self._data = data
        return data

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._stamp = None
        self._data_version = None

    # -- internals -----------------------------------------------------------

    def _stamps(self) -> tuple:
        db = _file_stamp(self.path)
        if db is None:
            raise StoreError("routing DB %s does not exist (create it with 'sipedge db init --db %s')" % (self.path, self.path))
        return db, _file_stamp(self.path + "-wal")

    def _reload(self) -> RoutingData:
        """(Re)open the connection, check the schema and read everything."""
        self.close()
        stamp = self._stamps()  # before connecting: a change after it is seen next time
        uri = "file:%s?mode=ro" % pathname2url(os.path.abspath(self.path))
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError("routing DB %s: cannot open: %s" % (self.path, exc)) from exc
        self._conn = conn
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                hint = "upgrade sipedge" if version > SCHEMA_VERSION else "run 'sipedge db init --db %s'" % self.path
                raise StoreError("routing DB %s: schema version %d, this sipedge needs %d; %s"
                                 % (self.path, version, SCHEMA_VERSION, hint))
            check_tables(conn, self.path)
        except SchemaError as exc:
            self.close()
            raise StoreError("routing DB %s" % exc) from exc
        except StoreError:
            self.close()
            raise
        except sqlite3.Error as exc:
            self.close()
            hint = ""
            if "readonly" in str(exc):
                # seen when the -wal/-shm files are missing and cannot be created
                hint = " (a WAL reader needs %s-wal and -shm: make the DB directory writable by this user)" % self.path
            raise StoreError("routing DB %s: %s%s" % (self.path, exc, hint)) from exc
        data = self._read()
        self._stamp = stamp
        return data

    def _query_data_version(self) -> int:
        try:
            return self._conn.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error as exc:
            raise StoreError("routing DB %s: %s" % (self.path, exc)) from exc

    def _read(self) -> RoutingData:
        conn = self._conn
        try:
            # taken first: a commit racing with the read is seen by the next poll
            data_version = conn.execute("PRAGMA data_version").fetchone()[0]
            conn.execute("BEGIN")  # one read transaction: both tables from the same commit
            domain_rows = conn.execute(_DOMAINS_SQL).fetchall()
            destinations = tuple(conn.execute(_DESTINATIONS_SQL).fetchall())
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass  # the connection is dropped by the caller anyway
            raise StoreError("routing DB %s: %s" % (self.path, exc)) from exc
        domains: dict[str, int] = {}
        warnings = []
        for domain, setid in domain_rows:
            # SQLite columns are loosely typed: keep only what the router can use
            if isinstance(domain, str) and isinstance(setid, int) and not isinstance(setid, bool):
                domains[domain] = setid
            else:
                warnings.append("sip_domains row %r -> %r skipped: domain must be text and dispatcher_setid an integer"
                                % (domain, setid))
        self._data_version = data_version
        return RoutingData(domains, destinations, tuple(warnings))


class Watcher:
    """A process's DB thread: reads the routing DB every `interval` seconds (at
    once after `wake()`) until `stopping` is set.  `changed(data)` gets each new
    table, in this thread (so that it can prepare it off the loop);
    `failed(message)` each new error and `failed(None)` the first good read
    after one.  The thread runs at a lower CPU priority than the SIP loop."""

    def __init__(self, store: RoutingStore, interval: float, stopping: threading.Event,
                 changed: Callable[[RoutingData], None], failed: Callable[[Optional[str]], None]):
        self.store, self.interval, self.stopping = store, interval, stopping
        self.changed, self.failed = changed, failed
        self._wake = threading.Event()
        self.thread = threading.Thread(target=self._run, name="routing-db", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def wake(self) -> None:
        """Read the whole DB now (`sipedge ctl reload`), or see `stopping` now."""
        self._wake.set()

    def _run(self) -> None:
        background()
        error = None
        while True:
            forced = self._wake.wait(self.interval)
            self._wake.clear()
            if self.stopping.is_set():
                return
            try:
                data = self.store.open() if forced else self.store.poll()
            except StoreError as exc:
                if str(exc) != error:
                    error = str(exc)
                    self.failed(error)
                continue
            if error is not None:
                error = None
                self.failed(None)
            if data is not None:
                self.changed(data)
