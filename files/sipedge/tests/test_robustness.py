"""Bad input never raises in the core, never stalls it and leaves no state:
truncations, junk, invalid UTF-8, duplicated and folded headers, huge counts."""

import random

import pytest

from harness import B1, Harness, request, response

SAMPLES = [
    request(b"INVITE", body=b"v=0\r\n"),
    request(b"REGISTER", headers=[b"Contact: <sip:bob@127.0.0.2:5062>;expires=60", b"Expires: 60"]),
    request(b"BYE", to_tag=b"x", headers=[b"Route: <sip:127.0.0.1;lr>"]),
    request(b"CANCEL", cseq=b"1 CANCEL"),
    response(request(b"INVITE", via=b"SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKse00.1, SIP/2.0/UDP 127.0.0.2"), 180),
]


def mutations(rng, data):
    """Deterministic mutants of one message."""
    yield data[:rng.randrange(len(data))]                                   # truncated
    pos = rng.randrange(len(data))
    yield data[:pos] + bytes(rng.randrange(256) for _i in range(rng.randrange(1, 8))) + data[pos:]  # inserted bytes
    pos = rng.randrange(len(data))
    yield data[:pos] + data[pos + rng.randrange(1, 20):]                      # deleted run
    lines = data.split(b"\r\n")
    i = rng.randrange(1, max(2, len(lines) - 2))
    yield b"\r\n".join(lines[:i] + [lines[i]] * rng.randrange(2, 5) + lines[i:])   # duplicated header
    yield b"\r\n".join(lines[:i] + [b" " + lines[i]] + lines[i + 1:])         # folded into the previous one
    yield data.replace(b":", b"", 1)                                         # header without colon
    yield data.replace(b"\r\n", b"\n")                                       # bare LF
    yield data.replace(b"sip:", b"sip:\xff\xfe", 1)                           # invalid UTF-8


def test_mutated_messages_never_raise_and_leave_no_state():
    rng = random.Random(4475)
    edge = Harness()
    count = 0
    for _i in range(60):
        for sample in SAMPLES:
            for mutant in mutations(rng, sample):
                edge.recv(mutant)
                edge.recv(mutant, src=B1)
                count += 2
    edge.advance(120)
    assert count > 4000
    assert edge.live() == (0, 0)


@pytest.mark.parametrize("data", [
    b"",
    b"\r\n",
    bytes(range(256)) * 4,
    b"INVITE sip:a@tenant1.test SIP/2.0\r\n" + b"X-Pad: y\r\n" * 5000 + b"\r\n",
    request(b"INVITE").replace(b"INVITE sip", b"INVITE  sip", 1),
    request(b"INVITE", to=b'"unterminated <sip:alice@tenant1.test>'),
    request(b"INVITE", cseq=b""),
    request(b"INVITE", cseq=b"1"),
    request(b"INVITE", via=b"SIP/2.0/UDP [::1:5060;branch=z9hG4bKv6"),
    b"SIP/2.0 200 OK\r\n\r\n",
    b"SIP/2.0 2000 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKse\r\n\r\n",
    b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=\r\nCSeq: 1\r\n\r\n",
])
def test_hostile_datagrams(edge, data):
    sent = edge.recv(data)
    assert all(not m.is_request or m.method != b"INVITE" for _i, m in sent)  # nothing of it is relayed
    edge.advance(60)
    assert edge.live() == (0, 0)


@pytest.mark.parametrize("data", [
    request(b"INVITE", headers=[b"X-Big: " + b"a" * 60000]),
    request(b"INVITE", headers=[b"Via: SIP/2.0/UDP h%d;branch=z9hG4bK%d" % (i, i) for i in range(500)]),
    request(b"INVITE", call_id=b"\xff\xfe\x00"),
])
def test_odd_but_valid_requests_are_relayed_once(edge, data):
    sent = edge.recv(data)
    assert [(a, m.method) for a, m in sent if m.is_request] == [(B1, b"INVITE")]
    edge.advance(60)
    assert edge.live() == (0, 0)
