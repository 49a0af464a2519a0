"""The asyncio shell: sockets, the clock, timers and the routing DB reader.

It holds no SIP logic.  Datagrams are read in batches from non-blocking
sockets (one wake-up serves up to `BATCH` datagrams), handed to the core with
the loop's monotonic time, and the core's next deadline is kept scheduled.
The routing DB is polled in a worker thread, so a slow or locked DB never
blocks the event loop; a failed read keeps the last good routing table.
"""

import asyncio
import fcntl
import gc
import ipaddress
import json
import logging
import os
import signal
import socket
import struct

from .proxy import Proxy
from .store import RoutingStore, StoreError

log = logging.getLogger("sipedge")
BATCH = 64
RECV_SIZE = 65535
SIOCGIFADDR = 0x8915


def interface_ipv4():
    """IPv4 address of every non-loopback interface, the default route's first.

    Reads /proc/self/net/route and /sys/class/net and asks each interface with
    an AF_INET ioctl: no netlink socket, so this works under systemd's
    RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX and ProcSubset=pid."""
    try:
        with open("/proc/self/net/route", encoding="ascii") as handle:
            rows = [line.split() for line in handle.read().splitlines()[1:]]
    except OSError:
        rows = []
    default = [row[0] for row in rows if len(row) > 1 and row[1] == "00000000"]
    try:
        others = sorted(os.listdir("/sys/class/net"))
    except OSError:
        others = []
    found = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        for name in default + [n for n in others if n not in default]:
            try:
                packed = fcntl.ioctl(probe.fileno(), SIOCGIFADDR, struct.pack("256s", name[:15].encode()))
            except OSError:
                continue  # no IPv4 address on it
            address = socket.inet_ntoa(packed[20:24])
            if not address.startswith("127.") and address not in found:
                found.append(address)
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
        host, _sep, rest = text[1:].partition(b"]")
        port = rest[1:]
    elif text.count(b":") == 1:
        host, _sep, port = text.partition(b":")
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


def resolve_names(names):
    """Resolve destination host names once per load, in a worker thread
    (never per request, DESIGN.md decision 11)."""
    resolved = {}
    for host in names:
        try:
            resolved[host] = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
        except OSError:
            log.error("cannot resolve destination host %s", host)
    return resolved


def _udp_socket(v6, reuseport):
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    return sock


def run_workers(config):
    """Fork `config.workers` Edge processes sharing the listening ports; stop
    them all on SIGTERM/SIGINT or when one fails.  Returns the exit status."""
    children = []
    for _i in range(config.workers):
        pid = os.fork()
        if pid == 0:
            status = 1
            try:
                asyncio.run(Edge(config, reuseport=True).serve())
                status = 0
            except BaseException:  # pylint: disable=broad-except
                log.exception("worker failed")
            finally:
                os._exit(status)  # pylint: disable=protected-access
        children.append(pid)
    stopping = []

    def stop(*_args):
        stopping.append(True)
        for pid in children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    status = 0
    while children:
        pid, wait_status = os.wait()
        children.remove(pid)
        if os.waitstatus_to_exitcode(wait_status) != 0 and not stopping:
            log.error("worker %d ended with status %d; stopping the others", pid, os.waitstatus_to_exitcode(wait_status))
            status = 1
            stop()
    return status


