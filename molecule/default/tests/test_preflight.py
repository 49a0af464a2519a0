"""Controller-side checks of the router role's preflight (no container needed): the role's
tasks_from: preflight runs on localhost with the node's facts given as task vars, and
says exactly what is wrong with a node it does not support."""

import os
import subprocess
import sys

import pytest
import yaml

DEBIAN_12 = {"distribution": "Debian", "distribution_major_version": "12", "distribution_version": "12.8",
             "service_mgr": "systemd", "python_version": "3.11.2",
             "python": {"executable": "/usr/bin/python3", "version": {"major": 3, "minor": 11, "micro": 2}}}


def preflight(tmp_path, **facts):
    """Run the preflight with DEBIAN_12's facts changed as given; (exit code, output)."""
    node = dict(DEBIAN_12, **facts)
    play = [{"name": "Preflight", "hosts": "localhost", "gather_facts": False, "tasks": [{
        "name": "Run the router role's preflight",
        "ansible.builtin.include_role": {"name": "voip.sip_edge.router", "tasks_from": "preflight"},
        "vars": {"ansible_facts": node}}]}]
    playbook = tmp_path / "preflight.yml"
    playbook.write_text(yaml.safe_dump(play), encoding="utf-8")
    result = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", "localhost,",
                             "-c", "local", str(playbook)], capture_output=True, text=True, timeout=120, check=False)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("facts", [{}, {"distribution_major_version": "13", "distribution_version": "13.2"},
                                   {"python_version": "3.13.0", "python": {"executable": "/usr/bin/python3",
                                                                           "version": {"major": 3, "minor": 13}}}])
def test_debian_12_or_newer_with_python_3_11_or_newer_passes(tmp_path, facts):
    rc, output = preflight(tmp_path, **facts)
    assert rc == 0, output


@pytest.mark.parametrize("facts, message", [
    ({"distribution": "Ubuntu", "distribution_major_version": "24", "distribution_version": "24.04"},
     "voip.sip_edge.router needs Debian 12 or newer; localhost runs Ubuntu 24.04 (major version 24)."),
    ({"distribution_major_version": "11", "distribution_version": "11.11"},
     "voip.sip_edge.router needs Debian 12 or newer; localhost runs Debian 11.11 (major version 11)."),
    ({"distribution_major_version": "n/a", "distribution_version": "n/a"},
     "voip.sip_edge.router needs Debian 12 or newer; localhost runs Debian n/a (major version n/a)."),
    ({"service_mgr": "sysvinit"},
     "voip.sip_edge.router runs sipedge as a systemd service; localhost's service manager is sysvinit."),
    ({"python_version": "3.9.2", "python": {"executable": "/usr/bin/python3", "version": {"major": 3, "minor": 9}}},
     "voip.sip_edge.router needs Python 3.11 or newer on the node; on localhost, /usr/bin/python3 is Python 3.9.2."),
])
def test_an_unsupported_node_is_named_and_described(tmp_path, facts, message):
    rc, output = preflight(tmp_path, **facts)
    assert rc != 0
    assert message in output, output
