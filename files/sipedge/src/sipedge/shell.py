"""The shell: sockets, the clock, timers and the routing DB reader.

It holds no SIP logic.  One thread runs an epoll loop: datagrams are read in
batches from non-blocking sockets (one wake-up serves up to `BATCH`
datagrams) and handed to the core with the monotonic time, and epoll's
timeout is the core's next deadline.  The loop is hand-written rather than
asyncio because per wake-up it costs a fraction of asyncio's machinery, and
wake-ups are what a busy edge is made of (asyncio's loop took about a fifth of
the CPU per call in `make bench`).  Slow work runs in threads that hand
their results to the loop through a queue and a wake-up pipe: the routing DB
poll (a slow or locked DB never blocks routing; a failed read keeps the last
good table) and the `sipedge ctl` control socket.
"""

import fcntl
import gc
import ipaddress
import json
import logging
import os
import queue
import select
import signal
import socket
import struct
import threading
import time

from .proxy import Proxy
from .uri import hostport, split_hostport
from .store import RoutingStore, StoreError

log = logging.getLogger("sipedge")
BATCH = 64
RECV_SIZE = 65535
SO_TIMESTAMP = 29  # Linux: the kernel's receive time of each datagram (struct timeval)
_TIMESTAMP_SPACE = socket.CMSG_SPACE(16)
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


def interface_ipv6(if_inet6="/proc/self/net/if_inet6", ipv6_route="/proc/self/net/ipv6_route"):
    """Every IPv6 address of the host as (address, global) pairs, the global
    ones of the default route's interface first (from /proc: no netlink)."""
    try:
        with open(if_inet6, encoding="ascii") as handle:
            rows = [line.split() for line in handle.read().splitlines()]
    except OSError:
        rows = []
    try:
        with open(ipv6_route, encoding="ascii") as handle:
            default = [r[9] for r in (line.split() for line in handle) if len(r) > 9 and r[0] == "0" * 32 and r[1] == "00"]
    except OSError:
        default = []
    found = []
    for row in rows:
        if len(row) < 6:
            continue
        address = str(ipaddress.IPv6Address(bytes.fromhex(row[0])))
        usable = not int(row[4], 16) & 0x68  # not deprecated, tentative or failed
        found.append((row[5] not in default, address, row[3] == "00" and usable))
    found.sort(key=lambda item: item[0])  # stable: the default route's interface first
    return [(address, is_global) for _other, address, is_global in found]


class StartupError(Exception):
    """The edge cannot start as configured; the message says what to change."""


def advertised(config, sock_host, port, v4=interface_ipv4, v6=interface_ipv6):
    """host[:port] bytes for our Via and Record-Route, never a wildcard
    address.  A configured address without a port takes the socket's, so that
    Via, Record-Route and the edge's notion of itself always agree."""
    if config.advertised_address:
        host, given = split_hostport(config.advertised_address.encode())
        return hostport(host, given or port)
    host = sock_host
    if ipaddress.ip_address(host).is_unspecified:
        if ":" in host:
            candidates = [address for address, is_global in v6() if is_global]
            if not candidates:
                raise StartupError("sip.listen %s: this host has no global IPv6 address to advertise; "
                                   "set sip.advertised_address" % config.listen[0])
        else:
            candidates = v4() or ["127.0.0.1"]
        host = candidates[0]
    return hostport(host.encode(), port)


def names_of_self(socks, local, v4=interface_ipv4, v6=interface_ipv6):
    """(host, port) pairs that name this edge in Route and R-URI headers."""
    myself = set()
    adv_host, adv_port = split_hostport(local)
    for listen, sock in socks:
        port = sock.getsockname()[1]
        hosts = [listen.host]
        if ipaddress.ip_address(listen.host).is_unspecified:
            hosts = [address for address, _global in v6()] if listen.family_v6 else v4() + ["127.0.0.1"]
        myself.update((host.encode(), port) for host in hosts)
        myself.add((adv_host.strip(b"[]"), adv_port or port))
    return myself


def resolve(host):
    """A destination's host name -> IPv4 address, or None; called for each load
    in the DB thread, never per request (DESIGN.md decision 11)."""
    try:
        return socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
    except OSError:
        log.error("cannot resolve destination host %s", host)
        return None


