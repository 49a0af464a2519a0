"""Run the conformance cases by hand and print each router's observed outcome.

    python3 tests/conformance/run_cases.py                 # both routers, differences
    python3 tests/conformance/run_cases.py --kamailio-only # the reference alone
    python3 tests/conformance/run_cases.py -k mf_ -v       # some cases, full outcomes
    python3 tests/conformance/run_cases.py --json out.json # raw outcomes
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conf_lanes import Setup, run_both  # noqa: E402
from conf_cases import CASES  # noqa: E402
from conf_compare import summary, compare_all, load_allowlist  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kamailio-only", action="store_true")
    ap.add_argument("-k", action="append", default=[], help="substring of case names")
    ap.add_argument("-v", action="store_true", help="print full outcomes")
    ap.add_argument("--json")
    ap.add_argument("--workdir")
    ap.add_argument("--torture", action="store_true", help="run the RFC 4475 messages instead")
    a = ap.parse_args()
    names = [n for n in CASES if not a.k or any(k in n for k in a.k)]
    wd = Path(a.workdir or tempfile.mkdtemp(prefix="conformance-"))
    if not a.workdir:
        import atexit
        atexit.register(shutil.rmtree, wd, True)
    t0 = time.monotonic()
    setup = Setup(wd, with_sipedge=not a.kamailio_only)
    if a.torture:
        import conf_torture
        try:
            ref = conf_torture.run(setup.ref, skip=conf_torture.NOT_FOR_KAMAILIO)
            sub = conf_torture.run(setup.sub) if setup.sub else None
        finally:
            setup.close()
        for n in ref:
            print(f"{n:12s} kamailio: {ref[n]['outcome']:45s} sipedge: "
                  f"{sub[n]['outcome'] if sub else '-':45s} probe={sub[n]['probe_s'] if sub else '-'}")
        if a.json:
            Path(a.json).write_text(json.dumps({"kamailio": ref, "sipedge": sub}, indent=1))
        return 0
    try:
        ref, sub = run_both(setup, names)
    finally:
        setup.close()
    print(f"# {len(names)} cases in {time.monotonic() - t0:.1f} s (workdir {wd})")
    for n in names:
        print(f"{n:34s} kamailio: {summary(ref[n])}")
        if sub is not None:
            print(f"{'':34s} sipedge : {summary(sub[n])}")
        if a.v:
            print(json.dumps({"kamailio": ref[n], "sipedge": sub[n] if sub else None}, indent=1))
    if sub is not None:
        res = compare_all(ref, sub, load_allowlist())
        for n, (kind, detail) in res.items():
            if kind != "same":
                print(f"[{kind}] {n}: {detail}")
    if a.json:
        Path(a.json).write_text(json.dumps({"kamailio": ref, "sipedge": sub}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
