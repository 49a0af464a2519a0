# Copyright: Contributors to the voip.sip_edge project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The routing DB side of the modules: the common ``db`` option, opening the
DB the router reads, reading and writing logical rows (module_utils.routing)
in one transaction, and the backup written before a purge.

The DB is the router's: the modules never create or migrate it (the router
role's ``sipedge db init`` does) and refuse any schema version but
``sipedge_schema.SCHEMA_VERSION``. The router keeps reading while a module
writes (WAL); a writer waits for another one up to BUSY_TIMEOUT seconds.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections import namedtuple
from urllib.request import pathname2url

from ansible_collections.voip.sip_edge.plugins.module_utils import routing
from ansible_collections.voip.sip_edge.plugins.module_utils.sipedge_schema import SCHEMA_VERSION, SchemaError, check_tables

DEFAULT_DB = '/var/lib/sipedge/routing.db'
BUSY_TIMEOUT = 30.0
_SELECT = {
    'sip_domains': 'SELECT domain, dispatcher_setid, enabled = 1, comment FROM sip_domains ORDER BY domain',
    'dispatcher': 'SELECT setid, destination, COALESCE(flags, 0) & 4, priority, attrs, description'
                  ' FROM dispatcher ORDER BY setid, id',
}
# Updates set the columns the modules manage and leave the rest (and the flags
# bits other than "disabled") as they are; keys are never updated.
_SQL = {
    'sip_domains': (
        'DELETE FROM sip_domains WHERE domain = ?',
        'UPDATE sip_domains SET dispatcher_setid = ?, enabled = ?, comment = ? WHERE domain = ?',
        'INSERT INTO sip_domains (dispatcher_setid, enabled, comment, domain) VALUES (?, ?, ?, ?)',
    ),
    'dispatcher': (
        'DELETE FROM dispatcher WHERE setid = ? AND destination = ?',
        'UPDATE dispatcher SET priority = ?, attrs = ?, flags = (COALESCE(flags, 0) & ~4) | ?, description = ?'
        ' WHERE setid = ? AND destination = ?',
        'INSERT INTO dispatcher (priority, attrs, flags, description, setid, destination) VALUES (?, ?, ?, ?, ?, ?)',
    ),
}
_FROM_DB = {'sip_domains': routing.domain_from_db, 'dispatcher': routing.destination_from_db}
_TO_DB = {'sip_domains': routing.domain_to_db, 'dispatcher': routing.destination_to_db}

Outcome = namedtuple('Outcome', 'domains destinations domains_after destinations_after backup_file')
"""Changes per table, the rows after them ({key: row}) and the backup's path (or None)."""


class RoutingDBError(Exception):
    """The DB cannot be used; the message names it and says why."""


def routing_db_argument_spec():
    """The options every module shares (documented once in the doc fragment
    voip.sip_edge.routing_db)."""
    return {'db': {'type': 'path', 'default': DEFAULT_DB}}


def connect(path, read_only):
    """Open the existing routing DB read-only (check mode) or read-write; never create it."""
    if not os.path.isfile(path):
        raise RoutingDBError('%s: no such routing DB; the router role creates it with "sipedge db init", the modules never do' % path)
    uri = 'file:%s?mode=%s' % (pathname2url(os.path.abspath(path)), 'ro' if read_only else 'rw')
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as exc:
        raise RoutingDBError('%s: cannot open: %s' % (path, exc)) from None
    try:
        version = conn.execute('PRAGMA user_version').fetchone()[0]
        if version != SCHEMA_VERSION:
            raise RoutingDBError('%s: schema version %d, the modules need version %d; the router role\'s "sipedge db init --db %s" '
                                 'migrates it (the modules never do)' % (path, version, SCHEMA_VERSION, path))
        check_tables(conn, path)
        # The router reads while we write; `sipedge db init` sets WAL, this keeps it so.
        if not read_only and conn.execute('PRAGMA journal_mode').fetchone()[0].lower() != 'wal':
            conn.execute('PRAGMA journal_mode=WAL')
    except (sqlite3.Error, SchemaError, RoutingDBError) as exc:
        conn.close()
        if isinstance(exc, RoutingDBError):
            raise
        raise RoutingDBError(str(exc) if isinstance(exc, SchemaError) else '%s: %s' % (path, exc)) from None
    return conn


def read_rows(conn, table):
    """{key: logical row} of one table (routing.DOMAINS or routing.DESTINATIONS)."""
    from_db = _FROM_DB[table.name]
    rows = (from_db(row) for row in conn.execute(_SELECT[table.name]))
    return {table.key(row): row for row in rows}


def write(conn, table, changes):
    """Apply one table's changes (deletes, updates, inserts) on an open transaction."""
    delete, update, insert = _SQL[table.name]
    to_db = _TO_DB[table.name]
    conn.executemany(delete, [table.key(row) for row in changes.removed])
    conn.executemany(update, [to_db(after) for _before, after in changes.updated])
    conn.executemany(insert, [to_db(row) for row in changes.added])


