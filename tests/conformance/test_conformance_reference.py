"""The Kamailio reference itself: the seed text is the seed, the edits are the named ones."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kamailio import reference as ref

# The seed's notes are the team's shared notes, outside this repository (beside the
# checkout, or at /work/shared on the team's machines); seed_cfg.SEED_TEXT is the copy the
# repository relies on. Comparing the two is an optional cross-check that skips without them.
SEED_NOTES = [Path(__file__).resolve().parents[3] / "shared/reference/seed-sip-router-notes.md",
              Path("/work/shared/reference/seed-sip-router-notes.md")]


def test_seed_cfg_is_the_block_of_the_seed_notes():
    """Optional cross-check: seed_cfg.SEED_TEXT is still the seed notes' ```kamailio block."""
    notes = next((p for p in SEED_NOTES if p.exists()), None)
    if notes is None:
        pytest.skip("optional cross-check: the seed's notes (shared/reference/seed-sip-router-notes.md, outside the repository) are not at hand")
    text = notes.read_bytes()
    start = text.index(b"```kamailio\n") + len(b"```kamailio\n")
    end = text.index(b"\n```", start) + 1
    assert ref.SEED_TEXT.encode() == text[start:end]


def test_write_seed_cfg_is_byte_for_byte(tmp_path):
    assert ref.write_seed_cfg(tmp_path / "seed.cfg").read_bytes() == ref.SEED_TEXT.encode()


def test_every_substitution_applies_and_names_its_reason():
    cfg = ref.render_config("127.0.0.1", 5070, "/tmp/x.db", probing_mode=1, algorithm=8)
    assert "listen=udp:127.0.0.1:5070" in cfg and "auto_aliases=no" in cfg
    assert "(?i)" not in cfg and "sql_result(" not in cfg
    assert 'modparam("tm", "fr_timer", 5000)' in cfg and 'ds_probing_mode", 1' in cfg
    assert 'ds_select_dst($var(setid), "8")' in cfg
    assert all(s.reason for s in ref.SUBSTITUTIONS)


@pytest.mark.parametrize("sub", ref.SUBSTITUTIONS + (ref.PROBING_MODE, ref.ALGORITHM),
                         ids=lambda s: s.name)
def test_missing_anchor_fails_loudly(sub):
    seed = ref.SEED_TEXT.replace(sub.anchor, "")
    with pytest.raises(ref.SubstitutionError, match=sub.name):
        ref.render_config("127.0.0.1", 5070, "/tmp/x.db", probing_mode=1, algorithm=8,
                          seed_text=seed)


def test_prepare_db_adds_the_version_row(tmp_path):
    db = ref.prepare_db(tmp_path / "r.db")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT table_version FROM version WHERE table_name='dispatcher'"
                           ).fetchone() == (4,)


def test_seed_schema_agrees_with_sipedge_schema(tmp_path):
    """Two places hold the routing tables (the reference's seed DDL and
    sipedge.schema): column for column, they must be the same, but for the
    `description` column that sipedge's schema 2 adds to dispatcher (Kamailio's
    stock table has it; the seed's DDL does not)."""
    from sipedge.schema import ensure_schema  # pylint: disable=import-outside-toplevel

    def columns(path):
        with sqlite3.connect(str(path)) as con:
            return {table: con.execute(f"PRAGMA table_info({table})").fetchall()
                    for table in ("sip_domains", "dispatcher")}

    seed, ours = tmp_path / "seed.db", tmp_path / "ours.db"
    with sqlite3.connect(str(seed)) as con:
        con.executescript(ref.SEED_SCHEMA_SQL)
    ensure_schema(str(ours))
    seed_columns, our_columns = columns(seed), columns(ours)
    assert our_columns["dispatcher"][-1] == (6, "description", "TEXT", 0, None, 0)
    our_columns["dispatcher"].pop()
    assert seed_columns == our_columns
