"""Destination sets and the selection algorithms.

Sans-I/O: nothing here sends, sleeps or reads a clock.  The shell feeds the
routing DB rows to `Dispatcher.prepare` / `commit`, the router asks `select`
for a destination per request (and `next_destination` after a failed one),
and health.py pings `ping_targets()` and keeps each destination's state bits.
References below are to `docs/sip-spec-notes.md` (section 2).

Array order of a set (decides round-robin rotation, algorithm 8 and the skip loop):
  * "lowest-first" (the product's default, docs/design.md decision 7): ascending
    priority value, ties in load (DB id) order.  Priority 0 comes before 10.
  * "kamailio": exactly what Kamailio builds (2.1): descending priority value,
    ties in REVERSE load order.  Rows A, B, C of equal priority give [C, B, A].

`flags` column = Kamailio's per-destination state bits (docs/design.md decision 8):
INACTIVE 1 (not selected, still pinged, back after `inactive_threshold`
successes), TRYING 2 (selected), DISABLED 4 (never selected, never pinged,
never changed by keep-alives), PROBING 8 (informational: every non-disabled
node is pinged, as in Kamailio's ds_probing_mode=1).  NODNSARES 16 and NOPING 32
are not pinged, as in Kamailio.  NULL = 0.

Algorithms (2.3): 0 Call-ID hash, 1 From URI hash, 2 To URI hash, 3 R-URI
hash (bit-exact `ds_get_hash`, 2.5), 4 round robin, 6 random, 8 first
selectable in array order, 9 weight (2.4).  The chosen index is `hash % n`; an
INACTIVE or DISABLED entry passes the choice on to the next one in array order.

Reload (`load`) keeps what Kamailio would lose (2.11), so that the routing DB
can change under a running router without side effects:
  * the health state (TRYING/INACTIVE/PROBING bits and the probe counter) and
    the counters of a destination whose (setid, uri) and `flags` column are
    unchanged; a changed `flags` column means an operator decision and resets
    the state (not the counters) to it;
  * the round-robin position and the weight table of a set whose members (in
    array order, and their weights) are unchanged.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Iterable, Optional, Protocol, Sequence, Union

from .uri import default_port, ip_literal, parse_uri

INACTIVE, TRYING, DISABLED, PROBING = 1, 2, 4, 8
NODNSARES, NOPING = 16, 32

SKIP = INACTIVE | DISABLED  # Kamailio's ds_skip_dst()
NO_PING = DISABLED | NODNSARES | NOPING
HEALTH_BITS = INACTIVE | TRYING | PROBING  # rebuilt by each keep-alive result

ALGORITHMS = frozenset((0, 1, 2, 3, 4, 6, 8, 9))
PRIORITY_ORDERS = ("lowest-first", "kamailio")
WEIGHT_SLOTS = 100
NO_WEIGHTS = (0,) * WEIGHT_SLOTS  # the table of a set without weights: entry 0, then the skip loop

_M32 = 0xFFFFFFFF

Row = tuple  # (setid, destination, flags, priority, attrs) as read from the DB
Text = Union[str, bytes]


class RoutedMessage(Protocol):  # pylint: disable=too-few-public-methods
    """What `Dispatcher.select` reads from a request (str or bytes each)."""

    call_id: Text
    from_uri: Text
    to_uri: Text
    ruri: Text


# ---------------------------------------------------------------------------
# Kamailio's hash (bit-exact, dispatch.c ds_get_hash)

def ds_get_hash(key1: Optional[bytes], key2: Optional[bytes]) -> int:
    """Kamailio's `ds_get_hash(x, y)`; None stands for a NULL str pointer."""
    if key1 is None and key2 is None:
        return 0
    h = 0
    for key in (key1, key2):
        if key is None:
            continue
        n = len(key) & ~3
        if key.isascii():
            # fast path: with no byte >= 0x80 signed and unsigned chars agree
            for v in struct.unpack(">%dI" % (n >> 2), key[:n]):
                h += v ^ (v >> 3)
            v = int.from_bytes(key[n:], "big")
        else:
            sv = memoryview(key).cast("b")  # C 'char' is signed on x86
            for p in range(0, n, 4):
                v = ((sv[p] << 24) + (sv[p + 1] << 16) + (sv[p + 2] << 8) + sv[p + 3]) & _M32
                h += v ^ (v >> 3)
            v = 0
            for p in range(n, len(key)):
                v = ((v << 8) + sv[p]) & _M32
        h = (h + (v ^ (v >> 3))) & _M32
    h = (h + (h >> 11) + (h >> 13) + (h >> 23)) & _M32
    return h or 1


