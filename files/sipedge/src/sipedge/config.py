"""The router's configuration: one TOML file, validated at start.

Every key is optional and defaults to the seed's value.  A bad key or value
raises `ConfigError` whose message names the key and the value, so that both
`sipedge run` and `sipedge check-config` (used by Ansible's `validate:`) can
print one clear line.
"""

import ipaddress
import tomllib
from dataclasses import dataclass, field

from .dispatcher import ALGORITHMS as _ALGORITHMS, PRIORITY_ORDERS
from .uri import split_hostport

ALGORITHMS = tuple(sorted(_ALGORITHMS))

LOG_LEVELS = ("debug", "info", "notice", "warning", "error")
SEED_METHODS = ("REGISTER", "INVITE", "ACK", "BYE", "CANCEL", "OPTIONS")
SEED_SCANNERS = ("sipvicious", "friendly-scanner", "sipcli", "nmap")


class ConfigError(Exception):
    """A configuration value is wrong; the message names it."""


@dataclass(frozen=True)
class Listen:
    """One socket to listen on."""

    proto: str
    host: str
    port: int

    @property
    def family_v6(self):
        return ":" in self.host

    def __str__(self):
        host = "[%s]" % self.host if self.family_v6 else self.host
        return "%s:%s:%d" % (self.proto, host, self.port)


@dataclass(frozen=True)
class Config:
    """Validated settings (times in seconds)."""

    listen: tuple = (Listen("udp", "0.0.0.0", 5060),)
    advertised_address: str = ""
    workers: int = 1
    max_forwards: int = 10
    max_forwards_limit: int = 70
    scanner_user_agents: tuple = SEED_SCANNERS
    allowed_methods: tuple = SEED_METHODS
    options_answer_networks: tuple = ()
    overload_delay: float = 0.02
    drain_timeout: float = 5.0
    fr_timer: float = 5.0
    fr_inv_timer: float = 30.0
    max_inv_lifetime: float = 180.0
    t1: float = 0.5
    t2: float = 4.0
    algorithm: int = 4
    set_algorithms: dict = field(default_factory=dict)
    priority_order: str = "lowest-first"
    ping_interval: float = 30.0
    ping_timeout: float = 5.0  # when not set: fr_timer, as Kamailio pings through tm
    ping_method: str = "OPTIONS"
    ping_from: str = "sip:sipedge@localhost"
    ping_reply_codes: frozenset = frozenset()
    probing_threshold: int = 2
    inactive_threshold: int = 2
    failover: bool = True
    failover_attempts: int = 2
    failover_codes: frozenset = frozenset((500, 502, 503, 504))
    removed_grace: float = 14400.0
    db_path: str = "/var/lib/sipedge/routing.db"
    db_poll_interval: float = 0.5
    log_level: str = "info"
    control_socket: str = "/run/sipedge/sipedge.sock"
    admin_listen: str = ""
    admin_htpasswd: str = "/etc/sipedge/admin.htpasswd"


def parse_listen(text):
    """'udp:ADDR:PORT' (IPv6 as 'udp:[ADDR]:PORT') -> Listen."""
    proto, _sep, rest = text.partition(":")
    if proto != "udp":
        raise ValueError("only udp is supported")
    if rest.startswith("["):
        host, _sep, port = rest[1:].partition("]:")
    else:
        host, _sep, port = rest.rpartition(":")
    ipaddress.ip_address(host)
    if not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port (tests)
        raise ValueError("bad port")
    return Listen(proto, host, int(port))


