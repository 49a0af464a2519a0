"""The case catalogue of the differential suite.

Each case is a function ``case(ctx)`` that sends requests through ``ctx`` (one step per
datagram); the outcome is the list of step observations (conf_harness.Ctx._observe).
``CASES`` maps name -> (stage, description, function).  Stages follow the seed's
pipeline (docs/sip-spec-notes.md §1): C1 maxfwd, C2 sanity, C3 scanner, C4 in-dialog,
C5 methods, C6 domain, C7/C8 dispatcher + relay, TX transaction behaviour.
"""
from __future__ import annotations

from typing import Callable

from testsupport.sip import Msg, Req

CASES: dict[str, tuple[str, str, Callable]] = {}


def case(stage: str, desc: str):
    def deco(fn):
        CASES[fn.__name__.removeprefix("case_")] = (stage, desc, fn)
        return fn
    return deco


def _final(replies: list[Msg]) -> Msg | None:
    for m in replies:
        if m.ok and m.code is not None and m.code >= 200:
            return m
    return None


def _call(c, *, domain="tenant1.test", user="bob", router="main", label="INVITE") -> tuple[Req, Msg | None]:
    """INVITE -> (100) 180 200; returns the INVITE and the 200 (or None)."""
    inv = c.req("INVITE", user=user, domain=domain)
    rep = c.send(inv, router=router, final=True, label=label)
    return inv, _final(rep)


def _ack(c, inv: Req, fin: Msg, *, router="main", label="ACK(2xx)") -> None:
    if fin is not None and fin.code is not None and 200 <= fin.code < 300:
        c.send(c.in_dialog("ACK", inv, fin, cseq=1), router=router, label=label, forwarded=True)


# ---------------------------------------------------------------- C1 Max-Forwards

def _mf(c, value: str | None):
    r = c.req("OPTIONS")
    if value is None:
        r.drop("Max-Forwards")
    else:
        r.set("Max-Forwards", value)
    c.send(r, final=True)


@case("C1", "Max-Forwards missing: inserted as 10, not decremented")
def case_mf_missing(c):
    _mf(c, None)


@case("C1", "Max-Forwards 70 -> 69")
def case_mf_70(c):
    _mf(c, "70")


@case("C1", "Max-Forwards 1 -> forwarded with 0")
def case_mf_1(c):
    _mf(c, "1")


@case("C1", "Max-Forwards 0 -> 483 Too Many Hops")
def case_mf_0(c):
    _mf(c, "0")


@case("C1", "Max-Forwards 71 -> clamped to 70")
def case_mf_71(c):
    _mf(c, "71")


@case("C1", "Max-Forwards 255 -> clamped to 70")
def case_mf_255(c):
    _mf(c, "255")


@case("C1", "Max-Forwards 300 (out of RFC range) -> clamped to 70")
def case_mf_300(c):
    _mf(c, "300")


@case("C1", "Max-Forwards 99999 (5 digits, > 16 bit after wrap) -> clamped")
def case_mf_99999(c):
    _mf(c, "99999")


@case("C1", "Max-Forwards 000070 (6 digits) -> parse error -> 483")
def case_mf_six_digits(c):
    _mf(c, "000070")


@case("C1", "Max-Forwards 010 (leading zero) -> 9")
def case_mf_leading_zero(c):
    _mf(c, "010")


@case("C1", "Max-Forwards -1 -> parse error -> 483")
def case_mf_negative(c):
    _mf(c, "-1")


@case("C1", "Max-Forwards abc -> parse error -> 483")
def case_mf_alpha(c):
    _mf(c, "abc")


@case("C1", "Max-Forwards empty -> 0 -> 483")
def case_mf_empty(c):
    _mf(c, "")


@case("C1", "Max-Forwards 0 on an INVITE -> 483, no 100 first")
def case_mf_0_invite(c):
    r = c.req("INVITE")
    r.set("Max-Forwards", "0")
    c.send(r, final=True)


@case("C1", "Max-Forwards 0 on an ACK -> nothing (no reply to ACK)")
def case_mf_0_ack(c):
    r = c.req("ACK")
    r.set("Max-Forwards", "0")
    c.send(r)


# ---------------------------------------------------------------- C2 sanity 1511/7

@case("C2", "request version SIP/2.1 -> dropped by the core (non-SIP)")
def case_sanity_version(c):
    r = c.req("OPTIONS")
    r.version = "SIP/2.1"
    c.send(r, final=True)


