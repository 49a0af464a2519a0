"""Tests of the module test harness (utils.py) against a real AnsibleModule."""

from __future__ import annotations

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.voip.sip_edge.tests.unit.plugins.modules.utils import run_module


def echo_main():
    """A minimal module: echoes its arguments, changed unless in check mode."""
    module = AnsibleModule(
        argument_spec={'name': {'type': 'str', 'required': True}, 'count': {'type': 'int', 'default': 1}},
        supports_check_mode=True,
    )
    module.exit_json(changed=not module.check_mode, name=module.params['name'], count=module.params['count'])


def test_arguments_are_converted_and_returned():
    result = run_module(echo_main, {'name': 'edge', 'count': '3'})
    assert result == {'changed': True, 'name': 'edge', 'count': 3}


def test_check_mode_is_passed_through():
    result = run_module(echo_main, {'name': 'edge', '_ansible_check_mode': True})
    assert result['changed'] is False


def test_bad_input_fails_with_a_message():
    result = run_module(echo_main, {'count': 'many'})
    assert result['failed'] is True
    assert 'name' in result['msg']


def warn_main():
    """A module that warns."""
    module = AnsibleModule(argument_spec={}, supports_check_mode=True)
    module.warn('careful')
    module.exit_json(changed=False)


def test_warnings_are_returned():
    assert run_module(warn_main, {})['warnings'] == ['careful']
