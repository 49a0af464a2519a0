"""sip_routing's main() against a real routing DB."""

from __future__ import annotations

import os
import sqlite3
from unittest.mock import patch

from ansible_collections.voip.sip_edge.plugins.module_utils import routing_db
from ansible_collections.voip.sip_edge.plugins.modules import sip_routing
from ansible_collections.voip.sip_edge.tests.unit.plugins.modules.utils import run_module

DOMAINS = [{'domain': 'acme.example.com', 'setid': 10, 'comment': 'acme'},
           {'domain': 'globex.example.com', 'setid': 20, 'comment': 'globex'}]
DESTINATIONS = [{'setid': 10, 'uri': 'sip:10.0.1.10:5060', 'weight': 50, 'description': 'acme'},
                {'setid': 10, 'uri': 'sip:10.0.1.11:5060', 'weight': 50, 'description': 'acme'},
                {'setid': 20, 'uri': 'sip:[2001:db8::20]', 'priority': 1, 'attrs': {'duid': 'g1'}, 'admin_state': 'disabled'}]
COUNTS_0 = {'added': 0, 'updated': 0, 'removed': 0}


def routing(db, **args):
    return run_module(sip_routing.main, dict({'db': db, 'domains': DOMAINS, 'destinations': DESTINATIONS}, **args))


def dump(sql, db):
    return (sql(db, 'SELECT * FROM sip_domains ORDER BY domain'),
            sql(db, 'SELECT setid, destination, flags, priority, attrs, description FROM dispatcher ORDER BY id'))


def test_check_mode_reports_the_changes_and_writes_nothing(db, sql):
    result = routing(db, _ansible_check_mode=True)
    assert result['changed'] is True
    assert result['domains'] == {'added': 2, 'updated': 0, 'removed': 0}
    assert result['destinations'] == {'added': 3, 'updated': 0, 'removed': 0}
    assert dump(sql, db) == ([], [])


def test_apply_writes_the_rows_then_a_rerun_changes_nothing(db, sql):
    result = routing(db)
    assert result['changed'] is True
    assert result['destinations'] == {'added': 3, 'updated': 0, 'removed': 0}
    assert dump(sql, db) == (
        [('acme.example.com', 10, 1, 'acme'), ('globex.example.com', 20, 1, 'globex')],
        [(10, 'sip:10.0.1.10:5060', 0, 0, 'weight=50', 'acme'), (10, 'sip:10.0.1.11:5060', 0, 0, 'weight=50', 'acme'),
         (20, 'sip:[2001:db8::20]', 4, 1, 'duid=g1', None)])
    again = routing(db)
    assert again['changed'] is False
    assert again['domains'] == again['destinations'] == COUNTS_0
    assert routing(db, _ansible_check_mode=True)['changed'] is False


def test_check_mode_counts_equal_the_real_run(db):
    routing(db)
    change = dict(domains=[dict(DOMAINS[0], setid=11), {'domain': 'new.example', 'setid': 10}],
                  destinations=DESTINATIONS[:2], purge=True)
    check = routing(db, _ansible_check_mode=True, _ansible_diff=True, **change)
    real = routing(db, _ansible_diff=True, **change)
    for key in ('changed', 'domains', 'destinations', 'diff'):
        assert check[key] == real[key]
    assert 'backup_file' not in check and 'backup_file' in real


def test_diff_holds_only_the_changing_rows(db):
    routing(db)
    destinations = [dict(DESTINATIONS[0], weight=60)] + DESTINATIONS[1:]
    result = routing(db, destinations=destinations, _ansible_diff=True)
    assert result['destinations'] == {'added': 0, 'updated': 1, 'removed': 0}
    diff = result['diff']
    assert diff['before_header'] == diff['after_header'] == db
    assert diff['before'] == {'domains': [], 'destinations': [
        {'setid': 10, 'uri': 'sip:10.0.1.10:5060', 'priority': 0, 'weight': 50, 'attrs': {}, 'admin_state': 'active', 'description': 'acme'}]}
    assert diff['after'] == {'domains': [], 'destinations': [
        {'setid': 10, 'uri': 'sip:10.0.1.10:5060', 'priority': 0, 'weight': 60, 'attrs': {}, 'admin_state': 'active', 'description': 'acme'}]}
    assert 'diff' not in routing(db, destinations=destinations)


def test_equivalent_attrs_string_in_the_db_is_unchanged(db, sql):
    sql(db, "INSERT INTO dispatcher (setid, destination, attrs) VALUES (1, 'sip:h', ' maxload = 20; WEIGHT=7;duid=x;')")
    result = routing(db, domains=[], destinations=[{'setid': 1, 'uri': 'sip:h', 'weight': 7, 'attrs': {'duid': 'x', 'maxload': 20}}])
    assert result['changed'] is False
    result = routing(db, domains=[], destinations=[{'setid': 1, 'uri': 'sip:h', 'weight': 7, 'attrs': {'duid': 'y', 'maxload': 20}}])
    assert result['destinations']['updated'] == 1
    assert sql(db, 'SELECT attrs FROM dispatcher') == [('duid=y;maxload=20;weight=7',)]


