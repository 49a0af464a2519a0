"""Unit tests of sipedge.dispatcher (sans-I/O: no sockets, no clock).

Vectors marked "Kamailio 5.6.3" were produced by a real kamailio 5.6.3 on
loopback: `kamcmd dispatcher.hash` for the hash, and ds_select_dst() with a
list file holding the same rows for the selections and the keep-alive table.
"""

import collections
import random
import weakref

import pytest

from harness import RoutedMsg as Msg

from sipedge import dispatcher as ds
from sipedge.config import Config
from sipedge.dispatcher import (DISABLED, INACTIVE, NOPING, PROBING, TRYING, Dispatcher, DispatcherSettings,
                                ds_get_hash, parse_destination, uri_hash_keys)
from sipedge.health import Health


def make(rows, order="lowest-first", seed=1, **settings):
    disp = Dispatcher(DispatcherSettings(priority_order=order, **settings), random.Random(seed))
    assert not disp.load(rows)
    return disp


def ping(disp, dest, code):
    """One keep-alive result through health.py's state machine (default thresholds)."""
    return Health(Config(), disp).result(dest, code, 0.0)


def uris(disp, setid):
    return [d.uri for d in disp.destinations() if d.setid == setid]


def picks(disp, setid, count, msg=None):
    out = []
    for _i in range(count):
        dest = disp.select(setid, msg or Msg())
        out.append(dest.uri if dest else None)
    return out


def port_rows(setid, *ports, flags=None, priority=0, attrs=None):
    flags = flags or {}
    return [(setid, "sip:127.0.0.1:%d" % p, flags.get(p, 0), priority, attrs) for p in ports]


# -- ds_get_hash ---------------------------------------------------------------

def test_hash_by_hand():
    # "abc" is shorter than 4 bytes: tail v = 0x616263 = 6382179; h = v ^ (v >> 3) = 6382179 ^ 797772 = 7163439
    # final mix: h + (h >> 11) + (h >> 13) + (h >> 23) = 7163439 + 3497 + 874 + 0 = 7167810
    v = 0x616263
    h = v ^ (v >> 3)
    h = h + (h >> 11) + (h >> 13) + (h >> 23)
    assert ds_get_hash(b"abc", None) == h == 7167810
    # "abcd": one 4-byte word, then an empty tail that adds 0
    v = 0x61626364
    h = (v ^ (v >> 3)) & 0xFFFFFFFF
    assert ds_get_hash(b"abcd", None) == (h + (h >> 11) + (h >> 13) + (h >> 23)) & 0xFFFFFFFF


@pytest.mark.parametrize("key1, key2, expected", [
    # Kamailio 5.6.3: kamcmd dispatcher.hash 1000 s:<key1> [s:<key2>] (hashid printed as signed int)
    ("abc", None, 7167810),
    ("a", None, 109),
    ("abcd", None, 1834959896),
    ("abcde", None, 1834960001),
    ("a84b4c76e66710@pc33.atlanta.com", None, 2175018094),
    ("3848276298220188511@atlanta.example.com", None, 3416024093),
    ("alice", "atlanta.example.com", 654714186),
    ("bob", "biloxi.example.com:5070", 571038932),
    ("1000", "10.0.1.10", 2587591957),
    ("x", "[2001:db8::1]:5080", 491873303),
    ("caf\u00e9-\u00fcber-\u00e9t\u00e9", None, 1414138126),  # bytes >= 0x80 are signed chars in C
    ("\u00ff\u00fe\u00fd\u00fc\u00fb", None, 2515278630),
    ("alice", "b\u00e9", 1841366024),
])
def test_hash_matches_kamailio(key1, key2, expected):
    assert ds_get_hash(key1.encode(), key2.encode() if key2 is not None else None) == expected