def backup(path):
    """Copy the DB (SQLite online backup) next to it, with its owner and mode;
    returns the copy's path.

    Called while this module's connection holds the write lock (BEGIN
    IMMEDIATE) and has not written yet, so the copy is exactly the state the
    changes apply to. It reads through a second connection: a backup from the
    connection holding the write lock never finishes (measured: SQLITE_LOCKED,
    retried forever).
    """
    target = '%s.%d.%s~' % (path, os.getpid(), time.strftime('%Y-%m-%d@%H:%M:%S'))
    stat = os.stat(path)
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.st_mode & 0o777))
    if os.geteuid() == 0:
        os.chown(target, stat.st_uid, stat.st_gid)
    source = sqlite3.connect('file:%s?mode=ro' % pathname2url(os.path.abspath(path)), uri=True, timeout=BUSY_TIMEOUT)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
    finally:
        copy.close()
        source.close()
    return target


def converge(module, domains=None, destinations=None, absent_domains=(), absent_destinations=(), purge=False, force=False):
    """Make the DB hold the desired rows ({key: logical row}, fields left out =
    left alone) and not the ``absent_*`` keys; with ``purge``, also remove every
    row the input does not name. Plans on the rows read inside the transaction
    that writes them (check mode: a read-only snapshot, nothing written);
    fails the module on any error, the DB unchanged."""
    path = module.params['db']
    try:
        conn = connect(path, read_only=module.check_mode)
    except RoutingDBError as exc:
        module.fail_json(msg=str(exc))
    try:
        conn.execute('BEGIN' if module.check_mode else 'BEGIN IMMEDIATE')
        outcome = _plan_and_apply(module, conn, path, domains, destinations, absent_domains, absent_destinations, purge, force)
        conn.execute('ROLLBACK' if module.check_mode else 'COMMIT')
    except (sqlite3.Error, OSError, routing.PlanError) as exc:
        if conn.in_transaction:
            conn.execute('ROLLBACK')
        conn.close()
        module.fail_json(msg='%s: %s' % (path, exc) if isinstance(exc, sqlite3.Error) else str(exc))
    conn.close()
    orphans = routing.orphan_domains(outcome.domains_after, outcome.destinations_after,
                                     _watched(domains, outcome.domains_after, outcome.destinations))
    if orphans:
        shown = ', '.join(orphans[:10]) + (' and %d more' % (len(orphans) - 10) if len(orphans) > 10 else '')
        module.warn('%d domain(s) route to a set with no destination (their calls get no answer): %s' % (len(orphans), shown))
    return outcome


def _plan_and_apply(module, conn, path, domains, destinations, absent_domains, absent_destinations, purge, force):
    plans = []
    for table, desired, absent in ((routing.DOMAINS, domains, absent_domains), (routing.DESTINATIONS, destinations, absent_destinations)):
        current = read_rows(conn, table)
        changes = routing.plan_table(table, current, desired or {}, absent, purge)
        refusal = routing.purge_refusal(table, len(current), changes) if purge and not force else None
        if refusal:
            raise routing.PlanError('%s: %s' % (path, refusal))
        plans.append((table, current, changes))
    backup_file = None
    if not module.check_mode:
        if purge and any(changes.removed for _table, _current, changes in plans):
            backup_file = backup(path)
        for table, _current, changes in plans:
            write(conn, table, changes)
    (dom_table, dom_current, dom_changes), (dst_table, dst_current, dst_changes) = plans
    return Outcome(dom_changes, dst_changes, routing.after_rows(dom_current, dom_changes, dom_table),
                   routing.after_rows(dst_current, dst_changes, dst_table), backup_file)


def _watched(domains, domains_after, destination_changes):
    """Domains worth a warning: those the input names, and those whose set lost a destination."""
    emptied = {row['setid'] for row in destination_changes.removed}
    watched = set(domains or ())
    if emptied:
        watched.update(key for key, row in domains_after.items() if row['setid'] in emptied)
    return watched


def table_diff(path, outcome):
    """Ansible's diff of a many-row change: before/after lists of only the rows that change, per option name."""
    before, after = {}, {}
    for table, changes in ((routing.DOMAINS, outcome.domains), (routing.DESTINATIONS, outcome.destinations)):
        before[table.param], after[table.param] = routing.diff_rows(changes)
    return {'before_header': path, 'after_header': path, 'before': before, 'after': after}


def row_diff(path, changes):
    """Ansible's diff of a one-row change: the row before and after ({} where there is none)."""
    before, after = routing.diff_rows(changes)
    return {'before_header': path, 'after_header': path, 'before': before[0] if before else {}, 'after': after[0] if after else {}}