@case("C2", "R-URI with an invalid port -> 400 Bad Request URI")
def case_sanity_ruri_bad_port(c):
    r = c.req("OPTIONS", ruri="sip:bob@tenant1.test:99999999")
    r.set("To", "<sip:bob@tenant1.test>")
    c.send(r, final=True)


@case("C2", "R-URI with an unknown scheme -> 400 Bad Request URI")
def case_sanity_ruri_scheme(c):
    r = c.req("OPTIONS", ruri="http://tenant1.test/")
    r.set("To", "<sip:bob@tenant1.test>")
    c.send(r, final=True)


@case("C2", "no Call-ID -> silent drop")
def case_sanity_no_callid(c):
    r = c.req("OPTIONS")
    r.drop("Call-ID")
    c.send(r, final=True)


@case("C2", "no CSeq -> silent drop")
def case_sanity_no_cseq(c):
    r = c.req("OPTIONS")
    r.drop("CSeq")
    c.send(r, final=True)


@case("C2", "no From -> silent drop")
def case_sanity_no_from(c):
    r = c.req("OPTIONS")
    r.drop("From")
    c.send(r, final=True)


@case("C2", "no To -> silent drop")
def case_sanity_no_to(c):
    r = c.req("OPTIONS")
    r.drop("To")
    c.send(r, final=True)


@case("C2", "no Via -> silent drop")
def case_sanity_no_via(c):
    r = c.req("OPTIONS")
    r.drop("Via")
    c.send(r, final=True)


@case("C2", "two From headers -> silent drop")
def case_sanity_dup_from(c):
    r = c.req("OPTIONS")
    r.add("From", "<sip:mallory@tenant1.test>;tag=dup1", at=3)
    c.send(r, final=True)


@case("C2", "two Call-ID headers -> silent drop")
def case_sanity_dup_callid(c):
    r = c.req("OPTIONS")
    r.add("Call-ID", "second-" + (r.get("Call-ID") or ""), at=5)
    c.send(r, final=True)


@case("C2", "CSeq method differs from the request method -> 400")
def case_sanity_cseq_mismatch(c):
    r = c.req("OPTIONS")
    r.set("CSeq", "1 REGISTER")
    c.send(r, final=True)


@case("C2", "CSeq method in lower case -> 400 (byte-exact compare)")
def case_sanity_cseq_case(c):
    r = c.req("OPTIONS")
    r.set("CSeq", "1 options")
    c.send(r, final=True)


@case("C2", "CSeq without a method")
def case_sanity_cseq_no_method(c):
    r = c.req("OPTIONS")
    r.set("CSeq", "1")
    c.send(r, final=True)


@case("C2", "CSeq number 2^31 -> 400 CSeq number is illegal")
def case_sanity_cseq_big(c):
    r = c.req("OPTIONS")
    r.set("CSeq", "2147483648 OPTIONS")
    c.send(r, final=True)


@case("C2", "CSeq number not numeric")
def case_sanity_cseq_alpha(c):
    r = c.req("OPTIONS")
    r.set("CSeq", "abc OPTIONS")
    c.send(r, final=True)


@case("C2", "Content-Length larger than the body -> 400 Content-Length mis-match")
def case_sanity_cl_long(c):
    r = c.req("OPTIONS")
    r.content_length = 10
    c.send(r, final=True)


@case("C2", "Content-Length smaller than the body -> 400 Content-Length mis-match")
def case_sanity_cl_short(c):
    r = c.req("OPTIONS")
    r.set("Content-Type", "text/plain")
    r.body = b"hello world"
    r.content_length = 5
    c.send(r, final=True)


@case("C2", "Content-Length not a number")
def case_sanity_cl_alpha(c):
    r = c.req("OPTIONS")
    r.content_length = "abc"
    c.send(r, final=True)


@case("C2", "Expires not a number -> 400 Bad Expires Header")
def case_sanity_expires_alpha(c):
    r = c.req("REGISTER", ruri="sip:tenant1.test", to="<sip:bob@tenant1.test>")
    r.set("Expires", "soon")
    c.send(r, final=True)


@case("C2", "Expires 2^32 -> 400 Expires value is illegal")
def case_sanity_expires_big(c):
    r = c.req("REGISTER", ruri="sip:tenant1.test", to="<sip:bob@tenant1.test>")
    r.set("Expires", "4294967296")
    c.send(r, final=True)


