"""module_utils.routing: validation, the attrs string, the planner (no DB)."""

from __future__ import annotations

import pytest

from ansible_collections.voip.sip_edge.plugins.module_utils import routing
from ansible_collections.voip.sip_edge.plugins.module_utils.routing import (
    DESTINATIONS, DOMAINS, PlanError, ValidationError, check_attrs, check_domain, check_int, check_uri,
    format_attrs, parse_attrs, plan_table,
)


def domain(name, setid=1, enabled=True, comment=None):
    return {'domain': name, 'setid': setid, 'enabled': enabled, 'comment': comment}


def dest(setid, uri, priority=0, weight=None, attrs=None, admin_state='active', description=None):
    return {'setid': setid, 'uri': uri, 'priority': priority, 'weight': weight, 'attrs': attrs or {},
            'admin_state': admin_state, 'description': description}


def by_key(table, *rows):
    return {table.key(row): row for row in rows}


# ---- domains -----------------------------------------------------------------

@pytest.mark.parametrize('name', ['acme.example.com', 'a', 'a-b.c0', 'x' * 63 + '.example', '203.0.113.5', 'xn--bcher-kva.example'])
def test_domain_accepted_as_is(name):
    assert check_domain(name, 'domain') == name


def test_unicode_domain_becomes_its_a_label():
    assert check_domain('bücher.example', 'domain') == 'xn--bcher-kva.example'


@pytest.mark.parametrize('name, why', [
    ('Acme.example.com', "upper case is not allowed, the router matches the R-URI host exactly; write 'acme.example.com'"),
    ('BÜCHER.example', 'upper case is not allowed'),
    ('acme.example.com.', 'not a valid host name'),
    ('-acme.example', 'not a valid host name'),
    ('acme..example', 'not a valid host name'),
    ('a_b.example', 'not a valid host name'),
    ('x' * 64 + '.example', 'not a valid host name'),
    ('.'.join(['abcdefgh'] * 29), 'not a valid host name'),  # 260 characters
    ('acme.example:5060', 'not a valid host name'),
    ('999.1.2.3', 'not a valid IPv4 address'),
    ('xn--zz-.example', 'not a valid IDNA A-label'),
    ('', 'must be a non-empty host name'),
    (5, 'must be a non-empty host name'),
])
def test_bad_domain_names_the_parameter_and_value(name, why):
    with pytest.raises(ValidationError) as info:
        check_domain(name, 'domains[2].domain')
    assert str(info.value).startswith('domains[2].domain: ')
    assert why in str(info.value)
    assert '(got %r)' % (name,) in str(info.value)


# ---- URIs --------------------------------------------------------------------

@pytest.mark.parametrize('uri', [
    'sip:10.0.1.10', 'sip:10.0.1.10:5060', 'sip:[2001:db8::1]', 'sip:[::1]:5070', 'sip:pbx1.acme.example.com',
    'sip:PBX.example:1', 'sip:pbx:65535', 'sip:10.0.1.10;transport=udp', 'sip:10.0.1.10:5060;transport=UDP;lr',
])
def test_uri_accepted_as_the_exact_string(uri):
    assert check_uri(uri, 'uri') == uri