def reference_hash(x, y):
    """docs/sip-spec-notes.md §2.5, transcribed byte by byte from dispatch.c."""
    def sc(b):
        return b - 256 if b > 127 else b
    if x is None and y is None:
        return 0
    mask, h = 0xFFFFFFFF, 0
    for s in (x, y):
        if s is None:
            continue
        p, n = 0, len(s)
        while p + 4 <= n:
            v = ((sc(s[p]) << 24) + (sc(s[p + 1]) << 16) + (sc(s[p + 2]) << 8) + sc(s[p + 3])) & mask
            h = (h + (v ^ (v >> 3))) & mask
            p += 4
        v = 0
        while p < n:
            v = ((v << 8) + sc(s[p])) & mask
            p += 1
        h = (h + (v ^ (v >> 3))) & mask
    h = (h + (h >> 11) + (h >> 13) + (h >> 23)) & mask
    return h or 1


def test_hash_equals_reference_on_random_bytes():
    rng = random.Random(5)
    for _i in range(2000):
        top = rng.choice((0x7F, 0xFF))  # ASCII fast path and the signed-char path
        x = bytes(rng.randint(0, top) for _i in range(rng.randint(0, 41)))
        y = rng.choice((None, bytes(rng.randint(0, top) for _i in range(rng.randint(0, 13)))))
        assert ds_get_hash(x, y) == reference_hash(x, y)


def test_hash_edge_cases():
    assert ds_get_hash(None, None) == 0
    assert ds_get_hash(b"", None) == 1  # h == 0 is returned as 1
    assert ds_get_hash(None, b"abc") == ds_get_hash(b"abc", None) == ds_get_hash(b"", b"abc")


# -- URI handling ----------------------------------------------------------------

@pytest.mark.parametrize("uri, keys", [
    ("sip:alice@atlanta.example.com", (b"alice", b"atlanta.example.com")),
    ("sip:alice@atlanta.example.com:5060", (b"alice", b"atlanta.example.com")),
    ("sip:alice@atlanta.example.com:5070", (b"alice", b"atlanta.example.com:5070")),
    ("sips:alice@atlanta.example.com:5061", (b"alice", b"atlanta.example.com")),
    ("sips:alice@atlanta.example.com:5060", (b"alice", b"atlanta.example.com:5060")),
    ("sip:alice@atlanta.example.com:05060", (b"alice", b"atlanta.example.com")),  # numeric compare, like port_no
    ("sip:alice:secret@h.example;transport=udp?subject=x", (b"alice", b"h.example")),
    ("SIP:Alice@H.Example", (b"Alice", b"H.Example")),  # literal text, no case folding
    ("sip:h.example", (None, b"h.example")),
    ("sip:bob@[2001:db8::1]:5062", (b"bob", b"[2001:db8::1]:5062")),
    ("sip:bob@[2001:db8::1]:5060", (b"bob", b"[2001:db8::1]")),
    (b"sip:1000@tenant1.example.com", (b"1000", b"tenant1.example.com")),
    ("tel:+123", None),
    ("sip:alice@", None),
    ("sip:alice@h:port", None),
    ("garbage", None),
])
def test_uri_hash_keys(uri, keys):
    assert uri_hash_keys(uri) == keys


@pytest.mark.parametrize("uri, parsed", [
    ("sip:10.0.1.10:5060", ("10.0.1.10", 5060, "")),
    ("sip:10.0.1.10", ("10.0.1.10", 5060, "")),
    ("sips:pbx.example.com", ("pbx.example.com", 5061, "")),
    ("sips:pbx.example.com:5071", ("pbx.example.com", 5071, "")),
    ("sip:[2001:db8::10]:5080", ("2001:db8::10", 5080, "")),
    ("sip:[2001:db8::10]", ("2001:db8::10", 5060, "")),
    ("sip:asterisk@10.0.1.11:5062;transport=TCP;lr", ("10.0.1.11", 5062, "tcp")),
    ("sip:user:pw@host-1.example:5090?x=y", ("host-1.example", 5090, "")),
    ("sip:[zz::1]:5060", None),
    ("sip:[2001:db8::10]5060", None),
    ("sip:10.0.1.10:0", None),
    ("sip:10.0.1.10:70000", None),
    ("sip:10.0.1.10:50a", None),
    ("sip:bad host", None),
    ("http://10.0.1.10", None),
    ("10.0.1.10:5060", None),
])
def test_parse_destination(uri, parsed):
    assert parse_destination(uri) == parsed


# -- loading -----------------------------------------------------------------------

