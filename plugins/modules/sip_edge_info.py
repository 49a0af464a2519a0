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
  - When the router's control socket answers, adds each destination's live state as the router sees it
    (active, trying, inactive or disabled; whether it is being probed; any other field the router reports).
    With worker processes, each process answers on its own socket and each destination gets one entry per process.
  - Works when the router is not running; RV(router) then says that no socket answered.
  - Reads only; never reports a change.
options:
  control_socket:
    description:
      - The router's control socket (C([control] socket) of C(sipedge.toml)).
      - When this path does not exist, every C(<control_socket>.*) is asked (one per worker process).
    type: path
    default: /run/sipedge/sipedge.sock
seealso:
  - module: voip.sip_edge.sip_routing
notes:
  - Each socket gets 5 seconds to answer.
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

- name: Fail when a destination is not active in every router process
  ansible.builtin.assert:
    that: item.live | rejectattr('status', 'eq', 'active') | list | length == 0
    fail_msg: "{{ item.uri }} (set {{ item.setid }}) is not active: {{ item.live | map(attribute='state') | list }}"
  loop: "{{ edge.destinations }}"
  loop_control:
    label: "{{ item.uri }}"
  when: edge.router.answered
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
      live:
        - {socket: /run/sipedge/sipedge.sock, algorithm: 4, index: 0, uri: "sip:10.0.1.10:5060", state: AP,
           status: active, probing: true, flags: 8, priority: 0, attrs: weight=50, weight: 50, probing_count: 0}
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
        - The destination as each answering router process has it loaded, empty when no process answered
          or none has this destination loaded (yet).
        - Holds every field the router reports (C(index), C(uri), C(state), C(flags), C(priority), C(attrs),
          C(weight), C(probing_count) today, and any it adds later), plus RV(destinations[].live[].socket),
          RV(destinations[].live[].algorithm), RV(destinations[].live[].status) and RV(destinations[].live[].probing).
      type: list
      elements: dict
      returned: success
      contains:
        socket:
          description: The control socket of the process that answered.
          type: str
          returned: success
        algorithm:
          description: The set's dispatcher algorithm in that process.
          type: int
          returned: success
        state:
          description: Kamailio's two-letter state, C(AX), C(AP), C(TP), C(IP), C(DX)...
          type: str
          returned: success
        status:
          description: The first letter in words.
          type: str
          choices: [active, trying, inactive, disabled]
          returned: success
        probing:
          description: Whether the router is probing the destination (second letter C(P)).
          type: bool
          returned: success
router:
  description: What the router's control sockets answered.
  returned: success
  type: dict
  contains:
    answered:
      description: Whether at least one router process answered.
      type: bool
      returned: success
    sockets:
      description: The sockets that answered.
      type: list
      elements: str
      returned: success
    errors:
      description: The sockets that exist but did not answer, each with the reason.
      type: list
      elements: str
      returned: success
    msg:
      description: One sentence saying what was found.
      type: str
      returned: success
      sample: no control socket at /run/sipedge/sipedge.sock (is sipedge running?)
'''

import glob
import json
import os
import socket
import sqlite3

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.voip.sip_edge.plugins.module_utils import routing
from ansible_collections.voip.sip_edge.plugins.module_utils.routing_db import RoutingDBError, connect, read_rows, routing_db_argument_spec

SOCKET_TIMEOUT = 5.0
STATUS = {'A': 'active', 'T': 'trying', 'I': 'inactive', 'D': 'disabled'}


def control_sockets(path):
    """The path itself, else one socket per worker process (<path>.<pid>), as `sipedge ctl` does."""
    if os.path.exists(path):
        return [path]
    return sorted(glob.glob(glob.escape(path) + '.*'))


def ask(path):
    """The router's `dispatcher` answer: a list of sets, each with its destinations."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(SOCKET_TIMEOUT)
        sock.connect(path)
        sock.sendall(b'dispatcher\n')
        with sock.makefile('rb') as answer:
            return json.loads(answer.read())


def live_states(path):
    """{(setid, uri): [live entry]} from every router process, and the router summary."""
    live = {}
    router = dict(answered=False, sockets=[], errors=[])
    for one in control_sockets(path):
        try:
            sets = ask(one)
            for dset in sets:
                for dest in dset['destinations']:
                    state = dest.get('state', '')
                    entry = dict(dest, socket=one, algorithm=dset.get('algorithm'),
                                 status=STATUS.get(state[:1], 'unknown'), probing=state[1:2] == 'P')
                    live.setdefault((dset['setid'], dest['uri']), []).append(entry)
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            router['errors'].append('%s: %s' % (one, exc))
            continue
        router['sockets'].append(one)
    router['answered'] = bool(router['sockets'])
    if router['answered']:
        router['msg'] = '%d router process(es) answered' % len(router['sockets'])
    elif router['errors']:
        router['msg'] = 'no router process answered at %s' % path
    else:
        router['msg'] = 'no control socket at %s (is sipedge running?)' % path
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
        destinations=[dict(row, live=live.get(key, [])) for key, row in destinations.items()],
        router=router,
    )


if __name__ == '__main__':
    main()
