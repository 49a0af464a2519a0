#!/usr/bin/python
# Copyright: Contributors to the voip.sip_edge project
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Test helper, not part of the collection: create a routing DB on the node
the way the router role's `sipedge db init` does, with the schema module the
collection's module_utils ship. The collection's modules never create one."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.voip.sip_edge.plugins.module_utils.sipedge_schema import SchemaError, ensure_schema


def main():
    module = AnsibleModule(argument_spec={'path': {'type': 'path', 'required': True}})
    try:
        outcome = ensure_schema(module.params['path'])
    except SchemaError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=outcome != 'up to date', outcome=outcome)


if __name__ == '__main__':
    main()
