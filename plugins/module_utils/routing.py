# Copyright: Contributors to the voip.sip_edge project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validation and planning for the routing DB modules: pure Python, no DB.

The modules work on *logical rows*, one dict per row in the terms of their
options:

- domain: ``{domain, setid, enabled, comment}``
- destination: ``{setid, uri, priority, weight, attrs, admin_state, description}``,
  ``attrs`` a dict of str -> str without ``weight``.

``plan_table`` turns the current rows and the desired ones into the changes
(rows added, rows updated as (before, after), rows removed); check mode, diff
mode and the real run all report that one plan.
"""

from __future__ import annotations

import ipaddress
import re
from collections import namedtuple

MAX_ID = 2 ** 31 - 1  # setid and priority: Kamailio's signed 32-bit int
MAX_WEIGHT = 100
FLAG_DISABLED = 4  # Kamailio's admin "disabled" bit of dispatcher.flags
ADMIN_STATES = ('active', 'disabled')

_LABEL = re.compile(r'[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z')
_ANY_CASE_LABEL = re.compile(r'[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z')
_DOTTED_NUMBERS = re.compile(r'[0-9.]+\Z')
_URI = re.compile(r'(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):(?P<host>\[[^\]]*\]|[^:;?@\[\]]*)(?::(?P<port>[^;?]*))?(?P<params>(?:;[^?]*)?)\Z')
_PARAM = re.compile(r"[A-Za-z0-9_.!~*'%+-]+(?:=[A-Za-z0-9_.!~*'%+:\[\]-]*)?\Z")
_ATTR_NAME = re.compile(r'[a-z0-9_.-]+\Z')


class ValidationError(Exception):
    """Bad input; the message names the parameter and the value."""


class PlanError(Exception):
    """The desired rows cannot be applied to the current ones; the message says why."""


def _bad(param, what, value):
    return ValidationError('%s: %s (got %r)' % (param, what, value))


# ---- validation -------------------------------------------------------------

def check_int(value, param, high=MAX_ID):
    """An integer 0..high (setid and priority 0..2^31-1, weight 0..100)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(param, 'must be an integer', value)
    if not 0 <= value <= high:
        raise _bad(param, 'must be between 0 and %d' % high, value)
    return value


def _is_host_name(host, label=_LABEL):
    labels = host.split('.')
    return len(host) <= 253 and all(label.match(part) for part in labels)


def check_domain(value, param):
    """A domain as the router matches it, exactly, against the R-URI host.

    Upper case is refused rather than folded (the stored name must be the one
    the operator wrote); a Unicode name is stored as its IDNA A-label
    (``xn--...``), which is what arrives in a SIP request.
    """
    if not isinstance(value, str) or not value:
        raise _bad(param, 'must be a non-empty host name', value)
    if value != value.lower():
        raise _bad(param, 'upper case is not allowed, the router matches the R-URI host exactly; write %r' % value.lower(), value)
    name = value
    if not name.isascii():
        try:
            name = name.encode('idna').decode('ascii')
        except UnicodeError as exc:
            raise _bad(param, 'not a valid internationalized domain name (%s)' % exc, value) from None
    elif 'xn--' in name:
        try:
            name.encode('ascii').decode('idna')
        except UnicodeError as exc:
            raise _bad(param, 'not a valid IDNA A-label (%s)' % exc, value) from None
    if _DOTTED_NUMBERS.match(name):
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise _bad(param, 'not a valid IPv4 address', value) from None
    elif not _is_host_name(name):
        raise _bad(param, 'not a valid host name (letters, digits and "-" in dot-separated labels of 1-63, no trailing dot)', value)
    return name


