"""Controller-side checks of the router role's interface (no container needed).

defaults/main.yml, meta/argument_specs.yml and README.md (role section) list the same
variables, all named sip_edge_router_*, with the same defaults. (ansible-lint's
var-naming[no-role-prefix] would want router_*, from the folder name; the collection
prefixes role variables with sip_edge_<role>_, which this test enforces instead.)
"""

import os
import re

import yaml

from conftest import collection_root

ROLE = os.path.join(collection_root(), "roles", "router")


def _load(*parts):
    with open(os.path.join(ROLE, *parts), encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def test_defaults_and_argument_specs_agree():
    defaults = _load("defaults", "main.yml")
    options = _load("meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert list(defaults) == list(options)
    for name, spec in options.items():
        assert spec.get("type"), name
        assert spec.get("description"), name
        assert spec.get("default") == defaults[name], name


def test_variables_are_prefixed():
    names = list(_load("defaults", "main.yml")) + list(_load("vars", "main.yml"))
    bad = [n for n in names if not n.lstrip("_").startswith("sip_edge_router_")]
    assert not bad


def test_readme_section_lists_every_variable():
    with open(os.path.join(collection_root(), "README.md"), encoding="utf-8") as handle:
        documented = set(re.findall(r"^\| `(sip_edge_router_\w+)` \|", handle.read(), re.M))
    assert documented == set(_load("defaults", "main.yml"))


def test_template_uses_every_config_variable():
    with open(os.path.join(ROLE, "templates", "sipedge.toml.j2"), encoding="utf-8") as handle:
        template = handle.read()
    pattern = r"sip_edge_router_(sip|timers|dispatcher|database|log|control|admin)_(\w+)"
    # every variable of a config section is a setting, but the admin endpoint's users (a file of their own)
    config_vars = [n for n in _load("defaults", "main.yml") if re.match(pattern, n) and n != "sip_edge_router_admin_users"]
    assert config_vars
    for name in config_vars:
        _section, key = re.match(pattern, name).groups()
        assert re.search(r"^%s = .*\b%s\b" % (key, name), template, re.M), name
