"""RFC 4475: the 49 torture messages (tests/data/rfc4475) sent to sipedge and to the seed.

For every message: sipedge must answer a health probe right after it (no crash, no
stall), and its outcome must be the one in EXPECTED: valid messages handled as the RFC
expects, invalid ones answered 400 or dropped as the reference does, and the listed
deliberate exceptions.  The reference's own outcome is asserted too, so the table stays
true.  ``example.com`` is a provisioned tenant (set 70, one backend), so messages that
pass every check are forwarded ("fwd ...", then the replies the client got).
"""
from __future__ import annotations

import re

import pytest

import conf_torture

T = "100 trying -- your call is important to us"
INV = f"fwd INVITE | {T}, 180 Ringing, 200 OK"
OPT = "fwd OPTIONS | 200 OK"
REG = "fwd REGISTER | 200 OK"
SAME = object()     # sipedge expected to do what the reference does

# name: (RFC section, class V/I/S, reference outcome, sipedge outcome, why)
EXPECTED: dict[str, tuple] = {
    "wsinv": ("3.1.1.1", "V", None, "404 Not Here",
              "parses; To has a tag and the Route names another host: docs/design.md decision 9 "
              "(404, never relayed). Not sent to Kamailio, which would relay it and resolve "
              "services.example.com"),
    "intmeth": ("3.1.1.2", "V", "drop", "405 Method Not Allowed",
                "valid: an unknown method gets 405 (allow-list). Kamailio's header-name parser "
                "rejects extensionHeader-!.%*+_`'~ and its sanity cannot build a reply"),
    "esc01": ("3.1.1.3", "V", "drop", SAME, "R-URI host example.net != To host example.com: "
              "domain mismatch, silent drop (seed DOMAIN_CHECK)"),
    "escnull": ("3.1.1.4", "V", REG, SAME, "%00 in URIs is legal; relayed"),
    "esc02": ("3.1.1.5", "V", "drop", "405 Method Not Allowed",
              "RE%47IST%45R is not REGISTER: unknown method, 405. Kamailio rejects the header "
              "name C%6Fntact (a legal token) and cannot send its 400"),
    "lwsdisp": ("3.1.1.6", "V", OPT, SAME, "no LWS before '<' is fine"),
    "longreq": ("3.1.1.7", "V", INV, SAME, "long values relayed"),
    "dblreq": ("3.1.1.8", "V", "400 Content-Length mis-match", SAME,
               "RFC: ignore the trailing octets; the seed's sanity compares Content-Length with "
               "the whole datagram (docs/sip-spec-notes.md §6.3, §8.7: parity kept)"),
    "semiuri": ("3.1.1.9", "V", OPT, SAME, "';' in the user part: host is example.com, relayed"),
    "transports": ("3.1.1.10", "V", OPT, SAME, "unknown transports in lower Vias are fine"),
    "mpart01": ("3.1.1.11", "V", "405 Method Not Allowed", SAME, "MESSAGE is not allowed"),
    "unreason": ("3.1.1.12", "V", "drop", SAME, "a response matching no transaction: dropped"),
    "noreason": ("3.1.1.13", "V", "drop", SAME, "a response matching no transaction: dropped"),
    "badinv01": ("3.1.2.1", "I", "drop", SAME, "Via ';;,;,,' does not parse: dropped like the core"),
    "clerr": ("3.1.2.2", "I", "400 Content-Length mis-match", SAME, "UDP: 400"),
    "ncl": ("3.1.2.3", "I", "drop", SAME,
            "negative Content-Length does not parse: no reply can be built to such a request, "
            "silent drop as Kamailio"),
    "scalar02": ("3.1.2.4", "I", "400 CSeq number is illegal", SAME, "CSeq > 2^32: 400"),
    "scalarlg": ("3.1.2.5", "I", "drop", SAME, "a response: dropped"),
    "quotbal": ("3.1.2.6", "I", "drop", SAME, "unterminated quote in To: dropped like the core"),
    "ltgtruri": ("3.1.2.7", "I", "400 Bad Request URI", SAME, "<> around the R-URI: 400"),
    "lwsruri": ("3.1.2.8", "I", "drop", SAME, "four tokens in the request line: dropped"),
    "lwsstart": ("3.1.2.9", "I", "drop", SAME, "RFC allows reject or accept; dropped like the core"),
    "trws": ("3.1.2.10", "I", OPT, SAME, "RFC allows reject or accept; the reference accepts"),
    "escruri": ("3.1.2.11", "I", INV, SAME, "accepted and relayed like the reference"),
    "baddate": ("3.1.2.12", "I", INV, SAME, "a proxy ignores Date: relayed"),
    "regbadct": ("3.1.2.13", "I", REG, SAME, "Contact is not checked by a proxy: relayed"),
    "badaspec": ("3.1.2.14", "I", "drop", SAME, "dropped like the reference"),
    "baddn": ("3.1.2.15", "I", "drop", SAME, "dropped like the reference"),
    "badvers": ("3.1.2.16", "I", "drop", SAME, "SIP/7.0: dropped like the core (no 505)"),
    "mismatch01": ("3.1.2.17", "I", "400 CSeq method does not match request method", SAME, "400"),
    "mismatch02": ("3.1.2.18", "I", "400 CSeq method does not match request method", SAME, "400"),
    "bigcode": ("3.1.2.19", "I", "drop", SAME, "a response: dropped"),
    "badbranch": ("3.2.1", "S", OPT, SAME, "branch 'z9hG4bK' alone: accepted and relayed"),
    "insuf": ("3.3.1", "S", "drop", SAME, "missing To/From/Call-ID: silently dropped (docs/sip-spec-notes.md §8.7)"),
    "unkscm": ("3.3.2", "S", "400 Bad Request URI", SAME, "RFC 416; the seed says 400 (docs/sip-spec-notes.md §8.7)"),
    "novelsc": ("3.3.3", "S", "400 Bad Request URI", SAME, "RFC 416; the seed says 400"),
    "unksm2": ("3.3.4", "S", "400 Invalid From Header", SAME, "From is an http: URI: 400 (uri check 2)"),
    "bext01": ("3.3.5", "S", OPT, SAME, "RFC: 420; the seed does not check Proxy-Require (docs/sip-spec-notes.md §8.7)"),
    "invut": ("3.3.6", "S", INV, SAME, "a proxy relays unknown bodies"),
    "regaut01": ("3.3.7", "S", REG, SAME, "a proxy relays unknown auth schemes"),
    "multi01": ("3.3.8", "S", "drop", SAME, "duplicate CSeq/Call-ID/To/From: silent drop (sanity)"),
    "mcl01": ("3.3.9", "S", "drop", SAME,
              "two Content-Length values: the framing is unknowable; Kamailio cannot build a "
              "reply to it, so both drop it silently"),
    "bcast": ("3.3.10", "S", None, "drop",
              "a response matching nothing: dropped, never sent to 255.255.255.255. Not sent to "
              "Kamailio: 5.6 tries to relay it to 255.255.255.255"),
    "zeromf": ("3.3.11", "S", "483 Too Many Hops", SAME, "a proxy answers 483"),
    "cparam01": ("3.3.12", "S", REG, SAME, "relayed"),
    "cparam02": ("3.3.13", "S", REG, "200 OK",
                 "same Via branch, sent-by and method as cparam01 sent just before: a "
                 "retransmission of that transaction (RFC 3261 §17.2.3), its 200 is repeated. "
                 "Kamailio's transaction lookup also keys on Call-ID/CSeq and relays it"),
    "regescrt": ("3.3.14", "S", REG, SAME, "escaped Route in Contact: relayed unchanged"),
    "sdp01": ("3.3.15", "S", INV, SAME, "a proxy relays it (the UAS answers 406)"),
    "inv2543": ("3.4.1", "S", "drop", SAME, "RFC 2543 syntax accepted; R-URI host != To host: drop"),
}


