"""Differential test: every case against Kamailio (the seed) and sipedge.

A case passes when both routers show the same observable outcome, or when the case is
in allowlist.toml (a deliberate difference, with its reason) and the difference stays in
the fields the entry names.  An allowlisted case whose outcomes became equal fails too,
so the list stays true.
"""
from __future__ import annotations

import pytest

from conf_cases import CASES
from conf_compare import compare, load_allowlist

ALLOW = load_allowlist()
STAGES = {"C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "TX"}


@pytest.mark.parametrize("name", list(CASES))
def test_case(outcomes, name):
    ref, sub = outcomes
    verdict, detail = compare(name, ref[name], sub[name], ALLOW)
    assert verdict in ("same", "allowed"), f"{name}: {verdict}\n{detail}"


def test_catalogue_covers_every_stage():
    assert len(CASES) >= 60
    assert {entry[0] for entry in CASES.values()} == STAGES


def test_allowlist_names_real_cases():
    unknown = sorted(set(ALLOW) - set(CASES))
    assert not unknown, f"allowlist.toml names cases that do not exist: {unknown}"


def test_reference_answers_like_the_seed(outcomes):
    """Sanity of the harness itself: a few outcomes of the seed that docs/sip-spec-notes.md fixes."""
    ref = outcomes[0]
    first = {n: ref[n][0] for n in ("mf_0", "mf_missing", "method_message", "all_down",
                                    "dialog_bye_no_route", "sanity_cseq_mismatch")}
    assert first["mf_0"]["replies"] == ["483 Too Many Hops"]
    assert first["mf_missing"]["forwarded"][0]["max_forwards"] == 10
    assert first["method_message"]["replies"] == ["405 Method Not Allowed"]
    assert first["all_down"]["replies"] == ["503 Service Unavailable"]
    assert first["sanity_cseq_mismatch"]["replies"] == ["400 CSeq method does not match request method"]
    assert ref["dialog_bye_no_route"][-1]["replies"] == ["404 Not Here"]