def _as_bytes(value: Text) -> bytes:
    if isinstance(value, bytes):
        return value
    # surrogateescape round-trips bytes that a parser decoded the same way
    return value.encode("utf-8", "surrogateescape")


def _uri(uri: Text):
    """A sip/sips Uri with a host (uri.py), or None."""
    parsed = parse_uri(_as_bytes(uri).strip())
    return parsed if parsed is not None and parsed.host else None


def uri_hash_keys(uri: Text) -> Optional[tuple[Optional[bytes], bytes]]:
    """Keys of algorithms 1-3 (dispatch.c get_uri_hash_keys): (user, host[:port]).

    The port is part of key 2 only when present and not the scheme's default
    (5060, 5061 for sips).  None when the URI has no host (Kamailio: error).
    """
    parsed = _uri(uri)
    if parsed is None:
        return None
    host = parsed.host
    if parsed.port is not None and int(parsed.port) != default_port(parsed.scheme):
        host = host + b":" + parsed.port
    return parsed.user, host


def parse_destination(uri: str) -> Optional[tuple[str, int, str]]:
    """(host, port, transport) of a destination URI, or None if unusable.

    host is socket-ready (IPv6 without brackets); port defaults to 5060 (5061
    for sips); transport is the lower-cased `transport` parameter or "".
    """
    parsed = _uri(uri)
    if parsed is None:
        return None
    host = parsed.host.decode("ascii")
    if host.startswith("["):
        host = ip_literal(host)
        if host is None:
            return None
    transport = parsed.param(b"transport")
    return host, parsed.port_number, (transport or b"").decode("ascii", "replace").lower()


def parse_attrs(attrs: str) -> dict[str, str]:
    """`name=value;name=value` (names case-insensitive, trailing ';' allowed)."""
    out = {}
    for item in attrs.strip().rstrip(";").split(";"):
        name, _sep, value = item.partition("=")
        name = name.strip().lower()
        if name:
            out[name] = value.strip()
    return out


def _weight(attrs: str) -> int:
    value = parse_attrs(attrs).get("weight", "")
    try:
        weight = int(value)
    except ValueError:
        return 0
    return weight if 1 <= weight <= 100 else 0  # Kamailio: out of range -> 0


def _as_int(value, default: Optional[int]) -> int:
    """DB value -> int (SQLite columns are loosely typed); raises ValueError."""
    if value is None:
        if default is None:
            raise ValueError("NULL")
        return default
    if isinstance(value, bool):
        raise ValueError(repr(value))
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        return int(text, 16) if text[:2].lower() == "0x" else int(text)  # list files may write flags in hex
    raise ValueError(repr(value))


def _coerce_row(row: Row) -> tuple[int, str, int, int, str]:
    """(setid, destination, flags, priority, attrs) with NULL flags/priority = 0, NULL attrs = ""."""
    raw_setid, uri, raw_flags, raw_priority, attrs = row
    return (_as_int(raw_setid, None), uri if isinstance(uri, str) else "", _as_int(raw_flags, 0), _as_int(raw_priority, 0),
            attrs if isinstance(attrs, str) else "")


# ---------------------------------------------------------------------------
# State

@dataclass(eq=False)  # identity semantics: a live, mutable record usable as a dict key
class Destination:  # pylint: disable=too-many-instance-attributes
    """One destination of one set, with its runtime state in `flags`."""

    setid: int
    uri: str
    flags: int
    priority: int
    attrs: str
    host: str
    port: int
    weight: int
    probing_count: int = 0
    db_flags: int = 0  # the `flags` column as loaded; a change resets the runtime state
    transport: str = ""
    # (IP, port) to send to; for a host name, filled when the name resolves at each load
    address: Optional[tuple[str, int]] = None
    named: bool = False  # host is a name (resolved at load time, never per request)
    # [calls sent to it, calls that failed on it]: one list per (setid, uri), shared by the
    # objects a reload makes for that row, so no count is lost while a reload is prepared
    counts: list = field(default_factory=lambda: [0, 0])
    # kept across reloads with the health state: for `sipedge ctl dispatcher list` and /metrics
    last_ping: Optional[float] = None  # monotonic time of the last keep-alive result
    last_code: Optional[int] = None  # its code (408 for no answer)
    rtt: Optional[float] = None  # its round trip in seconds, None for no answer
    pinned: bool = False  # a runtime set-state holds it: keep-alives do not change it (until its row changes)

    @property
    def selectable(self) -> bool:
        return not self.flags & SKIP

    @property
    def calls(self) -> int:
        return self.counts[0]

    @property
    def failures(self) -> int:
        return self.counts[1]

    @property
    def status(self) -> str:
        """The state in a word: active, trying, inactive or disabled."""
        flags = self.flags
        return "inactive" if flags & INACTIVE else "disabled" if flags & DISABLED else "trying" if flags & TRYING else "active"

    @property
    def state(self) -> str:
        """Kamailio's two-letter state (dispatcher.list): AX, TP, IP, DX..."""
        flags = self.flags
        first = "I" if flags & INACTIVE else "D" if flags & DISABLED else "T" if flags & TRYING else "A"
        return first + ("P" if flags & PROBING else "N" if flags & NOPING else "X")