def test_load_fields_nulls_and_sip_prefix():
    disp = Dispatcher(DispatcherSettings())
    warnings = disp.load([
        (10, "10.0.1.10:5060", None, None, None),   # Kamailio prepends "sip:" once
        (10, "sip:[2001:db8::1]:5080", 8, 5, "weight=30;duid=a;"),
        (10, "not a uri", 0, 0, None),
        (10, "sip:", 0, 0, None),
        ("x", "sip:10.0.0.1", 0, 0, None),
        (10, "sip:10.0.1.10:5060", 0, 0, None),     # duplicate of the first after the prefix
        (20, "sips:pbx.example.com", "0x8", "3", ""),
    ])
    assert len(warnings) == 4
    assert "'not a uri'" in warnings[0] and "'sip:'" in warnings[1]
    assert "bad value" in warnings[2] and "duplicate" in warnings[3]
    first, second, third = disp.destinations()
    assert (first.setid, first.uri, first.flags, first.priority, first.attrs) == (10, "sip:10.0.1.10:5060", 0, 0, "")
    assert (first.host, first.port, first.weight, first.probing_count) == ("10.0.1.10", 5060, 0, 0)
    assert (second.uri, second.host, second.port, second.flags, second.weight) == ("sip:[2001:db8::1]:5080", "2001:db8::1", 5080, 8, 30)
    assert (third.setid, third.host, third.port, third.flags, third.priority) == (20, "pbx.example.com", 5061, 8, 3)


@pytest.mark.parametrize("attrs, weight", [
    ("weight=50", 50), ("WEIGHT=100", 100), ("duid=x;weight=1;", 1), ("weight=0", 0), ("weight=101", 0),
    ("weight=-5", 0), ("weight=abc", 0), ("", 0), ("rweight=50", 0),
])
def test_weight_attr(attrs, weight):
    disp = make([(1, "sip:10.0.0.1", 0, 0, attrs)])
    assert disp.destinations()[0].weight == weight


def test_load_replaces_sets():
    disp = make(port_rows(10, 1, 2) + port_rows(20, 3))
    assert disp.set_ids() == [10, 20]
    disp.load(port_rows(20, 4))
    assert disp.set_ids() == [20]
    assert disp.select(10, Msg()) is None
    assert uris(disp, 20) == ["sip:127.0.0.1:4"]


# -- array order ---------------------------------------------------------------------

SEED_ROWS = [(10, "sip:10.0.1.10:5060", 0, 0, None), (10, "sip:10.0.1.11:5060", 0, 10, None)]
TIE_ROWS = [(20, "sip:a.example", 0, 5, None), (20, "sip:b.example", 0, 5, None), (20, "sip:c.example", 0, 5, None)]
MIXED_ROWS = [(30, "sip:p10a", 0, 10, None), (30, "sip:p0a", 0, 0, None), (30, "sip:p10b", 0, 10, None),
              (30, "sip:p5", 0, 5, None), (30, "sip:p0b", 0, 0, None)]


def test_priority_lowest_first():
    disp = make(SEED_ROWS + TIE_ROWS + MIXED_ROWS)
    assert uris(disp, 10) == ["sip:10.0.1.10:5060", "sip:10.0.1.11:5060"]
    assert uris(disp, 20) == ["sip:a.example", "sip:b.example", "sip:c.example"]
    assert uris(disp, 30) == ["sip:p0a", "sip:p0b", "sip:p5", "sip:p10a", "sip:p10b"]
    assert picks(make(SEED_ROWS, algorithm=8), 10, 1) == ["sip:10.0.1.10:5060"]  # priority 0 is the primary


def test_priority_kamailio():
    # Kamailio 5.6.3 dispatcher.list: descending priority, ties in reverse load order
    disp = make(SEED_ROWS + TIE_ROWS + MIXED_ROWS, order="kamailio")
    assert uris(disp, 10) == ["sip:10.0.1.11:5060", "sip:10.0.1.10:5060"]
    assert uris(disp, 20) == ["sip:c.example", "sip:b.example", "sip:a.example"]
    assert uris(disp, 30) == ["sip:p10b", "sip:p10a", "sip:p5", "sip:p0b", "sip:p0a"]


def test_settings_validation():
    with pytest.raises(ValueError):
        DispatcherSettings(priority_order="highest-first")