def test_table_lists_every_file():
    names = {conf_torture.name_of(p) for p in conf_torture.files()}
    assert len(names) == 49
    assert names == set(EXPECTED)


def test_files_are_crlf():
    for p in conf_torture.files():
        data = conf_torture.load(p)
        head = data.split(b"\r\n\r\n", 1)[0]
        assert b"\n" not in head.replace(b"\r\n", b""), f"{p.name}: bare LF in the header part"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_torture_message(torture, name):
    sec, cls, ref_exp, sub_exp, why = EXPECTED[name]
    sub = torture["sipedge"][name]
    ref = torture["kamailio"][name]
    assert sub["probe_s"] is not None, f"{name}: sipedge did not answer the probe after it (stalled?)"
    want = ref_exp if sub_exp is SAME else sub_exp
    assert sub["outcome"] == want, f"{name} (§{sec}, {cls}): sipedge {sub['outcome']!r}, expected {want!r}: {why}"
    if ref_exp is not None:
        assert ref["outcome"] == ref_exp, f"{name}: the reference now does {ref['outcome']!r}"


def test_no_crash_and_nothing_left_behind(torture):
    assert torture["alive"], "sipedge died during the torture run"
    log = torture["log"]
    bad = [line for line in log.splitlines()
           if re.search(r"Traceback|internal error", line)]
    assert not bad, "sipedge logged errors during the torture run:\n" + "\n".join(bad[:20])
    before, after = torture["before"], torture["after"]
    assert after.get("fds") == before.get("fds"), f"open files changed: {before} -> {after}"
    assert after.get("Threads") == before.get("Threads"), f"threads changed: {before} -> {after}"
    drained = torture["drained"]  # sipedge's own count, after every case and torture message
    assert drained.get("server_transactions") == 0 and drained.get("client_transactions") == 0, drained
