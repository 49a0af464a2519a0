"""Controller-side checks of the tenants role's interface (no container needed).

defaults/main.yml, meta/argument_specs.yml and the role's README.md list the same
variables, all named sip_edge_tenants*, with the same defaults; and the role's argument
spec describes a tenant exactly as the tenant_routing filter's documentation does.
"""

import os
import re

import yaml

from conftest import ROLE, collection_root


def _load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


DEFAULTS = _load(os.path.join(ROLE, "defaults", "main.yml"))
OPTIONS = _load(os.path.join(ROLE, "meta", "argument_specs.yml"))["argument_specs"]["main"]["options"]


def test_defaults_and_argument_specs_agree():
    assert list(DEFAULTS) == list(OPTIONS)
    for name, spec in OPTIONS.items():
        assert spec.get("type") and spec.get("description"), name
        assert spec.get("default") == DEFAULTS[name], name


def test_variables_are_prefixed():
    assert all(re.match(r"sip_edge_tenants(_|$)", name) for name in DEFAULTS)


def test_readme_lists_every_variable():
    with open(os.path.join(ROLE, "README.md"), encoding="utf-8") as handle:
        documented = re.findall(r"^\| `(sip_edge_tenants\w*)` \|", handle.read(), re.M)
    assert documented == list(DEFAULTS)


def _fields(options):
    """name -> (type, elements, required, default, choices, nested fields) of a spec's options."""
    return {name: (spec["type"], spec.get("elements"), spec.get("required", False), spec.get("default"),
                   spec.get("choices"), _fields(spec.get("options") or spec.get("suboptions") or {}))
            for name, spec in options.items()}


def test_a_tenant_is_what_the_filter_documents():
    filter_doc = _load(os.path.join(collection_root(), "plugins", "filter", "tenant_routing.yml"))
    tenant = filter_doc["DOCUMENTATION"]["options"]["_input"]["suboptions"]
    assert _fields(OPTIONS["sip_edge_tenants"]["options"]) == _fields(tenant)
