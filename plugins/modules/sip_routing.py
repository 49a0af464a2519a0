#!/usr/bin/python
# Copyright: Contributors to the voip.sip_edge project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: sip_routing
short_description: Make the whole routing table of a sipedge node match the input
version_added: 0.1.0
description:
  - Makes the router's routing DB hold the given domains (rows of C(sip_domains)) and
    destinations (rows of C(dispatcher)), in one C(BEGIN IMMEDIATE) transaction,
    so the router never sees half of a change.
  - A row the input names is added or updated; with O(purge=true), a row the input does not name is removed.
  - Every item is validated before anything is written; an error names the list, the index and the field,
    for example C(destinations[3].uri).
  - Fields of an item take their documented defaults when left out; an item describes its whole row.
  - For one row at a time, see M(voip.sip_edge.sip_domain) and M(voip.sip_edge.sip_destination).
options:
  domains:
    description:
      - The domains, one per row of C(sip_domains). A request whose Request-URI host is O(domains[].domain)
        goes to a destination of set O(domains[].setid).
    type: list
    elements: dict
    default: []
    suboptions:
      domain:
        description:
          - The host name, as the router matches it, exactly, against the Request-URI host.
          - Upper case is refused (the router compares exactly; write the name in lower case).
            A Unicode name is stored as its IDNA A-label (C(xn--...)), the form a SIP request carries;
            the conversion is Python's IDNA 2003, so pass the A-label yourself for names
            whose IDNA 2003 and 2008 forms differ (those with C(ß), C(ς) or joiners).
          - An IPv4 address is accepted too.
        type: str
        required: true
      setid:
        description:
          - The dispatcher set that routes the domain (C(sip_domains.dispatcher_setid)), 0 to 2147483647.
          - A domain whose set has no destination after the change is a warning, not an error.
        type: int
        required: true
      enabled:
        description:
          - Whether the router routes the domain (C(enabled) 1 or 0).
        type: bool
        default: true
      comment:
        description:
          - Free text stored with the row, for example the tenant's name. Left out, the column is NULL.
        type: str
  destinations:
    description:
      - The destinations, one per row of C(dispatcher), identified by O(destinations[].setid) and O(destinations[].uri).
    type: list
    elements: dict
    default: []
    suboptions:
      setid:
        description:
          - The dispatcher set, 0 to 2147483647.
        type: int
        required: true
      uri:
        description:
          - The destination, C(sip:HOST[:PORT][;PARAMS]), HOST an IPv4 address, an IPv6 address in brackets
            or a host name, PORT 1 to 65535. It is compared and stored as the exact string, as Kamailio does.
          - C(sips:) is refused (TLS is not supported yet), and so is a C(transport) parameter other than C(udp).
        type: str
        required: true
      priority:
        description:
          - The row's C(priority), 0 to 2147483647.
        type: int
        default: 0
      weight:
        description:
          - The destination's weight (0 to 100) for the weight-based algorithm, kept in C(attrs) as C(weight=N),
            as Kamailio does. Left out, C(attrs) has no weight.
        type: int
      attrs:
        description:
          - Other attributes, written into the C(attrs) column as Kamailio's C(name=value;name=value) string with
            the names sorted (C(weight) among them). An equivalent string already in the DB (another order,
            spaces, a trailing C(;)) counts as unchanged.
          - Names are lower-case letters, digits, C(_), C(.) and C(-); values strings or integers without C(;).
            Must not contain C(weight) (use O(destinations[].weight)).
        type: dict
        default: {}
      admin_state:
        description:
          - C(disabled) sets the administrative "disabled" bit (4) of the row's C(flags), C(active) clears it.
            The other bits of C(flags) are left as they are (0 on a new row).
        type: str
        choices: [active, disabled]
        default: active
      description:
        description:
          - Free text stored in the row's C(description), for example the tenant's name. Left out, the column is NULL.
        type: str
  purge:
    description:
      - Remove the rows of both tables that the input does not name.
      - A purge that removes rows first writes a backup of the DB next to it (SQLite online backup,
        same owner and mode), returned as RV(backup_file).
    type: bool
    default: false
  force:
    description:
      - Allow a purge that would empty a table or remove more than half of its rows.
        Without it such a purge fails and changes nothing, so that an empty or mis-scoped input
        cannot wipe every route.
    type: bool
    default: false
seealso:
  - module: voip.sip_edge.sip_domain
  - module: voip.sip_edge.sip_destination
  - module: voip.sip_edge.sip_edge_info
notes:
  - Check mode opens the DB read-only and reports exactly the counts and the diff a real run would.
  - The diff shows before and after of only the rows that change.
  - Measured on a 2-core machine, 10,000 domains and 20,000 destinations take about 1 second of module time,
    whether they are all new, all unchanged or one of them changes.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
