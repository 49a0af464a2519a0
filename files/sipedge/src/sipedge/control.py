"""`sipedge ctl`: ask the running edge through its control socket.

One command line goes in, one JSON document comes back (manager.py answers
for the whole edge).  People get a table, tools `--json` (docs/CONTRACT.md).
"""

import json
import socket
import time


class ControlError(Exception):
    """The edge could not be asked; the message says why."""


def ask(path, words, timeout=10.0):
    """The JSON answer of the edge at control socket `path` to `words`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(" ".join(words).encode() + b"\n")
            answer = json.loads(sock.makefile("rb").read())
    except FileNotFoundError as exc:
        raise ControlError("no control socket at %s (is sipedge running, with [control] socket set?)" % path) from exc
    except (OSError, ValueError) as exc:
        raise ControlError("%s: %s" % (path, exc)) from exc
    if isinstance(answer, dict) and "error" in answer:
        raise ControlError(answer["error"])
    return answer


def table(rows, headers):
    """Columns padded to their widest cell."""
    cells = [headers] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in cells)


def format_dispatcher(sets):
    rows = []
    for dset in sets:
        for dest in dset["destinations"]:
            state = dest["status"] + (" (held)" if dest["pinned"] else "")
            last = time.strftime("%H:%M:%S", time.localtime(dest["last_ping"])) if dest["last_ping"] else None
            rtt = "%.1f ms" % (dest["rtt"] * 1000) if dest["rtt"] is not None else None
            rows.append([dset["setid"], dest["uri"], dest["priority"], dest["weight"], state, last, dest["last_code"],
                         rtt, dest["calls"]])
    return table(rows, ["SET", "DESTINATION", "PRIORITY", "WEIGHT", "STATE", "LAST PING", "CODE", "RTT", "CALLS"])


def format_stats(stats):
    lines = ["workers: %s (main process %s)" % (", ".join(map(str, stats["workers"])), stats["pid"]),
             "transactions: %d server, %d client; timers: %d" % (
                 stats.get("server_transactions", 0), stats.get("client_transactions", 0), stats.get("timers", 0)),
             "routing table: %d domains, %d destinations" % (stats.get("domains", 0), stats.get("destinations", 0)),
             "failovers: %d; overload sheds: %d; longest queue wait since the last stats: %.1f ms" % (
                 stats.get("failovers", 0), stats.get("sheds", 0), 1000 * stats.get("queue_delay_max", 0.0))]
    for title, key in (("requests received", "received"), ("replies sent", "replies"), ("drops", "drops")):
        counts = stats.get(key) or {}
        lines.append("%s: %s" % (title, ", ".join("%s %d" % item for item in sorted(counts.items())) or "none"))
    return "\n".join(lines)


def format_answer(words, answer):
    """What a person reads for `words`' answer."""
    if words[:2] == ["dispatcher", "list"]:
        return format_dispatcher(answer)
    if words == ["stats"]:
        return format_stats(answer)
    if words[:2] == ["dispatcher", "set-state"]:
        return "set %s %s: %s (was %s)" % (answer["setid"], answer["uri"], answer["state"], answer["was"])
    return json.dumps(answer, indent=2)
