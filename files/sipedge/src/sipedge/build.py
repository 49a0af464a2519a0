"""Build what the proxy sends that is not a relayed message: local replies,
its own Via and Record-Route, and the requests it originates itself (CANCEL,
ACK for a negative reply, OPTIONS keep-alives).  Headers follow Kamailio's
sl/tm/rr forms (docs/sip-spec-notes.md §5.2, 5.5, 5.6, 5.8, 5.9, 2.9).
"""

import os
import zlib

from .message import CRLF

SERVER = b"Server: sipedge"
# Copied from a request into a local reply, in the request's order.
_REPLY_COPY = frozenset((b"via", b"from", b"to", b"call-id", b"cseq"))
_TAG_PREFIX = os.urandom(8).hex().encode()


def stamp_via(msg, src_ip, src_port):
    """Add received/rport to the request's top Via (RFC 3261 18.2.1, RFC 3581),
    as Kamailio does: received when the Via host is not the source address or
    the Via already carries received/rport; rport filled when asked for.
    Returns the port replies go to (they always go to the source address)."""
    via = msg.top_via
    names = [key for key, _value in via.params]
    has_rport = b"rport" in names
    host = via.host[1:-1] if via.host.startswith(b"[") else via.host
    if host != src_ip or has_rport or b"received" in names:
        params = [(k, v) for k, v in via.params if k != b"received"]
        if has_rport:
            params = [(k, b"%d" % src_port if k == b"rport" else v) for k, v in params]
        at = names.index(b"received") if b"received" in names else 0
        params.insert(at, (b"received", src_ip))
        sent_by = via.host if via.port is None else b"%s:%d" % (via.host, via.port)
        text = b"SIP/2.0/" + via.transport + b" " + sent_by + b"".join(
            b";" + k if v is None else b";" + k + b"=" + v for k, v in params)
        msg.set_top_via(text)
    return src_port if has_rport else (via.port or 5060)


def local_tag(msg):
    """A To-tag for a local reply: stable for retransmissions of one request."""
    via = msg.top_via
    return _TAG_PREFIX + b"." + b"%08x" % zlib.crc32((via.branch or b"") + (msg.call_id or b""))


def reply(msg, code, reason, to_tag=None, extra=()):
    """A reply to `msg` built from its headers (sl_send_reply); `extra`
    header lines go before Server."""
    out = [b"SIP/2.0 %d %s" % (code, reason)]
    need_tag = code >= 180 and msg.to_tag is None
    for name, line in zip(msg.names, msg.lines):
        if name == b"to" and need_tag:
            out.append(line.rstrip() + b";tag=" + (to_tag or local_tag(msg)))
        elif name in _REPLY_COPY:
            out.append(line)
        elif name == b"record-route" and 180 <= code < 300:
            out.append(line)
    out.extend(extra)
    out.append(SERVER)
    out.append(b"Content-Length: 0")
    return CRLF.join(out) + b"\r\n\r\n"


def via_line(local, branch):
    return b"Via: SIP/2.0/UDP " + local + b";branch=" + branch


def record_route_line(local, from_tag):
    ftag = b";ftag=" + from_tag if from_tag else b""
    return b"Record-Route: <sip:" + local + b";lr" + ftag + b">"


def hop_request(invite, method, local, branch, to_line=None):
    """CANCEL or ACK for a forwarded INVITE, hop by hop (RFC 3261 9.1, 17.1.1.3):
    same R-URI, Via branch, Route and Max-Forwards as the forwarded INVITE;
    To from the response for an ACK."""
    out = [b"%s %s SIP/2.0" % (method, invite.ruri), via_line(local, branch)]
    for name, line in zip(invite.names, invite.lines):
        if name in (b"from", b"call-id", b"route", b"max-forwards"):  # RFC 3261 17.1.1.3: as in the INVITE
            out.append(line)
        elif name == b"to":
            out.append(to_line or line)
    out.append(b"CSeq: %s %s" % (invite.cseq[0], method))
    out.append(b"Content-Length: 0")
    return CRLF.join(out) + b"\r\n\r\n"


def options_ping(uri, ping_from, local, branch, call_id, method=b"OPTIONS"):
    """The keep-alive request sent to a destination (dispatcher 2.9)."""
    tag = os.urandom(4).hex().encode()
    return CRLF.join([
        b"%s %s SIP/2.0" % (method, uri), via_line(local, branch),
        b"To: <" + uri + b">", b"From: <" + ping_from + b">;tag=" + tag,
        b"CSeq: 10 " + method, b"Call-ID: " + call_id, b"Max-Forwards: 70",
        b"User-Agent: sipedge", b"Content-Length: 0"]) + b"\r\n\r\n"
