# -*- coding: utf-8 -*-
# Copyright: voip.sip_edge contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""voip.sip_edge.tenant_routing: the inventory's tenants as the rows of voip.sip_edge.sip_routing.

Documentation: tenant_routing.yml next to this file (ansible-doc -t filter voip.sip_edge.tenant_routing).
Every error names the tenant (its name and its index in the list) and the field, and an
error between two tenants names both. One pass over the list: 10,000 tenants with 20,000
destinations take about 0.1 s as plain data; inside a template, where Ansible hands the
filter lazy containers that template every value read, about 1.5 s.
"""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.module_utils.common.validation import check_type_bool, check_type_int

MAX_ID = 2 ** 31 - 1  # setid and priority: Kamailio's signed 32-bit columns
TENANT_FIELDS = ('name', 'setid', 'domains', 'enabled', 'destinations')
DESTINATION_FIELDS = ('uri', 'priority', 'weight', 'admin_state', 'description')
ADMIN_STATES = ('active', 'disabled')


def _fail(where, message):
    raise AnsibleFilterError('tenant_routing: %s: %s' % (where, message))


def _type_name(value):
    return type(value).__name__


def _mapping(value, where, fields):
    """value as a plain dict, each field read once (Ansible hands filters lazy containers in
    which every read is a templating step)."""
    if not isinstance(value, Mapping):
        _fail(where, 'must be a dict, got %s' % _type_name(value))
    value = dict(value)
    unknown = sorted(str(key) for key in value if key not in fields)
    if unknown:
        _fail(where, 'unknown field(s) %s (known: %s)' % (', '.join(unknown), ', '.join(fields)))
    return value


def _list(value, where):
    if value is None:
        return []
    if not isinstance(value, list):
        _fail(where, 'must be a list, got %s' % _type_name(value))
    return value


def _text(value, where):
    if not isinstance(value, str) or not value:
        _fail(where, 'must be a non-empty string, got %r' % (value,))
    return value


def _integer(value, where, high):
    number = None
    if not isinstance(value, bool):  # check_type_int would take True for 1
        try:
            number = check_type_int(value)
        except TypeError:
            pass
    if number is None or not 0 <= number <= high:
        _fail(where, 'must be an integer from 0 to %d, got %r' % (high, value))
    return number


def _bool(value, where):
    try:
        return check_type_bool(value)
    except TypeError:
        _fail(where, 'must be a boolean, got %r' % (value,))


def _destination(raw, at, setid, name):
    """One destination of tenant name (set setid) as a sip_routing item; at names it in errors."""
    destination = _mapping(raw, at, DESTINATION_FIELDS)
    admin_state = destination.get('admin_state', 'active')
    if admin_state not in ADMIN_STATES:
        _fail(at + '.admin_state', 'must be one of %s, got %r' % (', '.join(ADMIN_STATES), admin_state))
    item = {
        'setid': setid,
        'uri': _text(destination.get('uri'), at + '.uri'),
        'priority': _integer(destination.get('priority', 0), at + '.priority', MAX_ID),
        'admin_state': admin_state,
        'description': name,
    }
    if destination.get('weight') is not None:
        item['weight'] = _integer(destination['weight'], at + '.weight', 100)
    if destination.get('description') is not None:
        item['description'] = '%s: %s' % (name, _text(destination['description'], at + '.description'))
    return item


def _once(seen, key, index, at, value):
    """Remember that item index of a list has key; fail when an earlier item had it."""
    first = seen.setdefault(key, index)
    if first != index:
        _fail(at, '%r is listed twice (also item %d)' % (value, first))


def _tenant(index, raw):
    """One tenant, checked: (where, name, setid, enabled, domains, destination items)."""
    where = 'tenants[%d]' % index
    tenant = _mapping(raw, where, TENANT_FIELDS)
    name = _text(tenant.get('name'), where + '.name')
    where = 'tenant %r (tenants[%d])' % (name, index)
    if 'setid' not in tenant:
        _fail(where, 'setid: required')
    setid = _integer(tenant['setid'], where + ': setid', MAX_ID)
    enabled = _bool(tenant.get('enabled', True), where + ': enabled')
    domains, seen = [], {}
    for i, domain in enumerate(_list(tenant.get('domains'), where + ': domains')):
        at = '%s: domains[%d]' % (where, i)
        domains.append(_text(domain, at))
        _once(seen, domain.lower(), i, at, domain)  # host names are case-insensitive
    destinations, seen = [], {}
    for i, destination in enumerate(_list(tenant.get('destinations'), where + ': destinations')):
        at = '%s: destinations[%d]' % (where, i)
        destinations.append(_destination(destination, at, setid, name))
        _once(seen, destinations[-1]['uri'], i, at + '.uri', destinations[-1]['uri'])
    return where, name, setid, enabled, domains, destinations


def tenant_routing(tenants):
    """Tenants -> {'domains': [...], 'destinations': [...]} in voip.sip_edge.sip_routing's item format."""
    if not isinstance(tenants, list):
        raise AnsibleFilterError('tenant_routing: expects a list of tenants, got %s' % _type_name(tenants))
    domains, destinations = [], []
    seen_names, seen_setids, seen_domains = {}, {}, {}
    for index, raw in enumerate(tenants):
        where, name, setid, enabled, tenant_domains, tenant_destinations = _tenant(index, raw)
        for seen, key, what in ((seen_names, name, 'name %r' % name), (seen_setids, setid, 'setid %d' % setid)):
            if key in seen:
                raise AnsibleFilterError('tenant_routing: %s is used by two tenants: %s and %s' % (what, seen[key], where))
            seen[key] = where
        for domain in tenant_domains:
            first = seen_domains.setdefault(domain.lower(), where)
            if first != where:
                raise AnsibleFilterError('tenant_routing: domain %r is claimed by two tenants: %s and %s' % (domain, first, where))
            domains.append({'domain': domain, 'setid': setid, 'enabled': enabled, 'comment': name})
        destinations.extend(tenant_destinations)
    return {'domains': domains, 'destinations': destinations}


class FilterModule:
    """voip.sip_edge filters."""

    def filters(self):
        return {'tenant_routing': tenant_routing}
