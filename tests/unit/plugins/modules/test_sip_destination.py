"""sip_destination's main() against a real routing DB."""

from __future__ import annotations

from ansible_collections.voip.sip_edge.plugins.modules import sip_destination
from ansible_collections.voip.sip_edge.tests.unit.plugins.modules.utils import run_module

URI = 'sip:10.0.1.10:5060'
NEW = {'setid': 10, 'uri': URI, 'priority': 0, 'weight': None, 'attrs': {}, 'admin_state': 'active', 'description': None}


def destination(db, **args):
    return run_module(sip_destination.main, dict({'db': db, 'setid': 10, 'uri': URI}, **args))


def rows(sql, db):
    return sql(db, 'SELECT setid, destination, flags, priority, attrs, description FROM dispatcher ORDER BY id')


def test_check_mode_then_add_with_defaults_then_no_change(db, sql):
    check = destination(db, _ansible_check_mode=True, _ansible_diff=True)
    assert check['changed'] is True and check['row'] == NEW
    assert check['diff']['after'] == NEW
    assert rows(sql, db) == []
    result = destination(db, _ansible_diff=True)
    assert result == check
    assert rows(sql, db) == [(10, URI, 0, 0, '', None)]
    assert destination(db)['changed'] is False


def test_omitted_options_leave_the_row_alone(db, sql):
    destination(db, priority=2, weight=50, attrs={'duid': 'pbx1'}, description='acme')
    assert rows(sql, db) == [(10, URI, 0, 2, 'duid=pbx1;weight=50', 'acme')]
    assert destination(db, weight=50)['changed'] is False
    result = destination(db, attrs={'maxload': 20})
    assert result['changed'] is True
    assert result['row'] == dict(NEW, priority=2, weight=50, attrs={'maxload': '20'}, description='acme')
    result = destination(db, weight=5)
    assert result['row']['attrs'] == {'maxload': '20'} and result['row']['weight'] == 5
    assert rows(sql, db) == [(10, URI, 0, 2, 'maxload=20;weight=5', 'acme')]


def test_admin_state_touches_only_the_disabled_bit(db, sql):
    sql(db, "INSERT INTO dispatcher (setid, destination, flags, attrs) VALUES (10, ?, 9, 'weight=3; duid=x')", (URI,))
    check = destination(db, admin_state='disabled', _ansible_check_mode=True)
    assert check['changed'] is True
    assert rows(sql, db)[0][2] == 9
    result = destination(db, admin_state='disabled', _ansible_diff=True)
    assert result['diff']['before']['admin_state'] == 'active' and result['diff']['after']['admin_state'] == 'disabled'
    assert rows(sql, db) == [(10, URI, 13, 0, 'duid=x;weight=3', None)]
    assert destination(db, admin_state='disabled')['changed'] is False
    destination(db, admin_state='active')
    assert rows(sql, db)[0][2] == 9


def test_absent_removes_and_warns_about_an_emptied_set(db, sql):
    sql(db, "INSERT INTO sip_domains VALUES ('acme.example.com', 10, 1, 'acme')")
    destination(db)
    result = destination(db, state='absent', _ansible_diff=True)
    assert result['changed'] is True and result['row'] is None
    assert result['diff']['before'] == NEW and result['diff']['after'] == {}
    assert result['warnings'] == ['1 domain(s) route to a set with no destination (their calls get no answer): acme.example.com (set 10)']
    assert rows(sql, db) == []
    assert destination(db, state='absent')['changed'] is False


def test_uri_is_the_exact_string(db, sql):
    destination(db)
    result = destination(db, uri='sip:10.0.1.10:5060;transport=udp')
    assert result['changed'] is True
    assert [row[1] for row in rows(sql, db)] == [URI, 'sip:10.0.1.10:5060;transport=udp']


def test_bad_input_names_the_parameter_and_writes_nothing(db, sql):
    cases = [
        (dict(uri='sips:10.0.1.10'), "uri: sips: is refused: TLS is not supported yet (the router speaks UDP) (got 'sips:10.0.1.10')"),
        (dict(uri='sip:10.0.1.10:70000'), "uri: the port must be a number 1-65535 (got 'sip:10.0.1.10:70000')"),
        (dict(setid=2 ** 31), 'setid: must be between 0 and 2147483647 (got 2147483648)'),
        (dict(priority=-1), 'priority: must be between 0 and 2147483647 (got -1)'),
        (dict(weight=101), 'weight: must be between 0 and 100 (got 101)'),
        (dict(attrs={'weight': 1}), "attrs: must not contain weight; use the weight option (got {'weight': 1})"),
    ]
    for args, message in cases:
        result = destination(db, **args)
        assert result['failed'] is True
        assert result['msg'] == message
    assert rows(sql, db) == []


def test_other_schema_version_is_refused(db, sql):
    sql(db, 'PRAGMA user_version = 3')
    result = destination(db)
    assert result['failed'] is True and 'schema version 3, the modules need version 2' in result['msg']
