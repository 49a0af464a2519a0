"""The routing DB content of the conformance suite: the ONE place that holds it.

Destinations are written as backend *names*; each lane resolves them to its own
backend sockets (the reference and the subject each have their own backends, so the
two can run in parallel).  ``dead:N`` is an address where nothing listens.

Domains use the reserved ``.test`` / ``.invalid`` names (RFC 2606): neither router
ever resolves a domain, and every destination is an IP address.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Callable

from testsupport import routing

# (domain, setid, enabled, comment)
DOMAINS = [
    ("tenant1.test", 10, 1, "general cases: one backend"),
    ("tenant2.test", 20, 1, "second tenant: one backend"),
    ("prio.test", 30, 1, "algorithm 8: priorities 0 and 10"),
    ("prio-failover.test", 31, 1, "algorithm 8: preferred node inactive"),
    ("rr.test", 40, 1, "round robin over two equal nodes"),
    ("down.test", 50, 1, "every node inactive (flags=1)"),
    ("half.test", 60, 1, "one node inactive, one active"),
    ("admin-disabled.test", 61, 1, "one node disabled (flags=4), one active"),
    ("nodest.test", 99, 1, "a set with no rows"),
    ("disabled.test", 10, 0, "enabled=0"),
    ("example.com", 70, 1, "RFC 4475 messages"),
]

# (setid, destination, flags, priority) in id order
DESTINATIONS = [
    (10, "t1", 0, 0),
    (20, "t2", 0, 0),
    (30, "p_lo", 0, 0),
    (30, "p_hi", 0, 10),
    (31, "pf_lo", 0, 0),
    (31, "pf_hi", 1, 10),
    (40, "rr_a", 0, 0),
    (40, "rr_b", 0, 0),
    (50, "dead:1", 1, 0),
    (50, "dead:2", 1, 0),
    (60, "dead:3", 1, 0),
    (60, "h_live", 0, 0),
    (61, "ad_off", 4, 0),
    (61, "ad_on", 0, 0),
    (70, "torture", 0, 0),
]

# sets selected with algorithm 8 (the others use the seed's 4)
ALG8_SETS = (30, 31)

# every backend a lane must run (the names above plus the 'foreign' host for the
# open-relay case, which no DB row names)
BACKENDS = sorted({row[1] for row in DESTINATIONS if not row[1].startswith("dead:")}) + ["foreign"]


def rows(resolve: Callable[[str], str]) -> tuple[list[tuple], list[tuple]]:
    dom = list(DOMAINS)
    dst = [(s, resolve(d), f, p) for s, d, f, p in DESTINATIONS]
    return dom, dst


def fill(db: Path, resolve: Callable[[str], str]) -> None:
    """The rows above, in place of whatever the tables held."""
    routing.fill(db, *rows(resolve), replace=True)


def create_seed_db(db: Path, resolve: Callable[[str], str]) -> None:
    """The seed's schema (for Kamailio when there is no sipedge DB to copy)."""
    from kamailio.reference import SEED_SCHEMA_SQL
    con = sqlite3.connect(str(db))
    try:
        con.executescript(SEED_SCHEMA_SQL)
    finally:
        con.close()
    fill(db, resolve)