# -- round robin (4) ---------------------------------------------------------------------

def test_round_robin_alternates():
    disp = make(port_rows(10, 1, 2) + port_rows(20, 3, 4, 5))
    assert picks(disp, 10, 6) == ["sip:127.0.0.1:1", "sip:127.0.0.1:2"] * 3
    assert picks(disp, 20, 4) == ["sip:127.0.0.1:3", "sip:127.0.0.1:4", "sip:127.0.0.1:5", "sip:127.0.0.1:3"]
    assert picks(disp, 10, 1) == ["sip:127.0.0.1:1"]  # positions are per set


def test_round_robin_skips_and_continues_after_the_node_used():
    # Kamailio 5.6.3, set 30 of the cross-check: [D 85, 84, 83, I 82, 81] in Kamailio's order
    rows = port_rows(30, 25081, 25082, 25083, 25084, 25085, flags={25082: INACTIVE, 25085: DISABLED})
    disp = make(rows, order="kamailio")
    assert [u[-5:] for u in picks(disp, 30, 6)] == ["25084", "25083", "25081", "25084", "25083", "25081"]
    # the same with the product's order: [81, I 82, 83, 84, D 85]
    disp = make(rows)
    assert [u[-5:] for u in picks(disp, 30, 6)] == ["25081", "25083", "25084", "25081", "25083", "25084"]


def test_round_robin_next_after_skip_is_not_doubled():
    disp = make(port_rows(10, 1, 2, 3))
    assert picks(disp, 10, 1) == ["sip:127.0.0.1:1"]
    disp.set_state(10, "sip:127.0.0.1:2", INACTIVE)
    # position 1 is dead: 3 is used, and the next call starts after 3 (wraps to 1), not at 3 again
    assert picks(disp, 10, 3) == ["sip:127.0.0.1:3", "sip:127.0.0.1:1", "sip:127.0.0.1:3"]


def test_nothing_selectable_or_no_set():
    disp = make(port_rows(80, 1, 2, flags={1: INACTIVE, 2: DISABLED}))
    assert picks(disp, 80, 3) == [None] * 3
    assert disp.select(99, Msg()) is None


# -- hash algorithms (0-3) -----------------------------------------------------------------

SET20 = port_rows(20, 25071, 25072, 25073, priority=5)
SET30 = port_rows(30, 25081, 25082, 25083, 25084, 25085, flags={25082: INACTIVE, 25085: DISABLED})


@pytest.mark.parametrize("alg, rows, msg, port", [
    # Kamailio 5.6.3 ds_select_dst(set, alg) with the same rows (Kamailio order)
    (0, SET20, Msg(call_id="a84b4c76e66710@pc33.atlanta.com"), 25072),
    (0, SET20, Msg(call_id="  f81d4fae-7dec-11d0-a765-00a0c91e6bf6@192.0.2.4 "), 25073),
    (0, SET30, Msg(call_id="3848276298220188511@atlanta.example.com"), 25081),
    (0, SET30, Msg(call_id="c1@x"), 25081),
    (0, SET30, Msg(call_id="c2@x"), 25084),
    (0, SET30, Msg(call_id="c3@x"), 25081),
    (0, SET30, Msg(call_id="c4@x"), 25084),
    (1, SET20, Msg(from_uri="sip:alice@atlanta.example.com"), 25073),
    (1, SET20, Msg(from_uri="sip:alice@atlanta.example.com:5060"), 25073),
    (1, SET20, Msg(from_uri="sip:alice@atlanta.example.com:5070"), 25071),
    (1, SET20, Msg(from_uri="sips:alice@atlanta.example.com:5061"), 25073),
    (1, SET20, Msg(from_uri="sip:atlanta.example.com"), 25072),
    (2, SET20, Msg(to_uri="sip:bob@biloxi.example.com"), 25072),
    (2, SET20, Msg(to_uri="sip:bob@[2001:db8::1]:5062"), 25073),
    (3, SET20, Msg(ruri="sip:1000@tenant1.example.com"), 25072),
    (3, SET30, Msg(ruri="sip:1000@tenant1.example.com"), 25081),
    (3, SET30, Msg(ruri="sip:1001@tenant1.example.com"), 25084),
])
def test_hash_selection_matches_kamailio(alg, rows, msg, port):
    disp = make(rows, order="kamailio", algorithm=alg)
    setid = rows[0][0]
    assert disp.select(setid, msg).port == port
    assert disp.select(setid, msg).port == port  # stable: no state