@case("C2", "From URI unparsable -> 400 Invalid From Header")
def case_sanity_bad_from(c):
    r = c.req("OPTIONS")
    r.set("From", "<sip:alice@>;tag=x1")
    c.send(r, final=True)


@case("C2", "To URI unparsable -> 400 (Kamailio 5.6: 'Ivalid To Header')")
def case_sanity_bad_to(c):
    r = c.req("OPTIONS")
    r.set("To", "<sip:bob@>")
    c.send(r, final=True)


@case("C2", "a header line without a colon")
def case_sanity_garbage_header(c):
    r = c.req("OPTIONS")
    r.add("", "this is not a header", at=6)
    c.send(r, final=True)


@case("C2", "ACK with a CSeq mismatch -> no reply (sanity never answers ACK)")
def case_sanity_ack_mismatch(c):
    r = c.req("ACK")
    r.set("CSeq", "1 INVITE")
    c.send(r)


# ---------------------------------------------------------------- C3 scanners

def _ua(c, ua):
    c.send(c.req("OPTIONS", ua=ua), final=True)


@case("C3", "User-Agent friendly-scanner -> silent drop")
def case_ua_friendly_scanner(c):
    _ua(c, "friendly-scanner")


@case("C3", "User-Agent SIPVicious (mixed case, with version) -> silent drop")
def case_ua_sipvicious_mixed(c):
    _ua(c, "SIPVicious/0.3.4")


@case("C3", "User-Agent 'sipcli/v1.8' -> silent drop")
def case_ua_sipcli(c):
    _ua(c, "sipcli/v1.8")


@case("C3", "User-Agent 'NMAP NSE' (upper case) -> silent drop")
def case_ua_nmap_upper(c):
    _ua(c, "NMAP NSE")


@case("C3", "scanner name inside a longer User-Agent -> silent drop")
def case_ua_embedded(c):
    _ua(c, "Mozilla/5.0 (x-Friendly-Scanner-build) pbx")


@case("C3", "benign User-Agent -> forwarded")
def case_ua_benign(c):
    _ua(c, "Linphone/5.2 (belle-sip/5.2)")


@case("C3", "scanner User-Agent on an INVITE -> silent drop, no 100")
def case_ua_scanner_invite(c):
    c.send(c.req("INVITE", ua="friendly-scanner"), final=True)


# ---------------------------------------------------------------- C4 in-dialog

@case("C4", "BYE with our Route: Route removed, relayed to the contact, 200 back")
def case_dialog_bye_our_route(c):
    inv, fin = _call(c)
    _ack(c, inv, fin)
    if fin is not None:
        c.send(c.in_dialog("BYE", inv, fin, cseq=2), final=True, label="BYE")


@case("C4", "ACK for 2xx with our Route: relayed statelessly")
def case_dialog_ack_our_route(c):
    inv, fin = _call(c)
    _ack(c, inv, fin)


@case("C4", "re-INVITE inside the dialog with our Route")
def case_dialog_reinvite(c):
    inv, fin = _call(c)
    _ack(c, inv, fin)
    if fin is not None:
        c.send(c.in_dialog("INVITE", inv, fin, cseq=2), final=True, label="re-INVITE")


@case("C4", "in-dialog INFO with our Route: relayed (allow-list is after in-dialog)")
def case_dialog_info(c):
    inv, fin = _call(c)
    _ack(c, inv, fin)
    if fin is not None:
        c.send(c.in_dialog("INFO", inv, fin, cseq=2), final=True, label="INFO")


@case("C4", "BYE with a To-tag and no Route -> 404 Not Here")
def case_dialog_bye_no_route(c):
    inv, fin = _call(c)
    _ack(c, inv, fin)
    if fin is not None:
        c.send(c.in_dialog("BYE", inv, fin, cseq=2, route=[]), final=True, label="BYE")


@case("C4", "BYE with a To-tag and a foreign Route (open relay test)")
def case_dialog_bye_foreign_route(c):
    foreign = c.lane.backends["foreign"]
    r = c.req("BYE", user="bob", domain="tenant1.test")
    r.set("To", "<sip:bob@tenant1.test>;tag=remote1")
    r.ruri = "sip:bob@tenant1.test"
    r.add("Route", f"<sip:{foreign.addr}:{foreign.port};lr>", at=2)
    c.send(r, final=True)