def check_uri(value, param):
    """A destination: ``sip:HOST[:PORT][;PARAMS]``, HOST an IPv4 address, an
    [IPv6] address or a host name, PORT 1-65535; kept as the exact string."""
    form = 'must be sip:HOST[:PORT][;PARAMS] with HOST an IPv4 address, [IPv6 address] or host name'
    if not isinstance(value, str):
        raise _bad(param, form, value)
    match = _URI.match(value)
    if not match:
        raise _bad(param, form, value)
    scheme, host, port, params = match.group('scheme', 'host', 'port', 'params')
    if scheme.lower() == 'sips':
        raise _bad(param, 'sips: is refused: TLS is not supported yet (the router speaks UDP)', value)
    if scheme != 'sip':
        raise _bad(param, form, value)
    if port is not None and ':' in port:
        raise _bad(param, 'an IPv6 address must be in brackets, sip:[ADDRESS]:PORT', value)
    if host.startswith('['):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _bad(param, 'not a valid IPv6 address in brackets', value) from None
    elif _DOTTED_NUMBERS.match(host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise _bad(param, 'not a valid IPv4 address', value) from None
    elif not host or not _is_host_name(host, _ANY_CASE_LABEL):
        raise _bad(param, form, value)
    if port is not None and not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise _bad(param, 'the port must be a number 1-65535', value)
    for item in params.split(';')[1:]:
        if not _PARAM.match(item):
            raise _bad(param, 'bad URI parameter %r' % item, value)
        name, _sep, transport = item.partition('=')
        if name.lower() == 'transport' and transport.lower() != 'udp':
            raise _bad(param, 'transport=%s is not supported: the router speaks UDP only' % transport, value)
    return value


def check_attrs(value, param):
    """Destination attributes (without weight) -> dict of str -> str."""
    if not isinstance(value, dict):
        raise _bad(param, 'must be a dict of name: value', value)
    out = {}
    for name, item in value.items():
        where = '%s.%s' % (param, name)
        if not isinstance(name, str) or not _ATTR_NAME.match(name):
            raise _bad(param, 'attribute names are lower-case letters, digits, "_", "." and "-"', name)
        if name == 'weight':
            raise _bad(param, 'must not contain weight; use the weight option', value)
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise _bad(where, 'must be a string or an integer', item)
        text = str(item)
        if ';' in text or text != text.strip() or not text.isprintable():
            raise _bad(where, 'must not contain ";", control characters or surrounding spaces', item)
        out[name] = text
    return out


def check_admin_state(value, param):
    if value not in ADMIN_STATES:
        raise _bad(param, 'must be one of %s' % ', '.join(ADMIN_STATES), value)
    return value


# The fields of each row type and their check; None values pass (optional / left alone).
_DOMAIN_CHECKS = (
    ('domain', check_domain),
    ('setid', check_int),
)
_DESTINATION_CHECKS = (
    ('setid', check_int),
    ('uri', check_uri),
    ('priority', check_int),
    ('weight', lambda value, param: check_int(value, param, MAX_WEIGHT)),
    ('attrs', check_attrs),
    ('admin_state', check_admin_state),
)


def _row(item, fields, checks, prefix):
    row = {name: item.get(name) for name in fields}
    for name, check in checks:
        if row[name] is not None:
            row[name] = check(row[name], prefix + name)
    for name in ('comment', 'description'):
        if row.get(name) is not None and not isinstance(row[name], str):
            raise _bad(prefix + name, 'must be a string', row[name])
    return row


def domain_row(item, prefix=''):
    """Validated logical domain row from module parameters (``prefix``: 'domains[3].')."""
    return _row(item, DOMAINS.fields, _DOMAIN_CHECKS, prefix)


def destination_row(item, prefix=''):
    """Validated logical destination row from module parameters."""
    return _row(item, DESTINATIONS.fields, _DESTINATION_CHECKS, prefix)


def keyed(rows, table, param):
    """{key: row} of validated rows, refusing two rows with one key."""
    out = {}
    first = {}
    for index, row in enumerate(rows):
        key = table.key(row)
        if key in out:
            raise ValidationError('%s[%d]: duplicate of %s[%d] (%s)' % (param, index, param, first[key], table.describe(key)))
        out[key] = row
        first[key] = index
    return out


# ---- attrs: Kamailio's "name=value;name=value" ---------------------------------

def parse_attrs(text):
    """(attrs without weight, weight) of a DB attrs string, read as the router
    reads it: names case-insensitive, spaces and a trailing ';' ignored.
    weight is an int when it is a number, else the text as found."""
    attrs = {}
    for item in (text or '').strip().rstrip(';').split(';'):
        name, _sep, value = item.partition('=')
        name = name.strip().lower()
        if name:
            attrs[name] = value.strip()
    weight = attrs.pop('weight', None)
    if weight is not None and weight.isascii() and weight.isdigit():
        weight = int(weight)
    return attrs, weight


def format_attrs(attrs, weight):
    """The canonical attrs string: names sorted, weight=N among them."""
    items = dict(attrs)
    if weight is not None:
        items['weight'] = str(weight)
    return ';'.join('%s=%s' % (name, items[name]) for name in sorted(items))


# ---- DB rows <-> logical rows ------------------------------------------------

def domain_from_db(row):
    """(domain, dispatcher_setid, enabled = 1, comment) -> logical row."""
    domain, setid, enabled, comment = row
    return {'domain': domain, 'setid': setid, 'enabled': bool(enabled), 'comment': comment}


def domain_to_db(row):
    """Logical row -> (dispatcher_setid, enabled, comment, domain)."""
    return row['setid'], int(row['enabled']), row['comment'], row['domain']


def destination_from_db(row):
    """(setid, destination, flags & 4, priority, attrs, description) -> logical row."""
    setid, uri, disabled, priority, attrs, description = row
    attrs, weight = parse_attrs(attrs)
    return {'setid': setid, 'uri': uri, 'priority': priority or 0, 'weight': weight, 'attrs': attrs,
            'admin_state': 'disabled' if disabled else 'active', 'description': description}


def destination_to_db(row):
    """Logical row -> (priority, attrs, disabled bit, description, setid, destination)."""
    return (row['priority'], format_attrs(row['attrs'], row['weight']),
            FLAG_DISABLED if row['admin_state'] == 'disabled' else 0, row['description'], row['setid'], row['uri'])


# ---- the planner -------------------------------------------------------------

class Table(namedtuple('Table', 'name param fields key_fields defaults')):
    """One routing table in logical terms: the option that lists its rows
    (``param``), its fields, the key and the values a new row starts with."""

    def key(self, row):
        return tuple(row[name] for name in self.key_fields)

    def describe(self, key):
        return ' '.join('%s=%s' % item for item in zip(self.key_fields, key))


DOMAINS = Table('sip_domains', 'domains', ('domain', 'setid', 'enabled', 'comment'), ('domain',),
                {'enabled': True, 'comment': None})
DESTINATIONS = Table('dispatcher', 'destinations',
                     ('setid', 'uri', 'priority', 'weight', 'attrs', 'admin_state', 'description'), ('setid', 'uri'),
                     {'priority': 0, 'weight': None, 'attrs': {}, 'admin_state': 'active', 'description': None})

Changes = namedtuple('Changes', 'added updated removed')
"""added: rows; updated: (before, after) pairs; removed: rows."""


def plan_table(table, current, desired, absent=(), purge=False):
    """The changes that make ``current`` ({key: row}) hold ``desired``.

    A ``desired`` row may leave fields out (``present_fields``): such a field
    keeps its current value, or takes ``table.defaults`` on a new row.
    ``absent`` keys are removed; with ``purge`` every current key not in
    ``desired`` is removed.
    """
    added, updated = [], []
    for key, want in desired.items():
        have = current.get(key)
        if have is None:
            missing = [name for name in table.fields if name not in want and name not in table.defaults]
            if missing:
                raise PlanError('%s: required to add %s (it does not exist yet)' % (', '.join(missing), table.describe(key)))
            added.append({name: want.get(name, table.defaults.get(name)) for name in table.fields})
        elif any(have[name] != value for name, value in want.items()):
            after = dict(have)
            after.update(want)
            updated.append((have, after))
    if purge:
        removed = [row for key, row in current.items() if key not in desired]
    else:
        removed = [current[key] for key in absent if key in current and key not in desired]
    return Changes(added, updated, removed)


def present_fields(row):
    """A single-row module's row without the options it was not given."""
    return {name: value for name, value in row.items() if value is not None}


def counts(changes):
    return {'added': len(changes.added), 'updated': len(changes.updated), 'removed': len(changes.removed)}


def changed(*all_changes):
    return any(any(change) for change in all_changes)


def diff_rows(changes):
    """(before, after) lists holding only the rows that change."""
    before = [pair[0] for pair in changes.updated] + changes.removed
    after = [pair[1] for pair in changes.updated] + changes.added
    return before, after


def after_rows(current, changes, table):
    """{key: row} once ``changes`` are applied to ``current``."""
    rows = dict(current)
    for row in changes.removed:
        del rows[table.key(row)]
    for _before, row in changes.updated:
        rows[table.key(row)] = row
    for row in changes.added:
        rows[table.key(row)] = row
    return rows


def purge_refusal(table, current_count, changes):
    """Why a purge must not run without force (it empties the table or removes
    more than half of its rows), or None."""
    removed = len(changes.removed)
    if not removed:
        return None
    if removed == current_count:
        return ('purge would remove all %d rows of %s (the input names none of them): refused without force: true, '
                'an empty or mis-scoped input must not wipe every route' % (removed, table.name))
    if removed * 2 > current_count:
        return ('purge would remove %d of the %d rows of %s (more than half): refused without force: true, '
                'an empty or mis-scoped input must not wipe every route' % (removed, current_count, table.name))
    return None


def orphan_domains(domains, destinations, watched):
    """Enabled domains among the ``watched`` keys whose set has no destination,
    as 'name (set N)' strings; ``domains`` and ``destinations`` are {key: row}
    after the change."""
    setids = {row['setid'] for row in destinations.values()}
    rows = (domains[key] for key in sorted(watched) if key in domains)
    return ['%s (set %s)' % (row['domain'], row['setid']) for row in rows if row['enabled'] and row['setid'] not in setids]
