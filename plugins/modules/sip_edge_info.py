#!/usr/bin/python
# Copyright: Contributors to the voip.sip_edge project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r'''
---
module: sip_edge_info
short_description: Read a sipedge node's routing DB and the live state of its destinations
version_added: 0.1.0
description:
  - Returns the rows of the routing DB's C(sip_domains) and C(dispatcher) tables, in the terms of
    M(voip.sip_edge.sip_domain) and M(voip.sip_edge.sip_destination).
  - When the router's control socket answers, adds each destination's live state as the router
    sees it (what C(sipedge ctl --json dispatcher list) shows), such as active, trying, inactive
    or disabled, whether it is being probed, and its last keep-alive.
  - Works when the router is not running; RV(router) then says so.
  - Reads only; never reports a change.
options:
  control_socket:
    description:
      - The router's control socket (C([control] socket) of C(sipedge.toml)).
    type: path
    default: /run/sipedge/sipedge.sock
seealso:
  - module: voip.sip_edge.sip_routing
notes:
  - The router gets 10 seconds to answer.
attributes:
  check_mode:
    support: full
  diff_mode:
    support: N/A
    details: Reads only.
  platform:
    platforms: posix
author:
  - voip.sip_edge maintainers (@voip)
extends_documentation_fragment:
  - voip.sip_edge.routing_db
  - ansible.builtin.action_common_attributes
'''

EXAMPLES = r'''
- name: Read the routing table and the live state
  voip.sip_edge.sip_edge_info:
  register: edge

- name: Fail when a destination the router has loaded is not active
  ansible.builtin.assert:
    that: item.live.status == 'active'
    fail_msg: "{{ item.uri }} (set {{ item.setid }}) is {{ item.live.status }}, last keep-alive answer {{ item.live.last_code }}"
  loop: "{{ edge.destinations | selectattr('live') | list }}"
  loop_control:
    label: "{{ item.uri }}"
'''

RETURN = r'''
domains:
  description: The rows of C(sip_domains), by domain.
  returned: success
  type: list
  elements: dict
  sample: [{domain: acme.example.com, setid: 10, enabled: true, comment: acme}]
  contains:
    domain:
      description: The domain.
      type: str
      returned: success
    setid:
      description: The dispatcher set that routes it.
      type: int
      returned: success
    enabled:
      description: Whether the router routes it.
      type: bool
      returned: success
    comment:
      description: The comment, or null.
      type: str
      returned: success
destinations:
  description: The rows of C(dispatcher), by set, in the order the router loads them.
  returned: success
  type: list
  elements: dict
  sample:
    - setid: 10
      uri: "sip:10.0.1.10:5060"
      priority: 0
      weight: 50
      attrs: {}
      admin_state: active
      description: acme
      live: {algorithm: 4, index: 0, uri: "sip:10.0.1.10:5060", state: AP, status: active, probing: true, pinned: false,
             flags: 8, priority: 0, attrs: weight=50, weight: 50, probing_count: 0, last_ping: 1795989615.051,
             last_code: 200, rtt: 0.000412, calls: 12, failures: 0}
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
      description: The weight from C(attrs), null when there is none.
      type: raw
      returned: success
    attrs:
      description: The other attributes from C(attrs).
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
    live:
      description:
        - The destination as the running router has it loaded, null when the router did not answer
          or has not loaded this row (yet).
        - Every field the router reports for it (C(sipedge ctl --json dispatcher list), docs/CONTRACT.md),
          and the set's RV(destinations[].live.algorithm); the main ones are below.
      type: dict
      returned: success
      contains:
        algorithm:
          description: The set's dispatcher algorithm.
          type: int
          returned: when the router answered
        state:
          description: Kamailio's two-letter state, C(AX), C(AP), C(TP), C(IP), C(DX)...
          type: str
          returned: when the router answered
        status:
          description: The state in words.
          type: str
          choices: [active, trying, inactive, disabled]
          returned: when the router answered
        probing:
          description: Whether the router is probing the destination.
          type: bool
          returned: when the router answered
        last_ping:
          description: When the last keep-alive was answered or timed out (epoch seconds), null before the first.
          type: float
          returned: when the router answered
router:
  description: Whether the router's control socket answered.
  returned: success
  type: dict
  contains:
    answered:
      description: Whether the router answered.
      type: bool
      returned: success
    socket:
      description: The control socket asked.
      type: str
      returned: success
    msg:
      description: One sentence saying what happened.
      type: str
      returned: success
      sample: no control socket at /run/sipedge/sipedge.sock (is sipedge running?)
'''

import json
import os
import socket
import sqlite3

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.voip.sip_edge.plugins.module_utils import routing
from ansible_collections.voip.sip_edge.plugins.module_utils.routing_db import RoutingDBError, connect, read_rows, routing_db_argument_spec

SOCKET_TIMEOUT = 10.0


def ask(path):
    """The router's answer to `dispatcher list`: one line in, one JSON document out (docs/CONTRACT.md)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect(path)
        sock.sendall(b'dispatcher list\n')
        with sock.makefile('rb') as answer:
            sets = json.loads(answer.read())
    if isinstance(sets, dict):
        raise ValueError(sets.get('error', sets))
    return sets


def live_states(path):
    """{(setid, uri): the router's entry} and what the router's socket did."""
    router = {'answered': False, 'socket': path}
    if not os.path.exists(path):
        router['msg'] = 'no control socket at %s (is sipedge running?)' % path
        return {}, router
    try:
        live = {(dset['setid'], dest['uri']): dict(dest, algorithm=dset['algorithm'])
                for dset in ask(path) for dest in dset['destinations']}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        router['msg'] = 'the router did not answer at %s: %s' % (path, exc)
        return {}, router
    router.update(answered=True, msg='the router answered at %s' % path)
    return live, router


def main():
    argument_spec = routing_db_argument_spec()
    argument_spec.update(control_socket=dict(type='path', default='/run/sipedge/sipedge.sock'))
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    try:
        conn = connect(module.params['db'], read_only=True)
    except RoutingDBError as exc:
        module.fail_json(msg=str(exc))
    try:
        conn.execute('BEGIN')  # both tables from one snapshot
        domains = read_rows(conn, routing.DOMAINS)
        destinations = read_rows(conn, routing.DESTINATIONS)
    except sqlite3.Error as exc:
        module.fail_json(msg='%s: %s' % (module.params['db'], exc))
    finally:
        conn.close()
    live, router = live_states(module.params['control_socket'])
    module.exit_json(
        changed=False,
        domains=list(domains.values()),
        destinations=[dict(row, live=live.get(key)) for key, row in destinations.items()],
        router=router,
    )


if __name__ == '__main__':
    main()