@case("C4", "ACK with a To-tag and no Route -> nothing")
def case_dialog_ack_no_route(c):
    r = c.req("ACK")
    r.set("To", "<sip:bob@tenant1.test>;tag=remote2")
    c.send(r)


@case("C4", "in-dialog request with an empty to-tag parameter value")
def case_dialog_empty_totag(c):
    r = c.req("OPTIONS")
    r.set("To", "<sip:bob@tenant1.test>;tag=")
    c.send(r, final=True)


@case("C4", "initial request (no To-tag) with a preloaded Route naming the edge")
def case_dialog_preloaded_route_self(c):
    rt = c.router()
    r = c.req("OPTIONS")
    r.add("Route", f"<sip:{rt.addr}:{rt.port};lr>", at=2)
    c.send(r, final=True)


# ---------------------------------------------------------------- C5 methods

def _method(c, method):
    c.send(c.req(method), final=True)


for _m in ("MESSAGE", "INFO", "SUBSCRIBE", "NOTIFY", "PUBLISH", "PRACK", "UPDATE", "REFER"):
    def _mk(m):
        def fn(c):
            _method(c, m)
        fn.__name__ = f"case_method_{m.lower()}"
        return fn
    case("C5", f"{_m} outside a dialog -> 405 Method Not Allowed")(_mk(_m))


@case("C5", "unknown method FOO -> 405")
def case_method_unknown(c):
    _method(c, "FOO")


@case("C5", "lower-case 'invite' is not INVITE -> 405")
def case_method_lowercase(c):
    _method(c, "invite")


# ---------------------------------------------------------------- C6 domain

@case("C6", "tel: R-URI (empty domain) -> silent drop")
def case_domain_empty(c):
    c.send(c.req("OPTIONS", ruri="tel:+15551234567", to="<tel:+15551234567>"), final=True)


@case("C6", "unknown domain -> silent drop")
def case_domain_unknown(c):
    c.send(c.req("OPTIONS", domain="unknown.invalid"), final=True)


@case("C6", "disabled domain (enabled=0) -> silent drop")
def case_domain_disabled(c):
    c.send(c.req("INVITE", domain="disabled.test"), final=True)


@case("C6", "upper-case domain (exact match) -> silent drop")
def case_domain_uppercase(c):
    c.send(c.req("OPTIONS", domain="TENANT1.TEST"), final=True)


@case("C6", "R-URI tenant1, To tenant2 -> silent drop")
def case_domain_mismatch(c):
    c.send(c.req("OPTIONS", domain="tenant1.test", to="<sip:bob@tenant2.test>"), final=True)


@case("C6", "R-URI host is the edge's own address -> silent drop")
def case_domain_edge_itself(c):
    rt = c.router()
    c.send(c.req("OPTIONS", ruri=f"sip:{rt.addr}:{rt.port}", to=f"<sip:{rt.addr}>"), final=True)


@case("C6", "domain with a quote (SQL injection attempt)")
def case_domain_quote(c):
    c.send(c.req("OPTIONS", domain="x'or'1'='1.test"), final=True)


@case("C6", "domain with a trailing dot is a different string -> silent drop")
def case_domain_trailing_dot(c):
    c.send(c.req("OPTIONS", domain="tenant1.test."), final=True)


# ---------------------------------------------------------------- C7/C8 tenant relay

@case("C8", "REGISTER for a tenant: record-routed, relayed, 200 back")
def case_tenant_register(c):
    r = c.req("REGISTER", ruri="sip:tenant1.test", to="<sip:bob@tenant1.test>")
    r.ruri = "sip:tenant1.test"
    r.set("To", "<sip:bob@tenant1.test>")
    r.set("Expires", "60")
    c.send(r, final=True)


@case("C8", "OPTIONS for a tenant: relayed, 200 back")
def case_tenant_options(c):
    c.send(c.req("OPTIONS", domain="tenant2.test"), final=True)


@case("C8", "INVITE for a tenant: 100, 180, 200 relayed; ACK relayed")
def case_tenant_invite(c):
    inv, fin = _call(c, domain="tenant2.test")
    _ack(c, inv, fin)


@case("C8", "Via without rport, host name differs from the source -> received added")
def case_via_received(c):
    r = c.req("OPTIONS", rport=False, via_host="ua.conformance.invalid")
    c.send(r, final=True)