@dataclass(frozen=True)
class DispatcherSettings:
    """The [dispatcher] config keys that selection needs."""

    algorithm: int = 4
    set_algorithms: dict[int, int] = field(default_factory=dict)
    priority_order: str = "lowest-first"
    removed_grace: float = 14400.0  # seconds a removed destination's address still counts as a backend

    def __post_init__(self):
        if self.priority_order not in PRIORITY_ORDERS:
            raise ValueError("priority_order must be one of %s (got %r)" % (", ".join(PRIORITY_ORDERS), self.priority_order))


@dataclass(eq=False)
class _Set:
    setid: int
    dlist: list[Destination]  # array order (by priority)
    loaded: list[Destination]  # DB order: a reload with the same objects in it keeps the set
    last: int = 0  # round-robin position (alg 4)
    wlist: Sequence[int] = NO_WEIGHTS  # alg 9 table (read only: a reload may share it)
    wlast: int = 0

    def members(self) -> tuple[str, ...]:
        return tuple(d.uri for d in self.dlist)

    def weights(self) -> tuple[int, ...]:
        return tuple(d.weight for d in self.dlist)


@dataclass(frozen=True)
class PreparedLoad:  # pylint: disable=too-many-instance-attributes
    """A reload computed by Dispatcher.prepare, to be put in use by commit."""

    sets: dict[int, _Set]
    by_key: dict[tuple[int, str], Destination]
    by_raw: dict[Row, Optional[Destination]]  # every row -> its destination (None: skipped), for the next prepare
    replaced: list  # (new, old) destinations of changed rows: health carried (again at commit if it changed)
    named: list[Destination]  # destinations whose host is a name
    resolved: dict[str, Optional[str]]  # their names -> IP (None: did not resolve)
    ips: frozenset[str]  # every destination's IP, disabled ones included
    gone_ips: frozenset[str]  # IPs of the table before that are not in this one
    epoch: int  # Dispatcher.epoch when it was prepared
    warnings: list[str]
    # the tables this load replaces: the loop only drops its references at commit,
    # the DB thread frees them when the next prepare drops this load (see _dismantle)
    retired: tuple = ()


EMPTY_LOAD = PreparedLoad({}, {}, {}, [], [], {}, frozenset(), frozenset(), 0, [])


def _dismantle(load: PreparedLoad) -> None:
    """Free a load that is over one entry at a time.  Dropped at once, its
    30,000 objects are one C-level cascade of deallocations that holds the GIL,
    and so the SIP loop, for tens of milliseconds; one entry per step lets the
    loop in between (objects still in use keep their other references)."""
    for table in (load.by_raw, *load.retired):
        while table:
            table.popitem()
    while load.replaced:
        load.replaced.pop()


def _carry_health(dest: Destination, old: Destination) -> None:
    """A changed row's new object takes on the old one's health: the state when
    the `flags` column is the same (a changed one is an operator's decision and
    resets it; so does a change of a row held by set-state), and its last ping."""
    dest.last_ping, dest.last_code, dest.rtt = old.last_ping, old.last_code, old.rtt
    if old.db_flags == dest.db_flags and not old.pinned:
        dest.flags, dest.probing_count = old.flags, old.probing_count


