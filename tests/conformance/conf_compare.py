"""Comparison of outcomes and the allowlist of deliberate differences."""
from __future__ import annotations

import difflib
import json
import tomllib
from pathlib import Path

ALLOWLIST = Path(__file__).resolve().parent / "allowlist.toml"


def load_allowlist(path: Path = ALLOWLIST) -> dict[str, dict]:
    """``{case: {"reason": ..., ...}}``; every entry must give a reason."""
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    for name, entry in data.items():
        if not isinstance(entry, dict) or not str(entry.get("reason", "")).strip():
            raise ValueError(f"{path.name}: entry {name!r} has no reason")
    return data


def summary(steps: list[dict]) -> str:
    parts = []
    for st in steps:
        if "error" in st:
            parts.append("ERROR " + st["error"].strip().splitlines()[-1])
            continue
        label = st.get("step", "?")
        if "pattern" in st:
            parts.append(f"{label}: {st['pattern']} counts={st['counts']} replies={st['replies']}")
            continue
        if "486 retransmitted" in st:
            parts.append(f"{label}: 486 retransmitted={st['486 retransmitted']}")
            continue
        rep = st.get("replies") or []
        rep = [r["item"] + f" x{r['n']}" if isinstance(r, dict) else r for r in rep]
        fw = st.get("forwarded") or []
        fws = []
        for f in fw:
            n = ""
            if isinstance(f, dict) and "item" in f:
                n, f = f" x{f['n']}", f["item"]
            fws.append(f"{f['method']}->{f['to']}{n} mf={f['max_forwards']} via={f['vias']}"
                       f"{' rr' if f['record_route'] else ''}{' route' if f['route'] else ''}")
        parts.append(f"{label}: " + (", ".join(rep) if rep else "silence")
                     + (" | fwd " + "; ".join(fws) if fws else ""))
    return " || ".join(parts)


def diff_text(a, b) -> str:
    la = json.dumps(a, indent=1, sort_keys=True).splitlines()
    lb = json.dumps(b, indent=1, sort_keys=True).splitlines()
    return "\n".join(difflib.unified_diff(la, lb, "kamailio", "sipedge", lineterm="", n=2))


def diff_keys(a, b, key: str = "(outcome)") -> set[str]:
    """Names of the fields (last dict key on the path) where ``a`` and ``b`` differ."""
    if type(a) is not type(b):
        return {key}
    if isinstance(a, dict):
        out: set[str] = set()
        for k in set(a) | set(b):
            if k not in a or k not in b:
                out.add(k)
            else:
                out |= diff_keys(a[k], b[k], k)
        return out
    if isinstance(a, list):
        if len(a) != len(b):
            return {key}
        out = set()
        for x, y in zip(a, b):
            out |= diff_keys(x, y, key)
        return out
    return set() if a == b else {key}


def compare(name: str, ref: list, sub: list, allow: dict) -> tuple[str, str]:
    """-> (verdict, detail); verdict in same, allowed, unexpected, stale, error.

    An allowlist entry may name the fields that are allowed to differ
    (``fields = [...]``, keys of the outcome such as "replies" or "max_forwards");
    a difference in any other field is then unexpected too.
    """
    for side, steps in (("kamailio", ref), ("sipedge", sub)):
        if any("error" in st for st in steps):
            return "error", f"{side}: " + summary(steps)
    same = ref == sub
    if same and name in allow:
        return "stale", "allowlisted but both routers now behave the same"
    if same:
        return "same", ""
    if name in allow:
        fields = allow[name].get("fields")
        if fields is not None:
            extra = diff_keys(ref, sub) - set(fields)
            if extra:
                return "unexpected", (f"differs beyond the allowlisted fields {sorted(fields)}: "
                                      f"{sorted(extra)}\n" + diff_text(ref, sub))
        return "allowed", allow[name]["reason"]
    return "unexpected", diff_text(ref, sub)


def compare_all(ref: dict, sub: dict, allow: dict) -> dict[str, tuple[str, str]]:
    return {n: compare(n, ref[n], sub[n], allow) for n in ref}