class Edge:
    """Runs one Proxy on the configured sockets until stopped.

    With `reuseport` (one of several worker processes) the listening sockets
    are shared with the other workers through SO_REUSEPORT, which keeps each
    source address on one worker, and requests go downstream from a socket of
    this worker's own, named in our Via, so their responses come back here.
    """

    def __init__(self, config, reuseport=False):
        self.config = config
        self.reuseport = reuseport
        self.loop = None
        self.socks = []
        self.downstream = {}  # family is IPv6 -> socket requests are relayed from
        self.proxy = None
        self.store = RoutingStore(config.db_path)
        self._timer = None
        self._timer_at = None
        self._stopped = None
        self._store_error = None

    def bind(self):
        for listen in self.config.listen:
            sock = _udp_socket(listen.family_v6, self.reuseport)
            sock.bind((listen.host, listen.port))
            self.socks.append((listen, sock))
            if listen.family_v6 not in self.downstream:
                own = sock
                if self.reuseport:
                    own = _udp_socket(listen.family_v6, False)
                    own.bind((listen.host, 0))
                self.downstream[listen.family_v6] = own

    def readers(self):
        """Every socket this process reads: the listening ones and its own."""
        own = [s for s in self.downstream.values() if self.reuseport]
        return [sock for _i, sock in self.socks] + own

    def send(self, data, addr):
        v6 = ":" in addr[0]
        sock = self.downstream.get(v6)
        if sock is not None and data[:4] == b"SIP/":  # replies leave from the port requests came to
            sock = next((s for listen, s in self.socks if listen.family_v6 == v6), sock)
        if sock is None:
            log.debug("no socket for the address family of %s", addr[0])
            return
        try:
            sock.sendto(data, addr)
        except OSError as exc:
            log.debug("send to %s:%s failed: %s", addr[0], addr[1], exc)

    def _readable(self, sock):
        proxy, now = self.proxy, self.loop.time()
        for _i in range(BATCH):
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

    async def _load(self, data):
        self.proxy.load(data)
        names = self.proxy.host_names()
        if names:
            self.proxy.resolved = await self.loop.run_in_executor(None, resolve_names, names)

    async def _poll_db(self):
        while True:
            await asyncio.sleep(self.config.db_poll_interval)
            try:
                data = await self.loop.run_in_executor(None, self.store.poll)
            except StoreError as exc:
                if str(exc) != self._store_error:
                    log.error("routing DB unreadable, keeping the last good table: %s", exc)
                    self._store_error = str(exc)
                continue
            if self._store_error is not None:
                log.info("routing DB readable again")
                self._store_error = None
            if data is not None:
                await self._load(data)
                log.info("routing data reloaded: %d domains, %d destinations",
                         len(data.domains), len(data.destinations))
                self._schedule()

    async def _control(self, reader, writer):
        """One request per connection: a command line in, one JSON document out."""
        try:
            command = (await asyncio.wait_for(reader.readline(), 2.0)).decode("ascii", "replace").strip()
            if command == "stats":
                body = dict(self.proxy.stats(), pid=os.getpid())
            elif command == "dispatcher":
                body = self.proxy.dispatcher.snapshot()
            else:
                body = {"error": "unknown command %r (stats, dispatcher)" % command}
            writer.write(json.dumps(body).encode() + b"\n")
            await writer.drain()
        except (asyncio.TimeoutError, OSError):
            pass
        finally:
            writer.close()

    async def _start_control(self):
        """The control socket for `sipedge ctl`; one per worker process."""
        path = self.config.control_socket
        if not path:
            return None, None
        if self.reuseport:
            path = "%s.%d" % (path, os.getpid())
        if os.path.exists(path):
            os.unlink(path)  # left over by a process that is gone
        try:
            server = await asyncio.start_unix_server(self._control, path=path)
        except OSError as exc:
            log.warning("no control socket at %s: %s", path, exc.strerror)
            return None, None
        os.chmod(path, 0o660)
        return server, path

    async def serve(self):
        self.loop = asyncio.get_running_loop()
        data = self.store.open()
        self.bind()
        listen, sock = self.socks[0]
        local = advertised(self.config, listen.host, sock.getsockname()[1])
        via_local = None
        if self.reuseport:
            own = self.downstream[listen.family_v6]
            via_local = split_hostport(local)[0]
            via_local = (b"[%s]" % via_local if b":" in via_local else via_local) + b":%d" % own.getsockname()[1]
        myself = names_of_self(self.socks, local)
        myself.update((host, s.getsockname()[1]) for host, _port in list(myself) for s in self.downstream.values())
        self.proxy = Proxy(self.config, self.send, local, myself, via_local=via_local)
        await self._load(data)
        for sock in self.readers():
            sock.setblocking(False)
            self.loop.add_reader(sock.fileno(), self._readable, sock)
        self._stopped = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(signum, self._stopped.set)
        log.info("sipedge listening on %s, advertising %s; %d domains, %d destinations",
                 ", ".join(str(listen) for listen, _sock in self.socks), local.decode(),
                 len(data.domains), len(data.destinations))
        # The core makes no reference cycles on its hot path (timers and
        # transactions unlink each other when done), so the cyclic GC only
        # costs time: collect rarely, and never walk the start-up objects.
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        self.proxy.start(self.loop.time())
        self._schedule()
        poller = asyncio.ensure_future(self._poll_db())
        control, control_path = await self._start_control()
        try:
            await self._stopped.wait()
        finally:
            poller.cancel()
            if control is not None:
                control.close()
                os.unlink(control_path)
            for sock in self.readers():
                self.loop.remove_reader(sock.fileno())
                sock.close()
        log.info("sipedge stopped")