class Dispatcher:
    """All destination sets; see the module docstring for the semantics."""

    def __init__(self, settings: DispatcherSettings, rng: Optional[random.Random] = None):
        self.settings = settings
        self._rng = rng if rng is not None else random.Random()
        # weight tables are shuffled while a reload is prepared, possibly in another thread
        self._weight_rng = random.Random(self._rng.getrandbits(64))
        self._sets: dict[int, _Set] = {}
        self._by_key: dict[tuple[int, str], Destination] = {}
        self._previous = EMPTY_LOAD  # the last prepared load: the one in use once committed
        self.epoch = 0  # counts the changes of destinations' health, for reloads prepared meanwhile
        self._ips: frozenset[str] = frozenset()  # every destination's IP
        self._departed: dict[str, float] = {}  # IP of a removed destination -> until when it still counts
        unknown = sorted({settings.algorithm, *settings.set_algorithms.values()} - ALGORITHMS)
        # select() treats these as 8 (Kamailio: "algo not implemented - using first entry")
        self.settings_warnings = ["dispatcher algorithm %d is not supported: using the first selectable destination (8)" % alg for alg in unknown]

    # -- loading -----------------------------------------------------------

    def load(self, rows: Iterable[Row]) -> list[str]:
        """Replace the sets with DB rows (setid, destination, flags, priority, attrs)
        in DB order; returns one warning line per newly skipped row."""
        prepared = self.prepare(rows)
        self.commit(prepared)
        return prepared.warnings

    def prepare(self, rows: Iterable[Row], resolve=None) -> "PreparedLoad":
        """The new sets, computed without touching the ones in use, so that a
        reload can be prepared in another thread while the current table routes.

        A row seen unchanged at the previous prepare keeps its Destination object
        (no parsing, state and counters untouched), and a set whose members are
        the same objects in the same order keeps its _Set: a reload costs what
        changed.  Only the DB thread calls this (one prepare at a time, each
        followed by its commit in order, so the previous prepare's table is the
        one in use when this one is committed).  `resolve(name)` -> IP or None
        looks up the destinations' host names (in that thread: never per request).
        """
        warnings: list[str] = []
        by_raw: dict[Row, Optional[Destination]] = {}
        by_key: dict[tuple[int, str], Destination] = {}
        loaded: dict[int, list[Destination]] = {}
        previous = self._previous
        epoch = self.epoch  # a state change after this is carried again at commit
        replaced = []
        for row in rows:
            row = tuple(row) if isinstance(row, list) else row
            if row in by_raw:
                dest = by_raw[row]
            elif row in previous.by_raw:
                dest = by_raw[row] = previous.by_raw[row]
            else:
                dest = by_raw[row] = self._make_destination(row, warnings)
                old = previous.by_key.get((dest.setid, dest.uri)) if dest is not None else None
                if old is not None:  # a changed row: its counts and health state go on
                    dest.counts = old.counts
                    _carry_health(dest, old)
                    replaced.append((dest, old))
            if dest is None:
                continue
            key = (dest.setid, dest.uri)
            if key in by_key:
                warnings.append("dispatcher: set %d: duplicate destination %s skipped" % key)
                continue
            by_key[key] = dest
            loaded.setdefault(dest.setid, []).append(dest)
        sets: dict[int, _Set] = {}
        for setid, members in loaded.items():
            old_set = previous.sets.get(setid)
            if old_set is not None and old_set.loaded == members:
                sets[setid] = old_set
            else:
                sets[setid] = new_set = self._make_set(setid, members)
                if old_set is not None and old_set.members() == new_set.members():
                    # the same members: round robin goes on from about where it is (the loop
                    # may move it a few calls on before the commit), the weight table stays
                    new_set.last = old_set.last
                    if old_set.weights() == new_set.weights():
                        new_set.wlist, new_set.wlast = old_set.wlist, old_set.wlast
        named = [dest for dest in by_key.values() if dest.named]
        resolved = {name: resolve(name) for name in {dest.host for dest in named}} if resolve else {}
        ips = {dest.address[0] for dest in by_key.values() if dest.address is not None}
        ips.update(ip for ip in resolved.values() if ip is not None)
        prepared = PreparedLoad(sets, by_key, by_raw, replaced, named, resolved, frozenset(ips),
                                previous.ips - ips, epoch, warnings, retired=(previous.sets, previous.by_key))
        self._previous = prepared
        if previous.sets is self._sets and previous is not EMPTY_LOAD:
            # committed: nothing reads its own parts any more (a load not yet committed
            # is left whole, its commit needs them, and it is freed all at once: rare)
            _dismantle(previous)
        return prepared

    def commit(self, prepared: "PreparedLoad", now: float = 0.0) -> None:
        """Put a prepared load in use (on the thread that selects): give named
        destinations their resolved address, carry the health of changed rows
        again if a state changed since the prepare, and swap the tables in.
        Costs the named destinations (and, rarely, the changed rows), not the
        table's size: the tables it replaces are freed later, in the DB thread."""
        for dest in prepared.named:
            ip = prepared.resolved.get(dest.host)
            dest.address = None if ip is None else (ip, dest.port)
        if self.epoch != prepared.epoch:  # health changed while it was prepared (rare): carry it again
            for dest, old in prepared.replaced:
                _carry_health(dest, old)
        if prepared.replaced:
            self.epoch += 1  # a reload prepared before this commit has copied what is carried here
        grace = now + self.settings.removed_grace
        for ip in prepared.gone_ips:
            self._departed[ip] = grace
        if self._departed:
            self._departed = {ip: until for ip, until in self._departed.items() if until > now and ip not in prepared.ips}
        self._sets, self._by_key, self._ips = prepared.sets, prepared.by_key, prepared.ips

    def _make_destination(self, row: Row, warnings: list[str]) -> Optional[Destination]:
        try:
            setid, uri, flags, priority, attrs = _coerce_row(row)
        except (TypeError, ValueError) as exc:
            warnings.append("dispatcher: row %r skipped: bad value (%s)" % (tuple(row) if isinstance(row, (tuple, list)) else row, exc))
            return None
        parsed = parse_destination(uri)
        if parsed is None and len(uri) > 4 and not uri.lower().startswith("sip:"):
            # Kamailio add_dest2list: prepend "sip:" once and retry; the stored URI keeps it
            uri = "sip:" + uri
            parsed = parse_destination(uri)
        if parsed is None:
            warnings.append("dispatcher: set %d: destination %r skipped: not a usable sip: URI" % (setid, row[1]))
            return None
        host, port, transport = parsed
        if transport and transport != "udp":
            warnings.append("destination %s: transport %s is not supported, sending UDP" % (uri, transport))
        ip = ip_literal(host)
        address = None if ip is None else (ip, port)  # a host name is resolved for each load
        return Destination(setid=setid, uri=uri, flags=flags, priority=priority, attrs=attrs, host=host, port=port,
                           weight=_weight(attrs), db_flags=flags, transport=transport, address=address, named=address is None)

    def _make_set(self, setid: int, loaded: list[Destination]) -> _Set:
        # sorted() is stable: ties stay in load order
        dlist = sorted(loaded, key=lambda d: d.priority)
        if self.settings.priority_order == "kamailio":
            dlist.reverse()  # Kamailio's ascending list copied backwards
        dset = _Set(setid, dlist, loaded)
        self._init_weights(dset)
        return dset

    def _init_weights(self, dset: _Set) -> None:
        """dispatch.c dp_init_weights: used only if dlist[0] has a weight."""
        dlist = dset.dlist
        if not dlist[0].weight:
            return  # table stays all zeros: entry 0, then the skip loop
        table: list[int] = []
        for index, dest in enumerate(dlist):
            table.extend([index] * dest.weight)
        del table[WEIGHT_SLOTS:]
        table.extend([len(dlist) - 1] * (WEIGHT_SLOTS - len(table)))  # remainder to the last entry
        self._weight_rng.shuffle(table)
        dset.wlist = table

    # -- selection ---------------------------------------------------------

    def algorithm_for(self, setid: int) -> int:
        return self.settings.set_algorithms.get(setid, self.settings.algorithm)

    def select(self, setid: int, msg: RoutedMessage) -> Optional[Destination]:
        """ds_select_dst: the destination for this request, or None (caller replies 503).

        None when the set is missing, nothing in it is selectable, or the URI
        that a hash algorithm needs has no host.
        """
        dset = self._sets.get(setid)
        if dset is None:
            return None
        dlist = dset.dlist
        n = len(dlist)
        alg = self.algorithm_for(setid)
        round_robin = alg == 4
        if round_robin:
            h = dset.last
            dset.last = (h + 1) % n
        elif alg == 0:
            h = ds_get_hash(_as_bytes(msg.call_id).strip(b" \t\r\n"), None)
        elif alg in (1, 2, 3):
            keys = uri_hash_keys((msg.from_uri, msg.to_uri, msg.ruri)[alg - 1])
            if keys is None:
                return None
            h = ds_get_hash(*keys)
        elif alg == 6:
            h = self._rng.randrange(n)
        elif alg == 9:
            h = dset.wlist[dset.wlast]
            dset.wlast = (dset.wlast + 1) % WEIGHT_SLOTS
        else:  # 8, and unknown algorithms as Kamailio does
            h = 0
        start = i = h % n
        while dlist[i].flags & SKIP:
            i = (i + 1) % n
            if i == start:
                return None
        if round_robin:
            dset.last = (i + 1) % n  # the next call starts after the node really used
        return dlist[i]

    def next_destination(self, setid: int, tried: list[Destination]) -> Optional[Destination]:
        """Failover (Kamailio's ds_next_dst): the next selectable destination of
        the set in array order after the last one tried, never one tried before."""
        dset = self._sets.get(setid)
        if dset is None or not tried:
            return None
        dlist = dset.dlist
        last = tried[-1]
        start = next((i for i, d in enumerate(dlist) if d.uri == last.uri), -1) + 1
        uris = {d.uri for d in tried}
        for step in range(len(dlist)):
            dest = dlist[(start + step) % len(dlist)]
            if not dest.flags & SKIP and dest.uri not in uris:
                return dest
        return None

    def may_relay(self, src_ip: str, target_ip: str, now: float) -> bool:
        """docs/design.md decision 13: an in-dialog request from a backend may go
        anywhere its dialog says; one from anyone else only to a backend.  A
        backend is an IP of any destination row, disabled ones included, or of
        one removed less than `removed_grace` seconds ago (its calls still end)."""
        ips, departed = self._ips, self._departed
        return (src_ip in ips or target_ip in ips
                or departed.get(src_ip, 0.0) > now or departed.get(target_ip, 0.0) > now)

    # -- listing -----------------------------------------------------------

    def set_ids(self) -> list[int]:
        return sorted(self._sets)

    def destinations(self) -> list[Destination]:
        """Every destination, sets by ascending id, each in array order."""
        return [d for setid in sorted(self._sets) for d in self._sets[setid].dlist]

    def ping_targets(self) -> list[Destination]:
        """Destinations to ping this round (Kamailio ds_probing_mode=1)."""
        return [d for d in self.destinations() if not d.flags & NO_PING]

    def find(self, setid: int, uri: str) -> Optional[Destination]:
        return self._by_key.get((setid, uri))

    def snapshot(self) -> list[dict]:
        """Per set and per destination state (for `sipedge ctl list`)."""
        return [{
            "setid": setid,
            "algorithm": self.algorithm_for(setid),
            "destinations": [{
                "index": index, "uri": d.uri, "state": d.state, "flags": d.flags, "priority": d.priority,
                "attrs": d.attrs, "weight": d.weight, "probing_count": d.probing_count,
                "status": d.status, "probing": bool(d.flags & PROBING), "pinned": d.pinned,
                "last_ping": d.last_ping, "last_code": d.last_code, "rtt": d.rtt, "calls": d.calls, "failures": d.failures,
            } for index, d in enumerate(self._sets[setid].dlist)],
        } for setid in sorted(self._sets)]

    # -- state -------------------------------------------------------------

    def set_state(self, setid: int, uri: str, state: int, pin: bool = False) -> bool:
        """Admin hook (RPC dispatcher.set_state): set the state bits 1|2|4|8.

        Like Kamailio: no event, the probe counter is kept.  With `pin` the
        state holds: keep-alives leave it alone until the row changes in the
        DB (or the edge restarts).  False if unknown.
        """
        dest = self._by_key.get((setid, uri))
        if dest is None:
            return False
        dest.flags = (dest.flags & ~(HEALTH_BITS | DISABLED)) | (state & (HEALTH_BITS | DISABLED))
        dest.pinned = pin
        self.epoch += 1
        return True

    def overrides(self) -> list[list]:
        """[setid, uri, flags] of every destination whose state is not its
        `flags` column: what another process needs to share this view."""
        return [[d.setid, d.uri, d.flags] for d in self._by_key.values() if d.flags != d.db_flags]

    def apply_states(self, states: list) -> None:
        """Take the states another process decided (see overrides): it sends
        every change, and after a reload its overrides, so this costs what is
        listed, never the table's size."""
        for setid, uri, flags in states:
            dest = self._by_key.get((setid, uri))
            if dest is not None:
                dest.flags = flags
        self.epoch += 1