@case("C8", "Via without rport, host equals the source -> nothing added")
def case_via_plain(c):
    c.send(c.req("OPTIONS", rport=False), final=True)


@case("C8", "compact header forms (v f t i m l)")
def case_compact_headers(c):
    r = c.req("OPTIONS")
    r.headers = [({"Via": "v", "From": "f", "To": "t", "Call-ID": "i", "Contact": "m"}.get(n, n), v)
                 for n, v in r.headers]
    c.send(r, final=True)


@case("C8", "request with a body (INVITE with SDP)")
def case_invite_with_body(c):
    inv = c.req("INVITE", domain="tenant2.test")
    inv.set("Content-Type", "application/sdp")
    inv.body = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
                b"t=0 0\r\nm=audio 4000 RTP/AVP 0\r\n")
    fin = _final(c.send(inv, final=True))
    _ack(c, inv, fin)


@case("C8", "INVITE answered 486 by the backend: relayed")
def case_invite_busy(c):
    inv = c.req("INVITE", user="busy", domain="tenant2.test")
    rep = c.send(inv, final=True)
    fin = _final(rep)
    if fin is not None:
        ack = c.in_dialog("ACK", inv, fin, cseq=1, route=[], branch=inv.get("Via").split("branch=")[1].split(";")[0])
        ack.ruri = inv.ruri
        c.send(ack, label="ACK(486)")


# ---------------------------------------------------------------- C7 dispatcher

@case("C7", "round robin over 20 calls (two equal nodes)")
def case_rr_20_calls(c):
    seq = []
    for i in range(20):
        inv, fin = _call(c, domain="rr.test", label=f"INVITE#{i + 1}")
        _ack(c, inv, fin, label=f"ACK#{i + 1}")
    # Collapse the 40 steps into the pattern of chosen backends (letters in order of
    # first appearance) plus counts: which of two equal nodes comes first is the
    # tie order of equal priorities, covered by the priority cases.
    for st in c.steps:
        if st["step"].startswith("INVITE#"):
            seq.append(st["forwarded"][0]["to"] if st["forwarded"] else "-")
    letters: dict[str, str] = {}
    pattern = "".join(letters.setdefault(b, "ABCDEFGH"[len(letters)]) if b != "-" else "-" for b in seq)
    replies = sorted({r for st in c.steps for r in st["replies"]})
    c.steps[:] = [{"step": "20 calls", "pattern": pattern,
                   "counts": sorted(seq.count(b) for b in set(seq)),
                   "replies": replies}]


@case("C7", "algorithm 8, priorities 0 and 10: which node is chosen")
def case_priority_alg8(c):
    for i in range(3):
        c.send(c.req("OPTIONS", domain="prio.test"), router="alg8", final=True, label=f"OPTIONS#{i + 1}")


@case("C7", "algorithm 8, the preferred node inactive: the other one")
def case_priority_alg8_failover(c):
    c.send(c.req("OPTIONS", domain="prio-failover.test"), router="alg8", final=True)


@case("C7", "all nodes of the set inactive -> 503 Service Unavailable")
def case_all_down(c):
    c.send(c.req("INVITE", domain="down.test"), final=True)


@case("C7", "all nodes inactive, OPTIONS -> 503")
def case_all_down_options(c):
    c.send(c.req("OPTIONS", domain="down.test"), final=True)


@case("C7", "one node inactive: every request goes to the live one")
def case_half_down(c):
    for i in range(3):
        c.send(c.req("OPTIONS", domain="half.test"), final=True, label=f"OPTIONS#{i + 1}")


@case("C7", "one node admin-disabled (flags=4): every request goes to the other")
def case_admin_disabled(c):
    for i in range(3):
        c.send(c.req("OPTIONS", domain="admin-disabled.test"), final=True, label=f"OPTIONS#{i + 1}")


@case("C7", "domain mapped to a set without rows -> 503")
def case_set_missing(c):
    c.send(c.req("OPTIONS", domain="nodest.test"), final=True)


# ---------------------------------------------------------------- TX transactions