def _udp_socket(v6, reuseport):
    sock = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
    if v6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    if reuseport:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Bursts queue instead of being dropped: with the 208 KB default the kernel
    # dropped enough at 4000 calls/s in `make bench` to fail 1.5% of the calls.
    # (Capped by net.core.rmem_max.)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)  # for the overload judgement
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
                Edge(config, reuseport=True).serve()
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
    """Runs one Proxy on the configured sockets until SIGTERM or SIGINT.

    With `reuseport` (one of several worker processes) the listening sockets
    are shared with the other workers through SO_REUSEPORT, which keeps each
    source address on one worker, and requests go downstream from a socket of
    this worker's own, named in our Via, so their responses come back here.
    """

    def __init__(self, config, reuseport=False):
        self.config = config
        self.reuseport = reuseport
        self.socks = []  # (Listen, socket) of the listening sockets
        self.readers = {}  # fd -> every socket this process reads
        self.reply_socks = {}  # family is IPv6 -> socket replies leave from
        self.send_socks = {}  # family is IPv6 -> socket requests are relayed from
        self.proxy = None
        self.store = RoutingStore(config.db_path)
        self.stopping = threading.Event()
        self._posted = queue.SimpleQueue()  # (function, args) handed over by threads
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._store_error = None
        self.overloaded = False

    def bind(self):
        for listen in self.config.listen:
            sock = _udp_socket(listen.family_v6, self.reuseport)
            sock.bind((listen.host, listen.port))
            self.socks.append((listen, sock))
            self.readers[sock.fileno()] = sock
            if listen.family_v6 not in self.reply_socks:
                self.reply_socks[listen.family_v6] = self.send_socks[listen.family_v6] = sock
                if self.reuseport:
                    own = _udp_socket(listen.family_v6, False)
                    own.bind((listen.host, 0))
                    self.send_socks[listen.family_v6] = own
                    self.readers[own.fileno()] = own
        for sock in self.readers.values():
            sock.setblocking(False)

    def send(self, data, addr):
        # Replies leave from the port their requests came to, requests from ours.
        sock = (self.reply_socks if data[:4] == b"SIP/" else self.send_socks).get(":" in addr[0])
        if sock is None:
            log.debug("no socket for the address family of %s", addr[0])
            return
        try:
            sock.sendto(data, addr)
        except Exception as exc:  # pylint: disable=broad-except
            # OSError, and whatever else sendto raises for an address the core
            # should not have produced: a send costs one datagram, never state.
            log.debug("send to %r failed: %s", addr, exc)

    def _readable(self, sock, now):
        on_datagram = self.proxy.on_datagram
        overloaded = self.overloaded
        for i in range(BATCH):
            try:
                if i == 0 and self.config.overload_delay:
                    # The first datagram of a wake-up is the one that waited longest.
                    data, ancillary, _flags, src = sock.recvmsg(RECV_SIZE, _TIMESTAMP_SPACE)
                    overloaded = self._judge(ancillary)
                else:
                    data, src = sock.recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP port unreachable surfacing on Linux
                log.debug("receive error: %s", exc)
                continue
            try:
                on_datagram(data, src[:2], now, overloaded)
            except Exception:  # pylint: disable=broad-except
                # A bug must cost one message, never the router.
                log.exception("internal error on a datagram from %s", src[0])

    def _judge(self, ancillary):
        """Behind or not (DESIGN.md decision 16): how long the oldest waiting
        datagram sat in the kernel's queue, with hysteresis (in above the
        limit, out below a quarter of it) so that the edge does not flap."""
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= 16:
                seconds, micros = struct.unpack("qq", data[:16])
                delay = time.time() - seconds - micros / 1e6
                limit = self.config.overload_delay
                if delay > limit and not self.overloaded:
                    log.warning("overloaded: datagrams wait %.0f ms; new INVITEs get 503 until it drains", delay * 1000)
                    self.overloaded = True
                elif delay < limit / 4 and self.overloaded:
                    log.warning("overload over: datagrams wait %.0f ms", delay * 1000)
                    self.overloaded = False
        return self.overloaded

    # ---- work handed over by threads -----------------------------------------
    def post(self, function, *args):
        """Run `function(*args)` on the loop's thread (callable from any thread)."""
        self._posted.put((function, args))
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake anyway

    def _run_posted(self):
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                function, args = self._posted.get_nowait()
            except queue.Empty:
                return
            function(*args)

    def _poll_db(self):
        """DB thread: look for changes every poll_interval, resolve names, post."""
        while not self.stopping.wait(self.config.db_poll_interval):
            try:
                data = self.store.poll()
            except StoreError as exc:
                self.post(self._store_failed, str(exc))
                continue
            if data is not None:
                # the new table is built here, off the loop, which only swaps it in
                self.post(self._load, data, self.proxy.prepare(data, resolve), True)
            elif self._store_error is not None:
                self.post(self._store_failed, None)

    def _store_failed(self, error):
        if error is None:
            log.info("routing DB readable again")
        elif error != self._store_error:
            log.error("routing DB unreadable, keeping the last good table: %s", error)
        self._store_error = error

    def _load(self, data, prepared, reloaded=False):
        self.proxy.commit(prepared, time.monotonic())
        self._store_error = None
        if reloaded:
            log.info("routing data reloaded: %d domains, %d destinations", len(data.domains), len(data.destinations))

    # ---- sipedge ctl ------------------------------------------------------------
    def _answer(self, command, answers):
        if command == "stats":
            body = dict(self.proxy.stats(), pid=os.getpid())
        elif command == "dispatcher":
            body = self.proxy.dispatcher.snapshot()
        else:
            body = {"error": "unknown command %r (stats, dispatcher)" % command}
        answers.put(body)

    def _control(self, server):
        """Control thread: one command line in, one JSON document out, per
        connection; the answer is computed on the loop's thread."""
        while not self.stopping.is_set():
            try:
                conn, _addr = server.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # closed at shutdown
            with conn:
                try:
                    conn.settimeout(2.0)
                    command = conn.makefile("rb").readline(256).decode("ascii", "replace").strip()
                    answers = queue.SimpleQueue()
                    self.post(self._answer, command, answers)
                    conn.sendall(json.dumps(answers.get(timeout=5.0)).encode() + b"\n")
                except (OSError, queue.Empty):
                    continue

    def _start_control(self):
        """The control socket for `sipedge ctl`; one per worker process."""
        path = self.config.control_socket
        if not path:
            return None, None
        if self.reuseport:
            path = "%s.%d" % (path, os.getpid())
        if os.path.exists(path):
            os.unlink(path)  # left over by a process that is gone
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(path)
        except OSError as exc:
            log.warning("no control socket at %s: %s", path, exc.strerror)
            server.close()
            return None, None
        os.chmod(path, 0o660)
        server.listen(8)
        server.settimeout(0.5)
        threading.Thread(target=self._control, args=(server,), name="control", daemon=True).start()
        return server, path

    # ---- the loop ----------------------------------------------------------------
    def serve(self):
        data = self.store.open()
        self.bind()
        listen, sock = self.socks[0]
        local = advertised(self.config, listen.host, sock.getsockname()[1])
        via_local = None
        if self.reuseport:
            own_port = self.send_socks[listen.family_v6].getsockname()[1]
            via_local = hostport(split_hostport(local)[0], own_port, None)
        myself = names_of_self(self.socks, local)
        myself.update((host, s.getsockname()[1]) for host, _port in list(myself) for s in self.send_socks.values())
        self.proxy = Proxy(self.config, self.send, local, myself, via_local=via_local)
        self._load(data, self.proxy.prepare(data, resolve))
        poller = select.epoll()
        for fd in list(self.readers) + [self._wake_r]:
            poller.register(fd, select.EPOLLIN)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_args: self.stopping.set())
        signal.set_wakeup_fd(self._wake_w)  # a signal wakes epoll up
        log.info("sipedge listening on %s, advertising %s; %d domains, %d destinations",
                 ", ".join(str(listen) for listen, _sock in self.socks), local.decode(),
                 len(data.domains), len(data.destinations))
        control, control_path = self._start_control()
        threading.Thread(target=self._poll_db, name="routing-db", daemon=True).start()
        # The core makes no reference cycles on its hot path (timers and
        # transactions unlink each other when done), so the cyclic GC only
        # costs time: collect rarely, and never walk the start-up objects.
        gc.freeze()
        gc.set_threshold(100_000, 50, 100)
        try:
            self._run(poller)
        finally:
            self.stopping.set()
            signal.set_wakeup_fd(-1)
            poller.close()
            if control is not None:
                control.close()
                os.unlink(control_path)
            for sock in self.readers.values():
                sock.close()
        log.info("sipedge stopped")

    def _run(self, poller):
        proxy, readers, wake = self.proxy, self.readers, self._wake_r
        proxy.start(time.monotonic())
        while not self.stopping.is_set():
            deadline = proxy.next_deadline()
            timeout = -1 if deadline is None else max(0.0, deadline - time.monotonic())
            events = poller.poll(timeout, len(readers) + 1)
            now = time.monotonic()
            for fd, _mask in events:
                if fd == wake:
                    self._run_posted()
                else:
                    self._readable(readers[fd], now)
            if deadline is not None and now >= deadline:
                try:
                    proxy.run_timers(now)
                except Exception:  # pylint: disable=broad-except
                    log.exception("internal error in a timer")
