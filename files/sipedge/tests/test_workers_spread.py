"""How SO_REUSEPORT workers share the listening port (net.spread_by_source):
each source goes to worker (address + port) mod workers, always the same one,
so a few peers on consecutive addresses are spread evenly.  Real sockets on
loopback; the kernel runs the BPF program."""

import ipaddress
import select
import socket

import pytest

from sipedge.net import spread_by_source, udp_socket


def group(v6, workers):
    """`workers` sockets sharing one port, the program attached, in join order."""
    host = "::1" if v6 else "127.0.0.1"
    socks = [udp_socket(v6, reuseport=True)]
    socks[0].bind((host, 0))
    for _extra in range(workers - 1):
        socks.append(udp_socket(v6, reuseport=True))
        socks[-1].bind((host, socks[0].getsockname()[1]))
    for sock in socks:
        spread_by_source(sock, workers, v6)
    return socks


def receivers(socks, sources):
    """{source address: the indexes of the sockets its datagrams reached}."""
    target = socks[0].getsockname()[:2]
    for sender in sources:
        for _copy in range(3):
            sender.sendto(b"OPTIONS", target)
    reached, expected = {}, 3 * len(sources)
    while expected:
        readable = select.select(socks, [], [], 2.0)[0]
        assert readable, "datagrams lost: %r" % reached
        for sock in readable:
            _data, src = sock.recvfrom(100)
            reached.setdefault(src[:2], set()).add(socks.index(sock))
            expected -= 1
    return reached


def rule(source, workers):
    address, port = source
    low32 = int(ipaddress.ip_address(address)) & 0xffffffff
    return (low32 + port) % workers


@pytest.mark.parametrize("v6", [False, True])
def test_each_source_reaches_worker_address_plus_port_mod_workers(v6):
    socks = group(v6, 3)
    senders = []
    try:
        for i in range(12):
            sender = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_DGRAM)
            sender.bind(("::1", 0) if v6 else ("127.0.88.%d" % (21 + i % 6), 0))
            senders.append(sender)
        reached = receivers(socks, senders)
        assert len(reached) == 12
        for source, indexes in reached.items():
            assert indexes == {rule(source, 3)}, source
    finally:
        for sock in socks + senders:
            sock.close()


def test_consecutive_peers_on_one_port_are_spread_evenly():
    socks = group(False, 2)
    senders = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _peer in range(4)]
    try:
        senders[0].bind(("127.0.88.21", 0))
        port = senders[0].getsockname()[1]
        for i, sender in enumerate(senders[1:], start=22):
            sender.bind(("127.0.88.%d" % i, port))
        per_worker = [0, 0]
        for indexes in receivers(socks, senders).values():
            (index,) = indexes
            per_worker[index] += 1
        assert per_worker == [2, 2]
    finally:
        for sock in socks + senders:
            sock.close()
