#!/usr/bin/python
# Copyright: Contributors to the voip.sip_edge project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: sip_domain
short_description: Manage one domain of a sipedge node's routing DB
version_added: 0.1.0
description:
  - Adds, updates or removes one row of the routing DB's C(sip_domains) table, that is a domain that the router
    matches against the Request-URI host, and the dispatcher set that routes its calls.
  - An option left out leaves that column of an existing row as it is; on a new row it takes the
    documented default.
  - To make the whole table match a list (and remove what it does not name), use M(voip.sip_edge.sip_routing).
options:
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
      - Required to add a domain; left out, an existing row keeps its set.
      - A domain whose set has no destination is a warning, not an error.
    type: int
  enabled:
    description:
      - Whether the router routes the domain (C(enabled) 1 or 0).
      - Left out, an existing row keeps its value; a new row is enabled.
    type: bool
  comment:
    description:
      - Free text stored with the row, for example the tenant's name.
      - Left out, an existing row keeps its comment; a new row has none (NULL).
    type: str
  state:
    description:
      - V(present) adds or updates the row, V(absent) removes it (the other options are then ignored).
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: voip.sip_edge.sip_routing
  - module: voip.sip_edge.sip_destination
  - module: voip.sip_edge.sip_edge_info
notes:
  - Check mode opens the DB read-only and reports exactly what a real run would change.
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
- name: Route acme.example.com to dispatcher set 10
  voip.sip_edge.sip_domain:
    domain: acme.example.com
    setid: 10
    comment: acme

- name: Stop routing it, keeping the row
  voip.sip_edge.sip_domain:
    domain: acme.example.com
    enabled: false

- name: A Unicode domain is stored as its A-label (xn--bcher-kva.example)
  voip.sip_edge.sip_domain:
    domain: bücher.example
    setid: 11

- name: Remove it, on a DB somewhere else than the default
  voip.sip_edge.sip_domain:
    domain: acme.example.com
    state: absent
    db: /srv/sipedge/routing.db
'''

RETURN = r'''
row:
  description:
    - The row after the change (in check mode, as it would be), null when the domain is absent.
  returned: success
  type: dict
  sample: {domain: acme.example.com, setid: 10, enabled: true, comment: acme}
  contains:
    domain:
      description: The domain as stored (a Unicode name as its A-label).
      type: str
      returned: success
    setid:
      description: The dispatcher set.
      type: int
      returned: success
    enabled:
      description: Whether the router routes the domain.
      type: bool
      returned: success
    comment:
      description: The comment, or null.
      type: str
      returned: success
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.voip.sip_edge.plugins.module_utils import routing
from ansible_collections.voip.sip_edge.plugins.module_utils.routing_db import converge, routing_db_argument_spec, row_diff


def main():
    argument_spec = routing_db_argument_spec()
    argument_spec.update(
        domain=dict(type='str', required=True),
        setid=dict(type='int'),
        enabled=dict(type='bool'),
        comment=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        row = routing.present_fields(routing.domain_row(module.params))
    except routing.ValidationError as exc:
        module.fail_json(msg=str(exc))
    key = routing.DOMAINS.key(row)
    if module.params['state'] == 'present':
        outcome = converge(module, domains={key: row})
    else:
        outcome = converge(module, absent_domains=[key])
    result = dict(changed=routing.changed(outcome.domains), row=outcome.domains_after.get(key))
    if module._diff:
        result['diff'] = row_diff(module.params['db'], outcome.domains)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
