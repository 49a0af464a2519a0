"""sip_domain's main() against a real routing DB."""

from __future__ import annotations

import os

from ansible_collections.voip.sip_edge.plugins.modules import sip_domain
from ansible_collections.voip.sip_edge.tests.unit.plugins.modules.utils import run_module

ACME = {'domain': 'acme.example.com', 'setid': 10, 'enabled': True, 'comment': 'acme'}


def domain(db, **args):
    return run_module(sip_domain.main, dict({'db': db, 'domain': 'acme.example.com'}, **args))


def rows(sql, db):
    return sql(db, 'SELECT * FROM sip_domains ORDER BY domain')


def test_check_mode_then_add_then_no_change(db, sql):
    sql(db, "INSERT INTO dispatcher (setid, destination) VALUES (10, 'sip:10.0.1.10')")
    check = domain(db, setid=10, comment='acme', _ansible_check_mode=True, _ansible_diff=True)
    assert check['changed'] is True and check['row'] == ACME
    assert check['diff']['before'] == {} and check['diff']['after'] == ACME
    assert rows(sql, db) == []
    result = domain(db, setid=10, comment='acme', _ansible_diff=True)
    assert result == dict(check, changed=True)
    assert 'warnings' not in result
    assert rows(sql, db) == [('acme.example.com', 10, 1, 'acme')]
    again = domain(db, setid=10, comment='acme', _ansible_diff=True)
    assert again['changed'] is False and again['row'] == ACME
    assert again['diff']['before'] == again['diff']['after'] == {}


def test_omitted_options_leave_the_row_alone(db, sql):
    domain(db, setid=10, comment='acme')
    result = domain(db, enabled=False, _ansible_diff=True)
    assert result['changed'] is True
    assert result['diff']['before'] == ACME
    assert result['diff']['after'] == dict(ACME, enabled=False)
    assert rows(sql, db) == [('acme.example.com', 10, 0, 'acme')]
    assert domain(db)['changed'] is False
    assert domain(db, setid=11)['row'] == dict(ACME, enabled=False, setid=11)


def test_new_domain_needs_a_setid(db, sql):
    result = domain(db, enabled=True)
    assert result['failed'] is True
    assert result['msg'] == 'setid: required to add domain=acme.example.com (it does not exist yet)'
    assert rows(sql, db) == []


def test_absent_removes_and_then_changes_nothing(db, sql):
    domain(db, setid=10)
    check = domain(db, state='absent', _ansible_check_mode=True)
    assert check['changed'] is True and check['row'] is None
    assert len(rows(sql, db)) == 1
    result = domain(db, state='absent', _ansible_diff=True)
    assert result['changed'] is True and result['row'] is None
    assert result['diff']['after'] == {} and result['diff']['before']['domain'] == 'acme.example.com'
    assert rows(sql, db) == []
    assert domain(db, state='absent')['changed'] is False


def test_unicode_domain_is_stored_as_its_a_label(db, sql):
    result = domain(db, domain='bücher.example', setid=1)
    assert result['row']['domain'] == 'xn--bcher-kva.example'
    assert domain(db, domain='xn--bcher-kva.example', setid=1)['changed'] is False
    assert rows(sql, db) == [('xn--bcher-kva.example', 1, 1, None)]


def test_bad_input_names_the_parameter_and_writes_nothing(db, sql):
    result = domain(db, domain='ACME.example.com', setid=10)
    assert result['failed'] is True
    assert result['msg'] == "domain: upper case is not allowed, the router matches the R-URI host exactly; write 'acme.example.com' (got 'ACME.example.com')"
    result = domain(db, setid=-1)
    assert result['msg'] == 'setid: must be between 0 and 2147483647 (got -1)'
    assert rows(sql, db) == []


def test_set_without_destination_is_a_warning(db, sql):
    result = domain(db, setid=10)
    assert result['changed'] is True
    assert result['warnings'] == ['1 domain(s) route to a set with no destination (their calls get no answer): acme.example.com (set 10)']
    assert 'warnings' not in domain(db, setid=10, enabled=False)


def test_other_schema_version_and_missing_db(db, sql, tmp_path):
    sql(db, 'PRAGMA user_version = 1')
    assert 'schema version 1, the modules need version 2' in domain(db, setid=1)['msg']
    missing = str(tmp_path / 'none' / 'routing.db')
    assert 'no such routing DB' in domain(missing, setid=1)['msg']
    assert not os.path.exists(os.path.dirname(missing))
