"""Rows of the routing DB (the seed's tables, docs/CONTRACT.md) written by tests."""
from __future__ import annotations

import sqlite3

DOMAIN_COLUMNS = ("domain", "dispatcher_setid", "enabled", "comment")
DESTINATION_COLUMNS = ("setid", "destination", "flags", "priority", "attrs")


def _insert(con, table: str, columns: tuple, rows) -> None:
    for row in rows:
        names = ", ".join(columns[:len(row)])
        marks = ", ".join("?" * len(row))
        con.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", tuple(row))


def fill(db, domains=(), destinations=(), *, replace: bool = False) -> None:
    """Insert rows: ``domains`` as (domain, setid[, enabled[, comment]]), ``destinations``
    as (setid, uri[, flags[, priority[, attrs]]]); ``replace`` empties both tables first."""
    con = sqlite3.connect(str(db), timeout=5)
    try:
        if replace:
            con.execute("DELETE FROM sip_domains")
            con.execute("DELETE FROM dispatcher")
        _insert(con, "sip_domains", DOMAIN_COLUMNS, domains)
        _insert(con, "dispatcher", DESTINATION_COLUMNS, destinations)
        con.commit()
    finally:
        con.close()


def execute(db, sql: str, params: tuple = ()) -> None:
    """Run one SQL statement and commit it."""
    con = sqlite3.connect(str(db), timeout=5)
    try:
        con.execute(sql, params)
        con.commit()
    finally:
        con.close()