def test_admin_state_changes_only_the_disabled_bit(db, sql):
    sql(db, "INSERT INTO dispatcher (setid, destination, flags) VALUES (1, 'sip:h', 10)")  # trying + probing
    assert routing(db, domains=[], destinations=[{'setid': 1, 'uri': 'sip:h', 'admin_state': 'disabled'}])['changed'] is True
    assert sql(db, 'SELECT flags FROM dispatcher') == [(14,)]
    assert routing(db, domains=[], destinations=[{'setid': 1, 'uri': 'sip:h'}])['changed'] is True
    assert sql(db, 'SELECT flags FROM dispatcher') == [(10,)]


def test_other_columns_and_tables_are_left_alone(db, sql):
    sql(db, 'ALTER TABLE dispatcher ADD COLUMN extra TEXT')
    sql(db, "INSERT INTO dispatcher (setid, destination, extra) VALUES (10, 'sip:10.0.1.10:5060', 'keep')")
    routing(db)
    assert sql(db, "SELECT extra FROM dispatcher WHERE destination = 'sip:10.0.1.10:5060'") == [('keep',)]


def test_without_purge_nothing_is_removed(db, sql):
    routing(db)
    result = routing(db, domains=DOMAINS[:1], destinations=DESTINATIONS[:1])
    assert result['changed'] is False
    assert len(dump(sql, db)[1]) == 3


def test_purge_removes_unnamed_rows_after_a_backup(db, sql):
    routing(db)
    before = dump(sql, db)
    result = routing(db, domains=DOMAINS, destinations=DESTINATIONS[:2], purge=True)
    assert result['destinations'] == {'added': 0, 'updated': 0, 'removed': 1}
    assert [row[1] for row in dump(sql, db)[1]] == ['sip:10.0.1.10:5060', 'sip:10.0.1.11:5060']
    backup = result['backup_file']
    assert os.path.dirname(backup) == os.path.dirname(db)
    assert dump(sql, backup) == before
    stat, copy = os.stat(db), os.stat(backup)
    assert (copy.st_uid, copy.st_gid, copy.st_mode & 0o777) == (stat.st_uid, stat.st_gid, stat.st_mode & 0o777)
    again = routing(db, domains=DOMAINS, destinations=DESTINATIONS[:2], purge=True)
    assert again['changed'] is False and 'backup_file' not in again


def test_purge_of_more_than_half_is_refused_without_force(db, sql):
    routing(db)
    before = dump(sql, db)
    result = routing(db, destinations=DESTINATIONS[:1], purge=True)
    assert result['failed'] is True
    assert 'purge would remove 2 of the 3 rows of dispatcher (more than half): refused without force: true' in result['msg']
    assert dump(sql, db) == before
    assert not [name for name in os.listdir(os.path.dirname(db)) if name.endswith('~')]
    forced = routing(db, destinations=DESTINATIONS[:1], purge=True, force=True)
    assert forced['destinations']['removed'] == 2 and forced['backup_file']


def test_purge_that_empties_a_table_is_refused_without_force(db, sql):
    routing(db)
    result = routing(db, domains=[], purge=True, _ansible_check_mode=True)
    assert result['failed'] is True
    assert 'purge would remove all 2 rows of sip_domains (the input names none of them)' in result['msg']
    result = routing(db, domains=[], purge=True)
    assert result['failed'] is True
    assert len(dump(sql, db)[0]) == 2


def test_bad_item_names_list_index_and_field_and_writes_nothing(db, sql):
    cases = [
        (dict(domains=DOMAINS + [{'domain': 'Upper.example', 'setid': 1}]), 'domains[2].domain: upper case is not allowed'),
        (dict(destinations=DESTINATIONS + [{'setid': 1, 'uri': 'sips:10.0.0.1'}]), 'destinations[3].uri: sips: is refused: TLS is not supported yet'),
        (dict(destinations=[{'setid': 2 ** 31, 'uri': 'sip:h'}]), 'destinations[0].setid: must be between 0 and 2147483647 (got 2147483648)'),
        (dict(destinations=[{'setid': 1, 'uri': 'sip:h', 'weight': 101}]), 'destinations[0].weight: must be between 0 and 100'),
        (dict(domains=DOMAINS + DOMAINS[1:]), 'domains[2]: duplicate of domains[1] (domain=globex.example.com)'),
        (dict(destinations=[{'setid': 1, 'uri': 'sip:h', 'attrs': {'weight': 3}}]), 'destinations[0].attrs: must not contain weight'),
    ]
    for args, message in cases:
        result = routing(db, **args)
        assert result['failed'] is True, args
        assert message in result['msg']
    assert dump(sql, db) == ([], [])


