"""The edge's own addresses and sockets: what it listens on, what it
advertises in Via and Record-Route, what names it, and host-name lookups of
destinations (at load time, never per request).

Interfaces are read from /proc and with ioctls, never through netlink, so this
works under systemd's RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX and
ProcSubset=pid.
"""

import array
import fcntl
import ipaddress
import logging
import os
import socket
import struct

from .uri import hostport, split_hostport

log = logging.getLogger("sipedge")
SIOCGIFADDR = 0x8915
SO_TIMESTAMP = 29  # Linux: the kernel's receive time of each datagram (struct timeval)
TIMESTAMP_SPACE = socket.CMSG_SPACE(16)
IFA_UNUSABLE = 0x08 | 0x20 | 0x40  # IFA_F_DADFAILED, IFA_F_DEPRECATED, IFA_F_TENTATIVE
SO_ATTACH_REUSEPORT_CBPF = 51
SKF_NET_OFF = -0x100000  # classic BPF: offsets from the IP header (the program sees the UDP payload)


class StartupError(Exception):
    """The edge cannot start as configured; the message says what to change."""


def interface_ipv4():
    """IPv4 address of every non-loopback interface, the default route's first.

    Reads /proc/self/net/route and /sys/class/net and asks each interface with
    an AF_INET ioctl."""
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
    """Every IPv6 address of the host as (address, usable global) pairs, the
    default route's interface first."""
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
        usable = row[3] == "00" and not int(row[4], 16) & IFA_UNUSABLE  # scope global, not tentative
        found.append((row[5] not in default, address, usable))
    found.sort(key=lambda item: item[0])  # stable: the default route's interface first
    return [(address, usable) for _other, address, usable in found]


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
            candidates = [address for address, usable in v6() if usable]
            if not candidates:
                raise StartupError("sip.listen %s: this host has no global IPv6 address to advertise; "
                                   "set sip.advertised_address" % config.listen[0])
        else:
            candidates = v4() or ["127.0.0.1"]
        host = candidates[0]
    return hostport(host.encode(), port)


def names_of_self(socks, local, v4=interface_ipv4, v6=interface_ipv6):
    """(host, port) pairs that name this edge in Route and R-URI headers:
    every address of a wildcard listen, and the advertised one."""
    myself = set()
    adv_host, adv_port = split_hostport(local)
    for listen, sock in socks:
        port = sock.getsockname()[1]
        hosts = [listen.host]
        if ipaddress.ip_address(listen.host).is_unspecified:
            hosts = [address for address, _usable in v6()] if listen.family_v6 else v4() + ["127.0.0.1"]
        myself.update((host.encode(), port) for host in hosts)
        myself.add((adv_host.strip(b"[]"), adv_port or port))
    return myself


def resolve(host):
    """A destination's host name -> IPv4 address, or None; called for each load
    in the DB thread, never per request (docs/design.md decision 11)."""
    try:
        return socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_DGRAM)[0][4][0]
    except OSError:
        log.error("cannot resolve destination host %s", host)
        return None


def udp_socket(v6, reuseport=False):
    """A non-blocking UDP socket that timestamps what it receives."""
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
    sock.setblocking(False)
    return sock


def spread_by_source(sock, workers, v6):
    """Hand each datagram of `sock`'s SO_REUSEPORT group to worker number
    (source address + source port) mod `workers`, instead of the kernel's hash
    of the two.  Either way a source always reaches the same worker, where its
    transactions live; but a few peers on consecutive addresses or ports (an
    SBC pool, the callers of `make bench`) are spread evenly, where the hash
    can put three of four on one worker.  A classic BPF program, so no
    privilege is needed; a datagram whose worker is gone falls back to the
    kernel's hash.  For IPv6 the address's last 32 bits count."""
    if v6:
        source = [(0x28, 0, 0, SKF_NET_OFF + 40),  # ld h [net+40]: the port, after the fixed header
                  (0x07, 0, 0, 0),  # tax
                  (0x20, 0, 0, SKF_NET_OFF + 20)]  # ld w [net+20]: the address's last 32 bits
    else:
        source = [(0xb1, 0, 0, SKF_NET_OFF),  # ldx 4*([net+0]&0xf): the header's length
                  (0x48, 0, 0, SKF_NET_OFF),  # ld h [x+net]: the port
                  (0x07, 0, 0, 0),  # tax
                  (0x20, 0, 0, SKF_NET_OFF + 12)]  # ld w [net+12]: the address
    program = source + [
        (0x0c, 0, 0, 0),  # add x
        (0x94, 0, 0, workers),  # mod #workers
        (0x16, 0, 0, 0),  # ret a: the index of the socket in the group
    ]
    code = array.array("B", b"".join(struct.pack("HBBI", op, jt, jf, k & 0xffffffff) for op, jt, jf, k in program))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                        struct.pack("HP", len(program), code.buffer_info()[0]))  # struct sock_fprog
    except OSError as exc:
        log.warning("workers share datagrams by the kernel's hash of their source: %s", exc)


def queue_delay(ancillary, now_wall):
    """Seconds the datagram waited in the kernel's queue, from recvmsg's
    SO_TIMESTAMP ancillary data; None when it is missing."""
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= 16:
            seconds, micros = struct.unpack("qq", data[:16])
            return now_wall - seconds - micros / 1e6
    return None