@pytest.mark.parametrize('uri, why', [
    ('sips:10.0.1.10', 'TLS is not supported yet'),
    ('SIPS:10.0.1.10', 'TLS is not supported yet'),
    ('sip:10.0.1.10;transport=tcp', 'transport=tcp is not supported: the router speaks UDP only'),
    ('sip:10.0.1.10:0', 'the port must be a number 1-65535'),
    ('sip:10.0.1.10:65536', 'the port must be a number 1-65535'),
    ('sip:10.0.1.10:50x', 'the port must be a number 1-65535'),
    ('sip:10.0.1.10:', 'the port must be a number 1-65535'),
    ('sip:10.0.1.256', 'not a valid IPv4 address'),
    ('sip:[2001:db8::g]', 'not a valid IPv6 address'),
    ('sip:2001:db8::1', 'an IPv6 address must be in brackets'),
    ('sip:alice@10.0.1.10', 'must be sip:HOST[:PORT][;PARAMS]'),
    ('sip:10.0.1.10?subject=x', 'must be sip:HOST[:PORT][;PARAMS]'),
    ('sip:', 'must be sip:HOST[:PORT][;PARAMS]'),
    ('SIP:10.0.1.10', 'must be sip:HOST[:PORT][;PARAMS]'),
    ('tel:+15551234', 'must be sip:HOST[:PORT][;PARAMS]'),
    ('10.0.1.10:5060', 'must be sip:HOST[:PORT][;PARAMS]'),
    ('sip:bad_host.example', 'must be sip:HOST[:PORT][;PARAMS]'),
    ('sip:10.0.1.10;a b', "bad URI parameter 'a b'"),
    (' sip:10.0.1.10', 'must be sip:HOST[:PORT][;PARAMS]'),
])
def test_bad_uri_names_the_parameter_and_value(uri, why):
    with pytest.raises(ValidationError) as info:
        check_uri(uri, 'destinations[0].uri')
    assert str(info.value).startswith('destinations[0].uri: ')
    assert why in str(info.value)
    assert repr(uri) in str(info.value)


# ---- ranges ------------------------------------------------------------------

@pytest.mark.parametrize('value', [0, 1, 2 ** 31 - 1])
def test_ids_in_range(value):
    assert check_int(value, 'setid') == value


@pytest.mark.parametrize('value, why', [(-1, 'between 0 and 2147483647'), (2 ** 31, 'between 0 and 2147483647'),
                                        (True, 'must be an integer'), ('1', 'must be an integer')])
def test_ids_out_of_range(value, why):
    with pytest.raises(ValidationError, match=r'^setid: .*%s' % why):
        check_int(value, 'setid')


def test_weight_is_0_to_100():
    row = routing.destination_row({'setid': 1, 'uri': 'sip:h', 'weight': 100})
    assert row['weight'] == 100
    with pytest.raises(ValidationError, match=r'^destinations\[4\]\.weight: must be between 0 and 100 \(got 101\)'):
        routing.destination_row({'setid': 1, 'uri': 'sip:h', 'weight': 101}, 'destinations[4].')


def test_priority_is_checked_in_rows():
    with pytest.raises(ValidationError, match=r'^priority: must be between 0 and 2147483647 \(got -5\)'):
        routing.destination_row({'setid': 1, 'uri': 'sip:h', 'priority': -5})


def test_admin_state_is_checked():
    with pytest.raises(ValidationError, match=r"^admin_state: must be one of active, disabled \(got 'off'\)"):
        routing.destination_row({'setid': 1, 'uri': 'sip:h', 'admin_state': 'off'})


def test_comment_must_be_text():
    with pytest.raises(ValidationError, match=r'^domains\[0\]\.comment: must be a string'):
        routing.domain_row({'domain': 'a.example', 'setid': 1, 'comment': 5}, 'domains[0].')


# ---- attrs -------------------------------------------------------------------

def test_canonical_attrs_sorted_with_weight_among_them():
    assert format_attrs({'socket': 'udp:10.0.0.1:5060', 'duid': 'pbx1'}, 50) == 'duid=pbx1;socket=udp:10.0.0.1:5060;weight=50'
    assert format_attrs({'zz': '1'}, 7) == 'weight=7;zz=1'
    assert format_attrs({}, None) == ''


@pytest.mark.parametrize('text', ['duid=pbx1;weight=50', 'weight=50;duid=pbx1', ' weight = 50 ; duid=pbx1 ;', 'Weight=50;DUID=pbx1;',
                                  'duid=pbx1;weight=050'])
def test_equivalent_attrs_strings_parse_alike(text):
    assert parse_attrs(text) == ({'duid': 'pbx1'}, 50)


def test_attrs_without_weight_and_odd_weight():
    assert parse_attrs(None) == ({}, None)
    assert parse_attrs('') == ({}, None)
    assert parse_attrs('weight=heavy') == ({}, 'heavy')


def test_attrs_round_trip():
    text = format_attrs({'duid': 'x', 'maxload': '20'}, 3)
    assert parse_attrs(text) == ({'duid': 'x', 'maxload': '20'}, 3)


