# -*- coding: utf-8 -*-
# Copyright: voip.sip_edge contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Unit tests of the voip.sip_edge.tenant_routing filter."""

from __future__ import annotations

import os
import time

import pytest
import yaml

from ansible.errors import AnsibleFilterError
from ansible_collections.voip.sip_edge.plugins.filter import tenant_routing as plugin
from ansible_collections.voip.sip_edge.plugins.filter.tenant_routing import FilterModule, tenant_routing
from ansible_collections.voip.sip_edge.plugins.modules import sip_routing
from ansible_collections.voip.sip_edge.tests.unit.plugins.modules.utils import run_module

COLLECTION = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(plugin.__file__))))

ALPHA = {
    'name': 'alpha',
    'setid': 10,
    'domains': ['alpha.example.com', 'voice.alpha.example.com'],
    'destinations': [
        {'uri': 'sip:192.0.2.10:5060', 'description': 'pbx1'},
        {'uri': 'sip:192.0.2.11:5060', 'priority': 1, 'weight': 30, 'admin_state': 'disabled'},
    ],
}
BETA = {
    'name': 'beta',
    'setid': 20,
    'enabled': False,
    'domains': ['beta.example.com'],
    'destinations': [{'uri': 'sip:192.0.2.20'}],
}


def tenant(**fields):
    """A valid tenant with some fields replaced (a field set to ... is removed)."""
    result = dict(BETA, **fields)
    return {key: value for key, value in result.items() if value is not ...}


def error(tenants):
    with pytest.raises(AnsibleFilterError) as caught:
        tenant_routing(tenants)
    return str(caught.value)


def test_rows_of_two_tenants():
    assert tenant_routing([ALPHA, BETA]) == {
        'domains': [
            {'domain': 'alpha.example.com', 'setid': 10, 'enabled': True, 'comment': 'alpha'},
            {'domain': 'voice.alpha.example.com', 'setid': 10, 'enabled': True, 'comment': 'alpha'},
            {'domain': 'beta.example.com', 'setid': 20, 'enabled': False, 'comment': 'beta'},
        ],
        'destinations': [
            {'setid': 10, 'uri': 'sip:192.0.2.10:5060', 'priority': 0, 'admin_state': 'active', 'description': 'alpha: pbx1'},
            {'setid': 10, 'uri': 'sip:192.0.2.11:5060', 'priority': 1, 'weight': 30, 'admin_state': 'disabled',
             'description': 'alpha'},
            {'setid': 20, 'uri': 'sip:192.0.2.20', 'priority': 0, 'admin_state': 'active', 'description': 'beta'},
        ],
    }


def test_no_tenants_no_rows():
    assert tenant_routing([]) == {'domains': [], 'destinations': []}


def test_a_tenant_without_domains_or_destinations():
    assert tenant_routing([{'name': 'empty', 'setid': 0}]) == {'domains': [], 'destinations': []}
    assert tenant_routing([{'name': 'empty', 'setid': 0, 'domains': None, 'destinations': None}]) == {
        'domains': [], 'destinations': []}


def test_values_are_converted_as_the_role_argument_spec_converts_them():
    """The role's argument spec accepts '20' for an int and 'no' for a bool; so does the filter."""
    rows = tenant_routing([tenant(setid='20', enabled='no', destinations=[{'uri': 'sip:192.0.2.20', 'priority': '3', 'weight': '7'}])])
    assert rows['domains'][0]['setid'] == 20 and rows['domains'][0]['enabled'] is False
    assert rows['destinations'] == [
        {'setid': 20, 'uri': 'sip:192.0.2.20', 'priority': 3, 'weight': 7, 'admin_state': 'active', 'description': 'beta'}]