author:
  - voip.sip_edge maintainers (@voip)
extends_documentation_fragment:
  - voip.sip_edge.routing_db
  - ansible.builtin.action_common_attributes
'''

EXAMPLES = r'''
- name: Route two tenants' domains to their Asterisk sets, removing every other row
  voip.sip_edge.sip_routing:
    domains:
      - {domain: acme.example.com, setid: 10, comment: acme}
      - {domain: globex.example.com, setid: 20, comment: globex}
    destinations:
      - {setid: 10, uri: "sip:10.0.1.10:5060", weight: 50, description: acme}
      - {setid: 10, uri: "sip:10.0.1.11:5060", weight: 50, description: acme}
      - {setid: 20, uri: "sip:[2001:db8::20]", priority: 1, description: globex}
      - {setid: 20, uri: "sip:pbx.globex.example.com;transport=udp", admin_state: disabled, description: "globex: spare"}
    purge: true
  register: routing

- name: Say where the backup of the purged rows is
  ansible.builtin.debug:
    msg: "Backup before the purge: {{ routing.backup_file }}"
  when: routing.backup_file is defined

- name: Routing from the tenants in the inventory (the tenants role does this)
  voip.sip_edge.sip_routing: "{{ sip_edge_tenants | voip.sip_edge.tenant_routing }}"
'''

RETURN = r'''
domains:
  description: How many rows of C(sip_domains) were (in check mode, would be) added, updated and removed.
  returned: success
  type: dict
  sample: {added: 2, updated: 0, removed: 1}
  contains:
    added:
      description: Rows added.
      type: int
      returned: success
    updated:
      description: Rows whose values changed.
      type: int
      returned: success
    removed:
      description: Rows removed (only with O(purge=true)).
      type: int
      returned: success
destinations:
  description: How many rows of C(dispatcher) were (in check mode, would be) added, updated and removed.
  returned: success
  type: dict
  sample: {added: 4, updated: 1, removed: 0}
  contains:
    added:
      description: Rows added.
      type: int
      returned: success
    updated:
      description: Rows whose values changed.
      type: int
      returned: success
    removed:
      description: Rows removed (only with O(purge=true)).
      type: int
      returned: success
backup_file:
  description: The backup of the DB written before a purge removed rows.
  returned: when a purge removed rows (not in check mode)
  type: str
  sample: /var/lib/sipedge/routing.db.4242.2026-11-29@21:27:58~
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.voip.sip_edge.plugins.module_utils import routing
from ansible_collections.voip.sip_edge.plugins.module_utils.routing_db import converge, routing_db_argument_spec, table_diff


def argument_spec():
    spec = routing_db_argument_spec()
    spec.update(
        domains=dict(type='list', elements='dict', default=[], options=dict(
            domain=dict(type='str', required=True),
            setid=dict(type='int', required=True),
            enabled=dict(type='bool', default=True),
            comment=dict(type='str'),
        )),
        destinations=dict(type='list', elements='dict', default=[], options=dict(
            setid=dict(type='int', required=True),
            uri=dict(type='str', required=True),
            priority=dict(type='int', default=0),
            weight=dict(type='int'),
            attrs=dict(type='dict', default={}),
            admin_state=dict(type='str', choices=list(routing.ADMIN_STATES), default='active'),
            description=dict(type='str'),
        )),
        purge=dict(type='bool', default=False),
        force=dict(type='bool', default=False),
    )
    return spec


def desired(module, table, make_row):
    """{key: row} of the validated items of one list option."""
    param = table.param
    rows = [make_row(item, '%s[%d].' % (param, index)) for index, item in enumerate(module.params[param])]
    return routing.keyed(rows, table, param)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    try:
        domains = desired(module, routing.DOMAINS, routing.domain_row)
        destinations = desired(module, routing.DESTINATIONS, routing.destination_row)
    except routing.ValidationError as exc:
        module.fail_json(msg=str(exc))
    outcome = converge(module, domains, destinations, purge=module.params['purge'], force=module.params['force'])
    result = dict(
        changed=routing.changed(outcome.domains, outcome.destinations),
        domains=routing.counts(outcome.domains),
        destinations=routing.counts(outcome.destinations),
    )
    if outcome.backup_file:
        result['backup_file'] = outcome.backup_file
    if module._diff:
        result['diff'] = table_diff(module.params['db'], outcome)
    # Echoing every item back cost more than the work itself (measured, 30,000
    # items: 0.5 s of the module's no_log scrub and 2 s on the controller):
    # -vvv shows how many items there were instead.
    result['invocation'] = {'module_args': dict(module.params, **{
        param: '(%d items)' % len(module.params[param]) for param in ('domains', 'destinations')})}
    module.exit_json(**result)


if __name__ == '__main__':
    main()