def test_hash_spreads_and_is_stable():
    rows = port_rows(1, 1, 2, 3)
    for alg, field_name in ((0, "call_id"), (1, "from_uri"), (2, "to_uri"), (3, "ruri")):
        disp = make(rows, algorithm=alg)
        values = ["%d-%s" % (i, "x" * (i % 7)) for i in range(300)]
        if alg:
            values = ["sip:user%d@h%d.example" % (i, i % 5) for i in range(300)]
        first = [disp.select(1, Msg(**{field_name: v})).port for v in values]
        assert first == [disp.select(1, Msg(**{field_name: v})).port for v in values]
        counts = collections.Counter(first)
        assert set(counts) == {1, 2, 3} and min(counts.values()) > 50, (alg, counts)


def test_hash_uri_keys_ignore_params_and_accept_bytes():
    disp = make(port_rows(1, *range(1, 8)), algorithm=1)
    plain = disp.select(1, Msg(from_uri="sip:alice@a.example"))
    assert disp.select(1, Msg(from_uri="sip:alice@a.example;user=phone")) is plain
    assert disp.select(1, Msg(from_uri=b"sip:alice@a.example:5060")) is plain
    assert disp.select(1, Msg(from_uri="tel:+1555")) is None  # no host: Kamailio errors, caller replies 503


def test_hash_only_reads_what_it_needs():
    class OnlyCallId:  # pylint: disable=too-few-public-methods
        call_id = "abc"

    assert make(port_rows(1, 1, 2), algorithm=0).select(1, OnlyCallId()) is not None


def test_hash_skip_goes_to_next_in_array_order():
    disp = make(port_rows(1, 1, 2, 3), algorithm=0)
    msg = next(Msg(call_id=str(i)) for i in range(100) if disp.select(1, Msg(call_id=str(i))).port == 2)
    disp.set_state(1, "sip:127.0.0.1:2", INACTIVE)
    assert disp.select(1, msg).port == 3
    disp.set_state(1, "sip:127.0.0.1:3", DISABLED)
    assert disp.select(1, msg).port == 1  # wraps


# -- random (6), serial (8), unknown ------------------------------------------------------

def test_random_is_seeded_and_skips():
    rows = port_rows(1, 1, 2, 3, 4, flags={3: INACTIVE})
    first = picks(make(rows, algorithm=6, seed=42), 1, 200)
    assert first == picks(make(rows, algorithm=6, seed=42), 1, 200)
    counts = collections.Counter(first)
    assert "sip:127.0.0.1:3" not in counts and len(counts) == 3


def test_serial_first_selectable():
    disp = make(port_rows(1, 1, 2, 3), algorithm=8)
    assert picks(disp, 1, 3) == ["sip:127.0.0.1:1"] * 3
    disp.set_state(1, "sip:127.0.0.1:1", INACTIVE)
    assert picks(disp, 1, 2) == ["sip:127.0.0.1:2"] * 2


def test_unknown_algorithm_behaves_as_serial():
    disp = Dispatcher(DispatcherSettings(algorithm=4, set_algorithms={5: 13}))
    disp.load(port_rows(5, 1, 2) + port_rows(6, 3, 4))
    assert disp.settings_warnings and "13" in disp.settings_warnings[0]
    assert picks(disp, 5, 2) == ["sip:127.0.0.1:1"] * 2
    assert picks(disp, 6, 2) == ["sip:127.0.0.1:3", "sip:127.0.0.1:4"]
    assert disp.algorithm_for(5) == 13 and disp.algorithm_for(6) == 4


def test_algorithms_agree_with_config():
    from sipedge import config  # pylint: disable=import-outside-toplevel
    assert set(config.ALGORITHMS) == ds.ALGORITHMS
    assert tuple(config.PRIORITY_ORDERS) == ds.PRIORITY_ORDERS


# -- weights (9) ---------------------------------------------------------------------------

