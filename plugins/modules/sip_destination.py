#!/usr/bin/python
# Copyright: Contributors to the voip.sip_edge project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: sip_destination
short_description: Manage one dispatcher destination of a sipedge node's routing DB
version_added: 0.1.0
description:
  - Adds, updates or removes one row of the routing DB's C(dispatcher) table, identified by
    O(setid) and O(uri), that is a backend (an Asterisk node) that the router sends the calls of a set to.
  - An option left out leaves that part of an existing row as it is; on a new row it takes the
    documented default.
  - To make the whole table match a list (and remove what it does not name), use M(voip.sip_edge.sip_routing).
options:
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
      - Left out, an existing row keeps its priority; a new row has 0.
    type: int
  weight:
    description:
      - The destination's weight (0 to 100) for the weight-based algorithm, kept in C(attrs) as C(weight=N),
        as Kamailio does.
      - Left out, an existing row keeps its weight; a new row has none.
        The router treats V(0) like no weight; M(voip.sip_edge.sip_routing) removes a weight that its input leaves out.
    type: int
  attrs:
    description:
      - The other attributes, written into the C(attrs) column as Kamailio's C(name=value;name=value) string with
        the names sorted (C(weight) among them). An equivalent string already in the DB (another order,
        spaces, a trailing C(;)) counts as unchanged.
      - Given, they replace the row's attributes other than C(weight); left out, an existing row keeps them.
      - Names are lower-case letters, digits, C(_), C(.) and C(-); values strings or integers without C(;).
        Must not contain C(weight) (use O(weight)).
    type: dict
  admin_state:
    description:
      - V(disabled) sets the administrative "disabled" bit (4) of the row's C(flags), V(active) clears it.
        The other bits of C(flags) are left as they are (0 on a new row).
      - Left out, an existing row keeps its state; a new row is active.
    type: str
    choices: [active, disabled]
  description:
    description:
      - Free text stored in the row's C(description), for example the tenant's name.
      - Left out, an existing row keeps its description; a new row has none (NULL).
    type: str
  state:
    description:
      - V(present) adds or updates the row, V(absent) removes it (the options other than O(setid) and O(uri) are then ignored).
      - Removing the last destination of a set that domains route to is a warning, not an error.
    type: str
    choices: [present, absent]
    default: present
seealso:
  - module: voip.sip_edge.sip_routing
  - module: voip.sip_edge.sip_domain
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
- name: Send the calls of set 10 to an Asterisk node, weight 50
  voip.sip_edge.sip_destination:
    setid: 10
    uri: sip:10.0.1.10:5060
    weight: 50
    description: acme

- name: Take it out of rotation for maintenance (only the disabled bit of flags changes)
  voip.sip_edge.sip_destination:
    setid: 10
    uri: sip:10.0.1.10:5060
    admin_state: disabled

- name: A destination by host name with a Kamailio attribute
  voip.sip_edge.sip_destination:
    setid: 20
    uri: sip:pbx1.globex.example.com
    priority: 1
    attrs:
      duid: pbx1

- name: Remove it
  voip.sip_edge.sip_destination:
    setid: 20
    uri: sip:pbx1.globex.example.com
    state: absent
'''

RETURN = r'''
row:
  description:
    - The row after the change (in check mode, as it would be), null when the destination is absent.
  returned: success
  type: dict
  sample: {setid: 10, uri: "sip:10.0.1.10:5060", priority: 0, weight: 50, attrs: {}, admin_state: active, description: acme}
  contains:
    setid:
      description: The dispatcher set.
      type: int
      returned: success
    uri:
      description: The destination URI.
      type: str
      returned: success
    priority:
      description: The priority.
      type: int
      returned: success
    weight:
      description: The weight from C(attrs), null when there is none (a text when the DB holds one that is not a number).
      type: raw
      returned: success
    attrs:
      description: The other attributes from C(attrs), names in lower case.
      type: dict
      returned: success
    admin_state:
      description: V(disabled) when the disabled bit of C(flags) is set, else V(active).
      type: str
      returned: success
    description:
      description: The description, or null.
      type: str
      returned: success
'''

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.voip.sip_edge.plugins.module_utils import routing
from ansible_collections.voip.sip_edge.plugins.module_utils.routing_db import converge, routing_db_argument_spec, row_diff


def main():
    argument_spec = routing_db_argument_spec()
    argument_spec.update(
        setid=dict(type='int', required=True),
        uri=dict(type='str', required=True),
        priority=dict(type='int'),
        weight=dict(type='int'),
        attrs=dict(type='dict'),
        admin_state=dict(type='str', choices=list(routing.ADMIN_STATES)),
        description=dict(type='str'),
        state=dict(type='str', choices=['present', 'absent'], default='present'),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        row = routing.present_fields(routing.destination_row(module.params))
    except routing.ValidationError as exc:
        module.fail_json(msg=str(exc))
    key = routing.DESTINATIONS.key(row)
    if module.params['state'] == 'present':
        outcome = converge(module, destinations={key: row})
    else:
        outcome = converge(module, absent_destinations=[key])
    result = dict(changed=routing.changed(outcome.destinations), row=outcome.destinations_after.get(key))
    if module._diff:
        result['diff'] = row_diff(module.params['db'], outcome.destinations)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
