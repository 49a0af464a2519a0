"""The asyncio shell: sockets, the clock, timers and the routing DB reader.

It holds no SIP logic.  Datagrams are read in batches from non-blocking
sockets (one wake-up serves up to `BATCH` datagrams), handed to the core with
the loop's monotonic time, and the core's next deadline is kept scheduled.
The routing DB is polled in a worker thread, so a slow or locked DB never
blocks the event loop; a failed read keeps the last good routing table.
"""

import asyncio
import fcntl
import ipaddress
import logging
import signal
import socket
import struct

from .message import parse_uri
from .proxy import Proxy
from .store import RoutingStore, StoreError

log = logging.getLogger("sipedge")
BATCH = 64
RECV_SIZE = 65535
SIOCGIFADDR = 0x8915


def interface_ipv4():
    """IPv4 address of every interface, the default route's first."""
    try:
        with open("/proc/net/route", encoding="ascii") as handle:
            rows = [line.split() for line in handle.read().splitlines()[1:]]
    except OSError:
        rows = []
    default = [r[0] for r in rows if len(r) > 1 and r[1] == "00000000"]
    names = default + [name for _, name in socket.if_nameindex() if name not in default]
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for name in names:
            try:
                packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue
            found.append(socket.inet_ntoa(packed[20:24]))
    return found


def advertised(config, sock_host, port):
    """host[:port] bytes for our Via/Record-Route, never a wildcard address."""
    if config.advertised_address:
        return config.advertised_address.encode()
    host = sock_host
    if ipaddress.ip_address(host).is_unspecified:
        candidates = interface_ipv4() if ":" not in host else []
        host = candidates[0] if candidates else ("::1" if ":" in host else "127.0.0.1")
    if ":" in host:
        host = "[%s]" % host
    return host.encode() if port == 5060 else b"%s:%d" % (host.encode(), port)


def split_hostport(text):
    """b'host', b'host:port', b'[v6]' or b'[v6]:port' -> (host, port or None)."""
    if text.startswith(b"["):
        host, _, rest = text[1:].partition(b"]")
        port = rest[1:]
    elif text.count(b":") == 1:
        host, _, port = text.partition(b":")
    else:
        host, port = text, b""
    return host, int(port) if port.isdigit() else None


def names_of_self(socks, local):
    """(host, port) pairs that name this edge in Route and R-URI headers."""
    myself = set()
    adv_host, adv_port = split_hostport(local)
    for listen, sock in socks:
        port = sock.getsockname()[1]
        hosts = [listen.host]
        if ipaddress.ip_address(listen.host).is_unspecified:
            hosts = interface_ipv4() + ["127.0.0.1"]
        myself.update((host.encode(), port) for host in hosts)
        myself.add((adv_host, adv_port or port))
    return myself


def resolve_names(destinations):
    """Resolve destination host names once, at load time (never per request)."""
    resolved = {}
    for row in destinations:
        uri = parse_uri(row[1].encode("utf-8", "surrogateescape"))
        if uri is None or uri.host.startswith(b"["):
            continue
        host = uri.host.decode("ascii", "replace")
        try:
            ipaddress.ip_address(host)
            continue
        except ValueError:
            pass
        try:
            resolved[host] = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
        except OSError:
            log.error("cannot resolve destination host %s", host)
    return resolved


class Edge:
    """Runs one Proxy on the configured sockets until stopped."""

    def __init__(self, config):
        self.config = config
        self.loop = None
        self.socks = []
        self.proxy = None
        self.store = RoutingStore(config.db_path)
        self._timer = None
        self._timer_at = None
        self._stopped = None
        self._store_error = None

    def bind(self):
        for listen in self.config.listen:
            family = socket.AF_INET6 if listen.family_v6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            sock.bind((listen.host, listen.port))
            sock.setblocking(False)
            self.socks.append((listen, sock))

    def send(self, data, addr):
        v6 = ":" in addr[0]
        for listen, sock in self.socks:
            if listen.family_v6 == v6:
                try:
                    sock.sendto(data, addr)
                except OSError as exc:
                    log.debug("send to %s:%s failed: %s", addr[0], addr[1], exc)
                return
        log.debug("no socket for the address family of %s", addr[0])

    def _readable(self, sock):
        proxy, now = self.proxy, self.loop.time()
        for _ in range(BATCH):
            try:
                data, src = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. ICMP port unreachable surfacing on Linux
                log.debug("receive error: %s", exc)
                continue
            try:
                proxy.on_datagram(data, src[:2], now)
            except Exception:  # pylint: disable=broad-except
                # A bug must cost one message, never the router.
                log.exception("internal error on a datagram from %s", src[0])
        self._schedule()

    def _schedule(self):
        deadline = self.proxy.next_deadline()
        if deadline is None or deadline == self._timer_at:
            return
        if self._timer is not None:
            if self._timer_at <= deadline:
                return
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._fire)

    def _fire(self):
        self._timer = self._timer_at = None
        try:
            self.proxy.run_timers(self.loop.time())
        except Exception:  # pylint: disable=broad-except
            log.exception("internal error in a timer")
        self._schedule()

    async def _poll_db(self):
        while True:
            await asyncio.sleep(self.config.db_poll_interval)
            try:
                data = await self.loop.run_in_executor(None, self.store.poll)
                resolved = None
                if data is not None:
                    resolved = await self.loop.run_in_executor(None, resolve_names, data.destinations)
            except StoreError as exc:
                if str(exc) != self._store_error:
                    log.error("routing DB unreadable, keeping the last good table: %s", exc)
                    self._store_error = str(exc)
                continue
            if self._store_error is not None:
                log.info("routing DB readable again")
                self._store_error = None
            if data is not None:
                self.proxy.load(data, resolved)
                log.info("routing data reloaded: %d domains, %d destinations",
                         len(data.domains), len(data.destinations))
                self._schedule()

    async def serve(self):
        self.loop = asyncio.get_running_loop()
        data = self.store.open()
        self.bind()
        listen, sock = self.socks[0]
        local = advertised(self.config, listen.host, sock.getsockname()[1])
        self.proxy = Proxy(self.config, self.send, local, names_of_self(self.socks, local))
        self.proxy.load(data, await self.loop.run_in_executor(None, resolve_names, data.destinations))
        for _, sock in self.socks:
            self.loop.add_reader(sock.fileno(), self._readable, sock)
        self._stopped = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._stopped.set)
        log.info("sipedge listening on %s, advertising %s; %d domains, %d destinations",
                 ", ".join(str(listen) for listen, _ in self.socks), local.decode(),
                 len(data.domains), len(data.destinations))
        self.proxy.start(self.loop.time())
        self._schedule()
        poller = asyncio.ensure_future(self._poll_db())
        try:
            await self._stopped.wait()
        finally:
            poller.cancel()
            for _, sock in self.socks:
                self.loop.remove_reader(sock.fileno())
                sock.close()
        log.info("sipedge stopped")