class _Reader:
    """Takes typed values out of one TOML table and rejects unknown keys."""

    def __init__(self, data, section):
        if not isinstance(data, dict):
            raise ConfigError("[%s]: must be a table (got %r)" % (section, data))
        self.data, self.section, self.used = data, section, set()

    def fail(self, key, what):
        raise ConfigError("%s.%s: %s (got %r)" % (self.section, key, what, self.data.get(key)))

    def get(self, key, kind, default):
        self.used.add(key)
        if key not in self.data:
            return default
        value = self.data[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            self.fail(key, "must be of type %s" % kind.__name__)
        return value

    def number(self, key, default, low, high=None, kind=float):
        value = self.get(key, kind, default)
        if value < low or (high is not None and value > high):
            bound = ">= %s" % low if high is None else "between %s and %s" % (low, high)
            self.fail(key, "must be %s" % bound)
        return value

    def strings(self, key, default):
        value = self.get(key, list, list(default))
        if not all(isinstance(v, str) and v for v in value):
            self.fail(key, "must be a list of non-empty strings")
        return tuple(value)

    def choice(self, key, default, choices):
        value = self.get(key, str, default)
        if value not in choices:
            self.fail(key, "must be one of %s" % ", ".join(choices))
        return value

    def finish(self):
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError("%s.%s: unknown setting" % (self.section, unknown[0]))


def _sip(r, d):
    out = {}
    listen = r.strings("listen", [str(x) for x in d.listen])
    if not listen:
        r.fail("listen", "needs at least one address")
    try:
        out["listen"] = tuple(parse_listen(x) for x in listen)
    except ValueError:
        r.fail("listen", "each entry must be udp:IP:PORT (IPv6 as udp:[IP]:PORT)")
    out["advertised_address"] = r.get("advertised_address", str, d.advertised_address)
    if out["advertised_address"] and split_hostport(out["advertised_address"].encode()) is None:
        r.fail("advertised_address", "must be a host, host:port, [IPv6] or [IPv6]:port")
    out["workers"] = r.number("workers", d.workers, 1, 64, int)
    out["max_forwards"] = r.number("max_forwards", d.max_forwards, 0, 255, int)
    out["max_forwards_limit"] = r.number("max_forwards_limit", d.max_forwards_limit, 0, 255, int)
    out["scanner_user_agents"] = tuple(s.lower() for s in r.strings("scanner_user_agents", d.scanner_user_agents))
    methods = r.strings("allowed_methods", d.allowed_methods)
    if any(m != m.upper() or not m.isalpha() for m in methods):
        r.fail("allowed_methods", "must be upper-case method names")
    out["allowed_methods"] = methods
    try:
        out["options_answer_networks"] = tuple(
            ipaddress.ip_network(n, strict=False) for n in r.strings("options_answer_networks", ()))
    except ValueError:
        r.fail("options_answer_networks", "each entry must be an IP network in CIDR form")
    out["overload_delay"] = r.number("overload_delay", d.overload_delay, 0, 10)
    out["drain_timeout"] = r.number("drain_timeout", d.drain_timeout, 0, 300)
    return out


def _timers(r, d):
    out = {key: r.number(key, getattr(d, key), 0.001) for key in ("fr_timer", "fr_inv_timer", "max_inv_lifetime", "t1", "t2")}
    if out["t2"] < out["t1"]:
        r.fail("t2", "must be >= t1")
    return out


def _dispatcher(r, d):
    out = {"algorithm": r.get("algorithm", int, d.algorithm)}
    if out["algorithm"] not in ALGORITHMS:
        r.fail("algorithm", "must be one of %s" % ", ".join(map(str, ALGORITHMS)))
    per_set = r.get("set_algorithms", dict, {})
    try:
        out["set_algorithms"] = {int(k): v for k, v in per_set.items()}
    except ValueError:
        r.fail("set_algorithms", "keys must be set ids")
    if not all(isinstance(v, int) and v in ALGORITHMS for v in out["set_algorithms"].values()):
        r.fail("set_algorithms", "values must be one of %s" % ", ".join(map(str, ALGORITHMS)))
    out["priority_order"] = r.choice("priority_order", d.priority_order, PRIORITY_ORDERS)
    out["ping_interval"] = r.number("ping_interval", d.ping_interval, 0)
    out["ping_timeout"] = r.number("ping_timeout", None, 0.001) if "ping_timeout" in r.data else None
    out["ping_method"] = r.get("ping_method", str, d.ping_method)
    if not out["ping_method"].isalpha() or out["ping_method"] != out["ping_method"].upper():
        r.fail("ping_method", "must be an upper-case method name")
    out["ping_from"] = r.get("ping_from", str, d.ping_from)
    if not out["ping_from"].startswith(("sip:", "sips:")) or " " in out["ping_from"]:
        r.fail("ping_from", "must be a sip: URI")
    codes = r.get("ping_reply_codes", list, [])
    if not all(isinstance(c, int) and 100 <= c <= 699 for c in codes):
        r.fail("ping_reply_codes", "must be a list of SIP status codes")
    out["ping_reply_codes"] = frozenset(codes)
    out["probing_threshold"] = r.number("probing_threshold", d.probing_threshold, 1, None, int)
    out["inactive_threshold"] = r.number("inactive_threshold", d.inactive_threshold, 1, None, int)
    out["failover"] = r.get("failover", bool, d.failover)
    out["failover_attempts"] = r.number("failover_attempts", d.failover_attempts, 0, 16, int)
    codes = r.get("failover_codes", list, sorted(d.failover_codes))
    if not all(isinstance(c, int) and not isinstance(c, bool) and 300 <= c <= 699 for c in codes):
        r.fail("failover_codes", "must be a list of final SIP status codes (300-699)")
    out["failover_codes"] = frozenset(codes)
    out["removed_grace"] = r.number("removed_grace", d.removed_grace, 0)
    return out


def _database(r, d):
    path = r.get("path", str, d.db_path)
    if not path:
        r.fail("path", "must not be empty")
    return {"db_path": path, "db_poll_interval": r.number("poll_interval", d.db_poll_interval, 0.05, 60)}


def _log(r, d):
    return {"log_level": r.choice("level", d.log_level, LOG_LEVELS)}


def _control(r, d):
    path = r.get("socket", str, d.control_socket)
    if path and not path.startswith("/"):
        r.fail("socket", "must be an absolute path, or empty to disable")
    return {"control_socket": path}


def _admin(r, d):
    listen = r.get("listen", str, d.admin_listen)
    if listen:
        parts = split_hostport(listen.encode())
        if parts is None or parts[1] is None:
            r.fail("listen", "must be HOST:PORT or [IPv6]:PORT, or empty to disable the admin endpoint")
    path = r.get("htpasswd", str, d.admin_htpasswd)
    if listen and not path.startswith("/"):
        r.fail("htpasswd", "must be an absolute path")
    return {"admin_listen": listen, "admin_htpasswd": path}


SECTIONS = {"sip": _sip, "timers": _timers, "dispatcher": _dispatcher, "database": _database, "log": _log,
            "control": _control, "admin": _admin}


def from_dict(data):
    """Build a Config from parsed TOML, validating every key."""
    defaults, values = Config(), {}
    unknown = sorted(set(data) - set(SECTIONS))
    if unknown:
        raise ConfigError("%s: unknown section" % unknown[0])
    for section, build in SECTIONS.items():
        reader = _Reader(data.get(section, {}), section)
        values.update(build(reader, defaults))
        reader.finish()
    if values["ping_timeout"] is None:
        values["ping_timeout"] = values["fr_timer"]
    return Config(**values)


def load(path):
    """Read and validate a TOML config file."""
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError("cannot read config: %s" % exc.strerror) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("not valid TOML: %s" % exc) from exc
    return from_dict(data)