def test_argument_spec_errors_name_the_field(db):
    result = routing(db, destinations=[{'setid': 1}])
    assert result['failed'] is True
    assert 'uri' in result['msg'] and 'destinations' in result['msg']
    result = routing(db, destinations=[{'setid': 1, 'uri': 'sip:h', 'admin_state': 'off'}])
    assert 'admin_state' in result['msg'] and 'off' in result['msg']


def test_a_failed_write_leaves_the_db_unchanged(db, sql):
    sql(db, "CREATE TRIGGER refuse BEFORE INSERT ON dispatcher WHEN NEW.destination = 'sip:[2001:db8::20]'"
            " BEGIN SELECT RAISE(ABORT, 'refused by a test trigger'); END")
    result = routing(db)
    assert result['failed'] is True
    assert result['msg'] == '%s: refused by a test trigger' % db
    assert dump(sql, db) == ([], [])


def test_another_writer_holding_the_db_makes_a_clean_failure(db, sql):
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute('BEGIN IMMEDIATE')
    try:
        with patch.object(routing_db, 'BUSY_TIMEOUT', 0.2):
            result = routing(db)
    finally:
        writer.execute('ROLLBACK')
        writer.close()
    assert result['failed'] is True
    assert result['msg'] == '%s: database is locked' % db
    assert dump(sql, db) == ([], [])


def test_a_reader_in_a_transaction_does_not_block_the_write(db, sql):
    reader = sqlite3.connect(db, isolation_level=None)  # the router reads like this
    reader.execute('BEGIN')
    assert reader.execute('SELECT count(*) FROM sip_domains').fetchone() == (0,)
    try:
        assert routing(db)['changed'] is True
        assert reader.execute('SELECT count(*) FROM sip_domains').fetchone() == (0,)  # its snapshot
    finally:
        reader.execute('ROLLBACK')
        reader.close()
    assert len(dump(sql, db)[0]) == 2


def test_domain_whose_set_has_no_destination_is_a_warning(db, sql):
    result = routing(db, domains=DOMAINS + [{'domain': 'empty.example', 'setid': 99}])
    assert result['changed'] is True
    assert result['warnings'] == ['1 domain(s) route to a set with no destination (their calls get no answer): empty.example (set 99)']
    assert len(dump(sql, db)[0]) == 3


def test_other_schema_version_is_refused(db, sql):
    sql(db, 'PRAGMA user_version = 1')
    result = routing(db)
    assert result['failed'] is True
    assert 'schema version 1, the modules need version 2' in result['msg'] and 'sipedge db init' in result['msg']


def test_missing_db_is_refused_and_not_created(tmp_path):
    path = str(tmp_path / 'routing.db')
    for check_mode in (True, False):
        result = routing(path, _ansible_check_mode=check_mode)
        assert result['failed'] is True
        assert 'no such routing DB' in result['msg']
    assert not os.listdir(tmp_path)


def test_invocation_counts_the_items_instead_of_echoing_them(db):
    result = routing(db)
    assert result['invocation']['module_args']['domains'] == '(2 items)'
    assert result['invocation']['module_args']['destinations'] == '(3 items)'


def owners(db):
    """(uid, gid) of the DB and of its -wal and -shm files that exist."""
    return {suffix: (os.stat(db + suffix).st_uid, os.stat(db + suffix).st_gid)
            for suffix in ('', '-wal', '-shm') if os.path.exists(db + suffix)}


def test_wal_and_shm_files_belong_to_the_db_owner(db):
    """Run as root (as Ansible's become does), SQLite gives the -wal and -shm
    files it creates the DB file's owner: the router keeps access to them."""
    seen = []
    real_write = routing_db.write

    def write(conn, table, changes):
        real_write(conn, table, changes)
        seen.append(owners(db))  # the module's own connection has them open now

    with patch.object(routing_db, 'write', write):
        assert routing(db)['changed'] is True
    owner = os.stat(db).st_uid, os.stat(db).st_gid
    assert seen and all(found == {'': owner, '-wal': owner, '-shm': owner} for found in seen)


def test_check_mode_leaves_its_wal_and_shm_files_to_the_db_owner(db):
    """A read-only connection cannot remove the -wal and -shm files it made."""
    routing(db, _ansible_check_mode=True)
    owner = os.stat(db).st_uid, os.stat(db).st_gid
    assert owners(db) == {'': owner, '-wal': owner, '-shm': owner}
