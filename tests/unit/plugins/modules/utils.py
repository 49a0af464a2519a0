"""Harness for unit tests of this collection's modules.

``run_module(main, args)`` runs a module's ``main()`` in-process with the given
module arguments and returns the result dict it would have printed; a result of
``fail_json`` carries ``failed: True``, warnings are under ``warnings``. Module arguments are passed the way
ansible-core >= 2.19 expects (``ansible.module_utils.testing.patch_module_args``).
"""

from __future__ import annotations

import contextlib
import json
import typing as t
from unittest.mock import patch

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class AnsibleExitJson(Exception):
    """Raised in place of AnsibleModule.exit_json; args[0] is the result."""


class AnsibleFailJson(Exception):
    """Raised in place of AnsibleModule.fail_json; args[0] is the result."""


def exit_json(self, **kwargs):  # pylint: disable=unused-argument
    """Stand-in for AnsibleModule.exit_json."""
    kwargs.setdefault('changed', False)
    raise AnsibleExitJson(kwargs)


def fail_json(self, msg, **kwargs):  # pylint: disable=unused-argument
    """Stand-in for AnsibleModule.fail_json."""
    kwargs.update(failed=True, msg=msg)
    raise AnsibleFailJson(kwargs)


@contextlib.contextmanager
def set_module_args(args: dict[str, t.Any]) -> t.Iterator[None]:
    """Make ``args`` the module arguments of AnsibleModule objects made inside."""
    args = dict(args)
    args.setdefault('_ansible_remote_tmp', '/tmp')
    args.setdefault('_ansible_keep_remote_files', False)
    try:
        from ansible.module_utils.testing import patch_module_args  # ansible-core >= 2.19
    except ImportError:
        with patch.object(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args}))):
            yield
        return
    with patch_module_args(args):
        yield


def run_module(main: t.Callable[[], None], args: dict[str, t.Any]) -> dict[str, t.Any]:
    """Run a module's main() with ``args``; return its result dict, with the
    messages of ``module.warn()`` under ``warnings`` when there are any."""
    warnings: list[str] = []

    def warn(self, warning, **kwargs):  # pylint: disable=unused-argument
        warnings.append(warning)

    with set_module_args(args), patch.multiple(basic.AnsibleModule, exit_json=exit_json, fail_json=fail_json, warn=warn):
        try:
            main()
        except (AnsibleExitJson, AnsibleFailJson) as ex:
            result = ex.args[0]
            if warnings:
                result['warnings'] = warnings
            return result
    raise AssertionError('the module returned without calling exit_json or fail_json')