def weighted(weights, order="lowest-first", seed=3):
    rows = [(1, "sip:10.0.0.%d" % i, 0, 0, "weight=%d" % w if w is not None else None) for i, w in enumerate(weights, 1)]
    return make(rows, order=order, seed=seed, algorithm=9)


def test_weights_exact_proportions_per_100():
    disp = weighted([50, 30, 20])
    counts = collections.Counter(picks(disp, 1, 100))
    assert counts == {"sip:10.0.0.1": 50, "sip:10.0.0.2": 30, "sip:10.0.0.3": 20}
    assert collections.Counter(picks(disp, 1, 100)) == counts  # the same table, cycled
    assert picks(weighted([50, 30, 20], seed=3), 1, 100) == picks(weighted([50, 30, 20], seed=3), 1, 100)


def test_weights_remainder_and_overflow():
    # Kamailio 5.6.3 set 50 (Kamailio order [5, 20, 10]): the remainder 65 goes to the last entry
    assert collections.Counter(picks(weighted([10, 20, 5], order="kamailio"), 1, 100)) == {
        "sip:10.0.0.1": 75, "sip:10.0.0.2": 20, "sip:10.0.0.3": 5}
    assert collections.Counter(picks(weighted([10, 20, 5]), 1, 100)) == {
        "sip:10.0.0.1": 10, "sip:10.0.0.2": 20, "sip:10.0.0.3": 70}
    # more than 100 in total: entries past the 100th slot get nothing
    assert collections.Counter(picks(weighted([80, 40, 30]), 1, 100)) == {"sip:10.0.0.1": 80, "sip:10.0.0.2": 20}


def test_weights_unused_when_first_entry_has_none():
    # Kamailio 5.6.3 set 70: the entry at index 0 has weight 0 -> the table is all zeros
    assert set(picks(weighted([60, 40, 0], order="kamailio"), 1, 50)) == {"sip:10.0.0.3"}
    disp = weighted([None, 60, 40])
    assert set(picks(disp, 1, 20)) == {"sip:10.0.0.1"}
    disp.set_state(1, "sip:10.0.0.1", INACTIVE)
    assert set(picks(disp, 1, 20)) == {"sip:10.0.0.2"}  # entry 0 then the skip loop


def test_weights_not_recomputed_on_state_change():
    disp = weighted([50, 30, 20])
    disp.set_state(1, "sip:10.0.0.2", INACTIVE)
    # the dead node's 30 slots go to the next active node in array order
    assert collections.Counter(picks(disp, 1, 100)) == {"sip:10.0.0.1": 50, "sip:10.0.0.3": 50}


# -- flags at load and ping targets -------------------------------------------------------

def test_flags_at_load():
    disp = make(port_rows(1, 1, 2, 3, 4, 5, 6, flags={2: INACTIVE, 3: TRYING, 4: DISABLED, 5: PROBING, 6: NOPING}))
    assert picks(disp, 1, 4) == ["sip:127.0.0.1:%d" % p for p in (1, 3, 5, 6)]
    assert [d.port for d in disp.ping_targets()] == [1, 2, 3, 5]
    assert [d.state for d in disp.destinations()] == ["AX", "IX", "TX", "DX", "AP", "AN"]


def test_ping_targets_order_across_sets():
    disp = make(port_rows(20, 3) + port_rows(10, 2, 1, flags={1: DISABLED}))
    assert [(d.setid, d.port) for d in disp.ping_targets()] == [(10, 2), (20, 3)]


def test_set_state_fires_no_event_and_keeps_counter():
    disp = make([(1, "sip:10.0.0.1", 0, 0, None)])
    dest = disp.destinations()[0]
    ping(disp, dest, 408)
    assert disp.set_state(1, "sip:10.0.0.1", INACTIVE | PROBING)
    assert (dest.state, dest.probing_count) == ("IP", 1)
    assert not disp.set_state(1, "sip:10.0.0.99", 0)


# -- reload --------------------------------------------------------------------------------