def test_attrs_values_become_text():
    assert check_attrs({'maxload': 20, 'duid': 'a'}, 'attrs') == {'maxload': '20', 'duid': 'a'}


@pytest.mark.parametrize('attrs, why', [
    ({'weight': 5}, 'must not contain weight; use the weight option'),
    ({'Duid': 'x'}, 'attribute names are lower-case'),
    ({'a;b': 'x'}, 'attribute names are lower-case'),
    ({'duid': 'a;b'}, 'must not contain ";"'),
    ({'duid': ' a'}, 'surrounding spaces'),
    ({'duid': True}, 'must be a string or an integer'),
    ({'duid': ['a']}, 'must be a string or an integer'),
    ('duid=a', 'must be a dict'),
])
def test_bad_attrs(attrs, why):
    with pytest.raises(ValidationError, match=r'^destinations\[1\]\.attrs') as info:
        check_attrs(attrs, 'destinations[1].attrs')
    assert why in str(info.value)


# ---- duplicates --------------------------------------------------------------

def test_duplicate_domains_name_both_items():
    rows = [domain('a.example'), domain('b.example'), domain('a.example', 2)]
    with pytest.raises(ValidationError, match=r'^domains\[2\]: duplicate of domains\[0\] \(domain=a.example\)'):
        routing.keyed(rows, DOMAINS, 'domains')


def test_unicode_and_a_label_of_one_domain_are_duplicates():
    rows = [routing.domain_row({'domain': 'bücher.example', 'setid': 1}), routing.domain_row({'domain': 'xn--bcher-kva.example', 'setid': 1})]
    with pytest.raises(ValidationError, match=r'duplicate of domains\[0\]'):
        routing.keyed(rows, DOMAINS, 'domains')


def test_duplicate_destinations_are_per_set():
    rows = [dest(1, 'sip:h'), dest(2, 'sip:h')]
    assert len(routing.keyed(rows, DESTINATIONS, 'destinations')) == 2
    with pytest.raises(ValidationError, match=r'^destinations\[1\]: duplicate of destinations\[0\] \(setid=1 uri=sip:h\)'):
        routing.keyed([dest(1, 'sip:h'), dest(1, 'sip:h', priority=3)], DESTINATIONS, 'destinations')


# ---- the planner -------------------------------------------------------------

def test_plan_adds_updates_and_leaves_equal_rows():
    current = by_key(DOMAINS, domain('a.example', 1), domain('b.example', 2))
    desired = by_key(DOMAINS, domain('a.example', 1), domain('b.example', 3), domain('c.example', 4))
    changes = plan_table(DOMAINS, current, desired)
    assert changes.added == [domain('c.example', 4)]
    assert changes.updated == [(domain('b.example', 2), domain('b.example', 3))]
    assert changes.removed == []


def test_plan_without_purge_never_removes():
    current = by_key(DOMAINS, domain('a.example'), domain('b.example'))
    assert plan_table(DOMAINS, current, {}) == ([], [], [])


def test_plan_with_purge_removes_what_the_input_does_not_name():
    current = by_key(DOMAINS, domain('a.example'), domain('b.example'))
    changes = plan_table(DOMAINS, current, by_key(DOMAINS, domain('a.example')), purge=True)
    assert changes == ([], [], [domain('b.example')])


def test_plan_absent_keys():
    current = by_key(DESTINATIONS, dest(1, 'sip:a'), dest(1, 'sip:b'))
    changes = plan_table(DESTINATIONS, current, {}, absent=[(1, 'sip:a'), (1, 'sip:gone')])
    assert changes == ([], [], [dest(1, 'sip:a')])


def test_partial_row_leaves_other_fields_and_new_row_takes_defaults():
    current = by_key(DESTINATIONS, dest(1, 'sip:a', priority=5, weight=10, attrs={'duid': 'x'}, description='acme'))
    changes = plan_table(DESTINATIONS, current, {(1, 'sip:a'): {'setid': 1, 'uri': 'sip:a', 'admin_state': 'disabled'}})
    assert changes.updated == [(current[(1, 'sip:a')],
                                dest(1, 'sip:a', priority=5, weight=10, attrs={'duid': 'x'}, admin_state='disabled', description='acme'))]
    changes = plan_table(DESTINATIONS, {}, {(2, 'sip:b'): {'setid': 2, 'uri': 'sip:b', 'weight': 7}})
    assert changes.added == [dest(2, 'sip:b', weight=7)]
    assert list(changes.added[0]) == list(DESTINATIONS.fields)


