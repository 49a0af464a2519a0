"""Loopback sockets for tests: free ports, bound-port checks, and a network
namespace that has nothing but loopback."""
from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import threading

from .procs import poll

CLONE_NEWNET = 0x40000000
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1


def free_udp_port(host: str) -> int:
    """A UDP port nothing holds on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def udp_free(host: str, port: int) -> bool:
    """True when UDP ``host:port`` can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


def udp_bound(host: str, port: int) -> bool:
    """True when some process holds UDP ``host:port`` (read from /proc/net/udp)."""
    want = "%08X:%04X" % (int.from_bytes(socket.inet_aton(host), "little"), port)
    with open("/proc/net/udp", encoding="ascii") as f:
        return any(line.split()[1] == want for line in f.readlines()[1:])


def wait_udp_bound(host: str, port: int, proc, timeout: float, what: str) -> None:
    """Wait until ``proc`` (or anyone) holds UDP ``host:port``; raise if it exits first."""
    def bound():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before binding {host}:{port}")
        return udp_bound(host, port)
    if not poll(bound, timeout):
        raise RuntimeError(f"{what} did not bind udp {host}:{port} within {timeout} s")


def run_in_loopback_namespace(function, timeout: float):
    """Run ``function()`` in a thread that has a network namespace of its own with only
    ``lo`` up, and return its result (or raise its exception).

    Sockets the thread opens and processes it starts belong to that namespace, so
    nothing they send can leave the machine (a send elsewhere fails with
    ENETUNREACH, a DNS lookup fails at once); the rest of this process is not moved.
    Needs CAP_SYS_ADMIN (root, as on the project's machines and in CI).
    """
    outcome: dict = {}

    def body():
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise RuntimeError(f"unshare(CLONE_NEWNET) failed: {os.strerror(err)}; a network "
                                   "namespace of its own needs root (CAP_SYS_ADMIN)")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                ifreq = struct.pack("16sH14x", b"lo", 0)
                flags = struct.unpack("16sH14x", fcntl.ioctl(s, SIOCGIFFLAGS, ifreq))[1]
                fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))
            outcome["result"] = function()
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    thread = threading.Thread(target=body, name="loopback-namespace", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"the run in the loopback namespace did not end within {timeout} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