def test_reload_keeps_runtime_state():
    rows = port_rows(1, 1, 2)
    disp = make(rows)
    dead = disp.find(1, "sip:127.0.0.1:1")
    ping(disp, dead, 408)
    ping(disp, dead, 408)
    trying = disp.find(1, "sip:127.0.0.1:2")
    ping(disp, trying, 408)
    assert not disp.load(rows)
    assert disp.find(1, "sip:127.0.0.1:1") is dead and dead.state == "IP"  # not resurrected
    assert disp.find(1, "sip:127.0.0.1:2") is trying and (trying.state, trying.probing_count) == ("TP", 1)
    assert picks(disp, 1, 2) == ["sip:127.0.0.1:2"] * 2
    # a new priority or attrs: a new record, same state
    disp.load([(1, "sip:127.0.0.1:1", 0, 7, "weight=5"), rows[1]])
    moved = disp.find(1, "sip:127.0.0.1:1")
    assert moved is not dead and (moved.state, moved.priority, moved.weight) == ("IP", 7, 5)


def test_reload_changed_flags_column_resets_state():
    disp = make(port_rows(1, 1))
    dest = disp.destinations()[0]
    ping(disp, dest, 408)
    ping(disp, dest, 408)
    assert not dest.selectable
    disp.load(port_rows(1, 1, flags={1: PROBING}))
    fresh = disp.find(1, "sip:127.0.0.1:1")
    assert (fresh.flags, fresh.probing_count, fresh.selectable) == (PROBING, 0, True)
    disp.load(port_rows(1, 1, flags={1: DISABLED}))
    assert disp.ping_targets() == [] and disp.select(1, Msg()) is None


def test_reload_keeps_round_robin_position_when_members_unchanged():
    rows = port_rows(1, 1, 2, 3) + port_rows(2, 4, 5)
    disp = make(rows)
    assert picks(disp, 1, 1) == ["sip:127.0.0.1:1"]
    disp.load(rows + port_rows(3, 6))  # another set changed
    assert picks(disp, 1, 1) == ["sip:127.0.0.1:2"]
    disp.load(port_rows(1, 1, 2, 3, priority=5) + port_rows(2, 4, 5))  # every row of it changed, same members
    assert picks(disp, 1, 1) == ["sip:127.0.0.1:3"]
    assert picks(disp, 1, 1) == ["sip:127.0.0.1:1"]
    disp.load(rows + port_rows(1, 7))  # other members: starts again at index 0
    assert picks(disp, 1, 1) == ["sip:127.0.0.1:1"]


def test_replaced_tables_are_freed_by_the_next_prepare_not_by_the_commit():
    """The loop's commit only swaps references; the DB thread's next prepare frees
    the table it replaced (30,000 objects freed on the loop cost it milliseconds)."""
    disp = make(port_rows(1, 1, 2))
    old_set = weakref.ref(disp._sets[1])  # pylint: disable=protected-access
    disp.commit(disp.prepare(port_rows(1, 1, 2, priority=5)))
    assert old_set() is not None
    disp.prepare(port_rows(1, 1, 2, priority=6))
    assert old_set() is None


def test_reload_keeps_weight_table():
    disp = weighted([50, 30, 20])
    first = picks(disp, 1, 30)
    disp.load([(1, d.uri, 0, 0, d.attrs) for d in disp.destinations()])
    rest = picks(disp, 1, 70)
    assert collections.Counter(first + rest) == {"sip:10.0.0.1": 50, "sip:10.0.0.2": 30, "sip:10.0.0.3": 20}


def test_ping_result_after_reload_uses_current_entry():
    disp = make(port_rows(1, 1, 2))
    stale = disp.find(1, "sip:127.0.0.1:1")
    disp.load([(1, "sip:127.0.0.1:1", 0, 9, None)] + port_rows(1, 2))  # new record for :1
    assert ping(disp, stale, 408) is None
    assert disp.find(1, "sip:127.0.0.1:1").state == "TP" and stale.state == "AX"
    disp.load(port_rows(1, 2))
    assert ping(disp, stale, 408) is None  # removed: ignored


def test_prepare_leaves_the_table_in_use_alone():
    """A reload is prepared while the old table routes; commit swaps it in."""
    disp = make(port_rows(1, 1))
    prepared = disp.prepare(port_rows(1, 2) + port_rows(2, 3))
    assert picks(disp, 1, 2) == ["sip:127.0.0.1:1"] * 2 and disp.select(2, Msg()) is None
    disp.commit(prepared)
    assert picks(disp, 1, 2) == ["sip:127.0.0.1:2"] * 2 and picks(disp, 2, 1) == ["sip:127.0.0.1:3"]