def test_partial_row_equal_to_current_is_no_change():
    current = by_key(DOMAINS, domain('a.example', 3, comment='acme'))
    assert plan_table(DOMAINS, current, {('a.example',): {'domain': 'a.example', 'enabled': True}}) == ([], [], [])


def test_new_domain_without_setid_is_refused():
    with pytest.raises(PlanError, match=r'^setid: required to add domain=a.example \(it does not exist yet\)'):
        plan_table(DOMAINS, {}, {('a.example',): {'domain': 'a.example', 'enabled': False}})


def test_plan_does_not_touch_its_inputs():
    current = by_key(DOMAINS, domain('a.example', 1))
    desired = by_key(DOMAINS, domain('a.example', 2))
    plan_table(DOMAINS, current, desired)
    assert current == by_key(DOMAINS, domain('a.example', 1))


def test_counts_diff_and_after_rows():
    current = by_key(DOMAINS, domain('a.example', 1), domain('b.example', 2), domain('c.example', 3))
    desired = by_key(DOMAINS, domain('a.example', 1), domain('b.example', 5), domain('d.example', 4))
    changes = plan_table(DOMAINS, current, desired, purge=True)
    assert routing.counts(changes) == {'added': 1, 'updated': 1, 'removed': 1}
    before, after = routing.diff_rows(changes)
    assert before == [domain('b.example', 2), domain('c.example', 3)]
    assert after == [domain('b.example', 5), domain('d.example', 4)]
    assert routing.after_rows(current, changes, DOMAINS) == desired
    assert routing.changed(changes) and not routing.changed(routing.Changes([], [], []))


# ---- purge safety and warnings -----------------------------------------------

@pytest.mark.parametrize('current, removed, refused', [
    (10, 0, None), (10, 5, None), (10, 6, 'would remove 6 of the 10 rows of sip_domains (more than half)'),
    (1, 1, 'would remove all 1 rows of sip_domains'), (4, 4, 'would remove all 4 rows'), (3, 1, None), (2, 1, None),
])
def test_purge_refusal(current, removed, refused):
    changes = routing.Changes([], [], [domain('x%d.example' % i) for i in range(removed)])
    message = routing.purge_refusal(DOMAINS, current, changes)
    if refused is None:
        assert message is None
    else:
        assert refused in message and 'force: true' in message


def test_orphan_domains_are_enabled_watched_domains_without_destination():
    domains = by_key(DOMAINS, domain('a.example', 1), domain('b.example', 2), domain('c.example', 2, enabled=False), domain('d.example', 3))
    destinations = by_key(DESTINATIONS, dest(1, 'sip:a'))
    watched = {('a.example',), ('b.example',), ('c.example',), ('gone.example',)}
    assert routing.orphan_domains(domains, destinations, watched) == ['b.example (set 2)']


# ---- DB rows -----------------------------------------------------------------

def test_destination_from_db_reads_flags_bit_and_attrs():
    row = routing.destination_from_db((1, 'sip:a', 4, None, ' weight=5;duid=x;', 'acme'))
    assert row == dest(1, 'sip:a', priority=0, weight=5, attrs={'duid': 'x'}, admin_state='disabled', description='acme')


def test_destination_to_db_writes_canonical_attrs():
    row = dest(1, 'sip:a', priority=2, weight=5, attrs={'duid': 'x'}, admin_state='disabled')
    assert routing.destination_to_db(row) == (2, 'duid=x;weight=5', 4, None, 1, 'sip:a')


def test_domain_db_round_trip():
    row = domain('a.example', 7, enabled=False, comment='acme')
    setid, enabled, comment, name = routing.domain_to_db(row)
    assert (setid, enabled, comment, name) == (7, 0, 'acme', 'a.example')
    assert routing.domain_from_db((name, setid, enabled == 1, comment)) == row