def test_the_limits_are_accepted():
    top = 2 ** 31 - 1
    destinations = [{'uri': 'sip:192.0.2.20', 'priority': top, 'weight': 100}, {'uri': 'sip:192.0.2.21', 'weight': 0}]
    rows = tenant_routing([tenant(setid=top, destinations=destinations)])
    assert rows['domains'][0]['setid'] == top
    assert [(d['priority'], d['weight']) for d in rows['destinations']] == [(top, 100), (0, 0)]


def test_the_input_is_not_changed():
    tenants = [dict(ALPHA)]
    before = repr(tenants)
    tenant_routing(tenants)
    assert repr(tenants) == before


@pytest.mark.parametrize('tenants, message', [
    ([ALPHA, tenant(setid=10)],
     "setid 10 is used by two tenants: tenant 'alpha' (tenants[0]) and tenant 'beta' (tenants[1])"),
    ([ALPHA, tenant(domains=['Alpha.Example.COM'])],
     "domain 'Alpha.Example.COM' is claimed by two tenants: tenant 'alpha' (tenants[0]) and tenant 'beta' (tenants[1])"),
    ([ALPHA, BETA, tenant(setid=30, domains=[])],
     "name 'beta' is used by two tenants: tenant 'beta' (tenants[1]) and tenant 'beta' (tenants[2])"),
])
def test_conflicts_name_both_tenants(tenants, message):
    assert error(tenants) == 'tenant_routing: ' + message


@pytest.mark.parametrize('bad, message', [
    (tenant(name=...), "tenants[1].name: must be a non-empty string, got None"),
    (tenant(name=''), "tenants[1].name: must be a non-empty string, got ''"),
    (tenant(setid=...), "tenant 'beta' (tenants[1]): setid: required"),
    (tenant(setid=-1), "tenant 'beta' (tenants[1]): setid: must be an integer from 0 to 2147483647, got -1"),
    (tenant(setid=2 ** 31), "tenant 'beta' (tenants[1]): setid: must be an integer from 0 to 2147483647, got 2147483648"),
    (tenant(setid=True), "tenant 'beta' (tenants[1]): setid: must be an integer from 0 to 2147483647, got True"),
    (tenant(setid='twenty'), "tenant 'beta' (tenants[1]): setid: must be an integer from 0 to 2147483647, got 'twenty'"),
    (tenant(enabled='maybe'), "tenant 'beta' (tenants[1]): enabled: must be a boolean, got 'maybe'"),
    (tenant(domains='beta.example.com'), "tenant 'beta' (tenants[1]): domains: must be a list, got str"),
    (tenant(domains=['ok.example.com', 5]), "tenant 'beta' (tenants[1]): domains[1]: must be a non-empty string, got 5"),
    (tenant(destinations={'uri': 'sip:192.0.2.20'}), "tenant 'beta' (tenants[1]): destinations: must be a list, got dict"),
    (tenant(destinations=['sip:192.0.2.20']), "tenant 'beta' (tenants[1]): destinations[0]: must be a dict, got str"),
    (tenant(destinations=[{'priority': 1}]), "tenant 'beta' (tenants[1]): destinations[0].uri: must be a non-empty string, got None"),
    (tenant(destinations=[{'uri': 'sip:192.0.2.20', 'weight': 150}]),
     "tenant 'beta' (tenants[1]): destinations[0].weight: must be an integer from 0 to 100, got 150"),
    (tenant(destinations=[{'uri': 'sip:192.0.2.20', 'priority': -5}]),
     "tenant 'beta' (tenants[1]): destinations[0].priority: must be an integer from 0 to 2147483647, got -5"),
    (tenant(destinations=[{'uri': 'sip:192.0.2.20', 'admin_state': 'off'}]),
     "tenant 'beta' (tenants[1]): destinations[0].admin_state: must be one of active, disabled, got 'off'"),
    (tenant(destinations=[{'uri': 'sip:192.0.2.20', 'description': 7}]),
     "tenant 'beta' (tenants[1]): destinations[0].description: must be a non-empty string, got 7"),
    (tenant(setid_=1), "tenants[1]: unknown field(s) setid_ (known: name, setid, domains, enabled, destinations)"),
    (tenant(destinations=[{'uri': 'sip:192.0.2.20', 'prio': 1, 'attrs': {}}]),
     "tenant 'beta' (tenants[1]): destinations[0]: unknown field(s) attrs, prio (known: uri, priority, weight, admin_state, description)"),
    ('beta', "tenants[1]: must be a dict, got str"),
    (tenant(domains=['beta.example.com', 'x.example.com', 'Beta.Example.com']),
     "tenant 'beta' (tenants[1]): domains[2]: 'Beta.Example.com' is listed twice (also item 0)"),
    (tenant(destinations=[{'uri': 'sip:192.0.2.20'}, {'uri': 'sip:192.0.2.20', 'priority': 2}]),
     "tenant 'beta' (tenants[1]): destinations[1].uri: 'sip:192.0.2.20' is listed twice (also item 0)"),
])
def test_errors_name_the_tenant_and_the_field(bad, message):
    assert error([ALPHA, bad]) == 'tenant_routing: ' + message