def test_unchanged_rows_and_sets_keep_their_objects():
    rows = port_rows(1, 1, 2) + port_rows(2, 3)
    disp = make(rows)
    before = {d.uri: d for d in disp.destinations()}
    prepared = disp.prepare(rows + port_rows(3, 4))
    assert prepared.replaced == []  # nothing to carry over at commit
    assert [s for s, dset in prepared.sets.items() if dset is not disp._sets.get(s)] == [3]  # pylint: disable=protected-access
    disp.commit(prepared)
    assert all(disp.find(d.setid, uri) is d for uri, d in before.items())


def test_state_reached_between_prepare_and_commit_is_kept():
    """Pings answered while a reload is being prepared are not lost: the live
    state is carried over when the new table is put in use."""
    disp = make(port_rows(1, 1, 2))
    prepared = disp.prepare([(1, "sip:127.0.0.1:1", 0, 5, None)] + port_rows(1, 2))  # new priority: a new record
    live = disp.find(1, "sip:127.0.0.1:1")
    ping(disp, live, 408)
    ping(disp, live, 408)
    disp.commit(prepared)
    moved = disp.find(1, "sip:127.0.0.1:1")
    assert moved is not live and (moved.priority, moved.state) == (5, "IP")
    assert picks(disp, 1, 2) == ["sip:127.0.0.1:2"] * 2


def test_prepares_queued_before_their_commits():
    """The DB thread may prepare the next reload before the loop committed the
    previous one; committed in order, both apply."""
    disp = make(port_rows(1, 1))
    first = disp.prepare(port_rows(1, 1, 2))
    second = disp.prepare(port_rows(1, 1, 2, 3))
    disp.commit(first)
    disp.commit(second)
    assert uris(disp, 1) == ["sip:127.0.0.1:1", "sip:127.0.0.1:2", "sip:127.0.0.1:3"]
    assert picks(disp, 1, 3) == uris(disp, 1)


def test_named_destinations_get_their_address_at_commit():
    disp = Dispatcher(DispatcherSettings(), random.Random(1))
    rows = [(1, "sip:pbx.example.com:5070", 0, 0, None), (1, "sip:[2001:db8::1]", 0, 0, None)]
    prepared = disp.prepare(rows, {"pbx.example.com": "192.0.2.7"}.get)
    assert [d.host for d in prepared.named] == ["pbx.example.com"]
    assert prepared.ips == {"192.0.2.7", "2001:db8::1"}
    disp.commit(prepared)
    assert [d.address for d in disp.destinations()] == [("192.0.2.7", 5070), ("2001:db8::1", 5060)]
    disp.commit(disp.prepare(rows, {}.get))  # no longer resolves
    assert disp.destinations()[0].address is None


# -- snapshot ---------------------------------------------------------------------------------

def test_snapshot():
    disp = make(port_rows(20, 3) + [(10, "sip:127.0.0.1:1", 1, 5, "weight=10")], algorithm=4, set_algorithms={20: 8})
    assert disp.snapshot() == [
        {"setid": 10, "algorithm": 4, "destinations": [{
            "index": 0, "uri": "sip:127.0.0.1:1", "state": "IX", "flags": 1, "priority": 5, "attrs": "weight=10",
            "weight": 10, "probing_count": 0, "status": "inactive", "probing": False, "pinned": False, "last_ping": None,
            "last_code": None, "rtt": None, "calls": 0, "failures": 0}]},
        {"setid": 20, "algorithm": 8, "destinations": [{
            "index": 0, "uri": "sip:127.0.0.1:3", "state": "AX", "flags": 0, "priority": 0, "attrs": "",
            "weight": 0, "probing_count": 0, "status": "active", "probing": False, "pinned": False, "last_ping": None,
            "last_code": None, "rtt": None, "calls": 0, "failures": 0}]},
    ]


def test_destination_is_hashable_by_identity():
    disp = make(port_rows(1, 1, 2))
    pending = {dest: "branch" for dest in disp.ping_targets()}
    assert len(pending) == 2