@case("TX", "CANCEL of a pending INVITE: 200 to CANCEL, CANCEL downstream, 487 up, ACK")
def case_cancel_pending(c):
    inv = c.req("INVITE", user="ring")
    c.send(inv, label="INVITE")                         # 100, 180; no final
    cancel = c.req("CANCEL", user="ring", call_id=inv.get("Call-ID"),
                   branch=inv.get("Via").split("branch=")[1].split(";")[0])
    cancel.set("From", inv.get("From"))
    rep = c.send(cancel, label="CANCEL")               # 200 canceling, then 487
    fin = [m for m in rep if m.code == 487]
    if fin:
        ack = c.in_dialog("ACK", inv, fin[0], cseq=1, route=[],
                          branch=inv.get("Via").split("branch=")[1].split(";")[0])
        ack.ruri = inv.ruri
        c.send(ack, label="ACK(487)")


@case("TX", "CANCEL that matches no INVITE")
def case_cancel_unmatched(c):
    c.send(c.req("CANCEL"), final=True)


@case("TX", "ACK to a negative final reply: absorbed, or the reply keeps coming")
def case_ack_negative_absorbed(c):
    inv = c.req("INVITE", user="busy")
    rep = c.send(inv, final=True)
    fin = _final(rep)
    if fin is None:
        return
    ack = c.in_dialog("ACK", inv, fin, cseq=1, route=[],
                      branch=inv.get("Via").split("branch=")[1].split(";")[0])
    ack.ruri = inv.ruri
    c.send(ack, label="ACK(486)", record=False)
    got = c.wait(1.7, label="after ACK", count=True)
    c.steps[-1] = {"step": "after ACK (1.7 s)",
                   "486 retransmitted": any(m.code == 486 for m in got),
                   "forwarded": c.steps[-1]["forwarded"]}


@case("TX", "INVITE retransmitted while pending: forwarded once, last reply repeated")
def case_retransmit_invite(c):
    inv = c.req("INVITE", user="ring")
    c.send(inv, label="INVITE")
    c.send(inv, label="INVITE again", count=True)
    cancel = c.req("CANCEL", user="ring", call_id=inv.get("Call-ID"),
                   branch=inv.get("Via").split("branch=")[1].split(";")[0])
    cancel.set("From", inv.get("From"))
    rep = c.send(cancel, label="CANCEL", record=False)
    fin = [m for m in rep if m.code == 487]
    if fin:
        ack = c.in_dialog("ACK", inv, fin[0], cseq=1, route=[],
                          branch=inv.get("Via").split("branch=")[1].split(";")[0])
        ack.ruri = inv.ruri
        c.send(ack, label="ACK(487)", record=False)


@case("TX", "OPTIONS retransmitted after its 200: 200 repeated, not forwarded again")
def case_retransmit_options(c):
    r = c.req("OPTIONS")
    c.send(r, final=True)
    c.send(r, final=True, count=True, label="OPTIONS again")


@case("TX", "a stray response sent to the edge: dropped")
def case_stray_response(c):
    cl = c.client
    data = (f"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKstray{c.new_branch()[7:]}\r\n"
            f"From: <sip:a@tenant1.test>;tag=1\r\nTo: <sip:b@tenant1.test>;tag=2\r\n"
            f"Call-ID: {c.new_call_id()}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
    c.send(data, label="200 OK (stray)")
    del cl


@case("C2", "CSeq number 2^32 -> 400 CSeq number is illegal (both)")
def case_sanity_cseq_2p32(c):
    r = c.req("OPTIONS")
    r.set("CSeq", "4294967296 OPTIONS")
    c.send(r, final=True)


@case("C1", "two Max-Forwards headers: the first one counts")
def case_mf_two_headers(c):
    r = c.req("OPTIONS")
    r.set("Max-Forwards", "5")
    r.add("Max-Forwards", "70", at=3)
    c.send(r, final=True)


@case("C2", "CSeq without a number -> 400 Missing number in CSeq header")
def case_sanity_cseq_no_number(c):
    r = c.req("OPTIONS")
    r.set("CSeq", "OPTIONS")
    c.send(r, final=True)


@case("C2", "Expires empty -> 400 Missing number in Expires header")
def case_sanity_expires_empty(c):
    r = c.req("REGISTER", ruri="sip:tenant1.test", to="<sip:bob@tenant1.test>")
    r.set("Expires", "")
    c.send(r, final=True)


@case("C2", "no empty line after the headers (Content-Length present)")
def case_sanity_no_end_of_headers(c):
    data = bytes(c.req("OPTIONS"))
    c.send(data[:-2], final=True)       # drop the final CRLF of the empty line