@pytest.mark.parametrize('value', [None, {'name': 'alpha'}, 'alpha'])
def test_the_input_must_be_a_list(value):
    assert error(value).startswith('tenant_routing: expects a list of tenants, got ')


def test_the_plugin_exports_the_filter():
    assert FilterModule().filters() == {'tenant_routing': tenant_routing}


def test_the_documentation_lists_the_fields_the_filter_knows():
    with open(os.path.join(COLLECTION, 'plugins', 'filter', 'tenant_routing.yml'), encoding='utf-8') as handle:
        documented = yaml.safe_load(handle)['DOCUMENTATION']['options']['_input']['suboptions']
    assert set(documented) == set(plugin.TENANT_FIELDS)
    assert set(documented['destinations']['suboptions']) == set(plugin.DESTINATION_FIELDS)
    assert documented['destinations']['suboptions']['admin_state']['choices'] == list(plugin.ADMIN_STATES)


@pytest.mark.parametrize('group_vars', ['inventories/demo/group_vars/sip_edge.yml', 'inventories/example/group_vars/sip_edge.yml',
                                        'molecule/tenants/inventory/group_vars/sip_edge.yml'])
def test_the_shipped_inventories_are_what_sip_routing_takes(db, group_vars):
    """The filter's output is sip_routing's input: the module accepts it, then finds nothing to change."""
    with open(os.path.join(COLLECTION, group_vars), encoding='utf-8') as handle:
        tenants = yaml.safe_load(handle)['sip_edge_tenants']
    rows = tenant_routing(tenants)
    first = run_module(sip_routing.main, dict(rows, db=db))
    assert 'failed' not in first and 'warnings' not in first, first
    assert first['domains'] == {'added': sum(len(t['domains']) for t in tenants), 'updated': 0, 'removed': 0}
    assert first['destinations'] == {'added': sum(len(t['destinations']) for t in tenants), 'updated': 0, 'removed': 0}
    assert run_module(sip_routing.main, dict(rows, db=db, purge=True))['changed'] is False


def test_ten_thousand_tenants_take_well_under_a_second():
    tenants = [{'name': 'tenant%05d' % i, 'setid': i + 1, 'domains': ['t%05d.example.test' % i],
                'destinations': [{'uri': 'sip:192.0.2.%d:%d' % (i % 250 + 1, 5060 + j), 'priority': j, 'weight': 50}
                                 for j in range(2)]}
               for i in range(10000)]
    started = time.perf_counter()
    rows = tenant_routing(tenants)
    elapsed = time.perf_counter() - started
    print('tenant_routing: 10,000 tenants, 20,000 destinations in %.3f s' % elapsed)
    assert (len(rows['domains']), len(rows['destinations'])) == (10000, 20000)
    assert elapsed < 0.5
