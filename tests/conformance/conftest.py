"""Fixtures of the conformance suite: both routers started once per session.

Kamailio (the seed, tests/kamailio/reference.py) and sipedge run as subprocesses on their
own 127.43.75.x addresses with their own backends; every case runs on both in parallel
and the outcomes are kept for the tests and for the tables printed at the end.
Set CONFORMANCE_KEEP=1 to keep the work dir (configs, DBs, router logs).
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent), str(HERE.parents[1] / "files" / "sipedge")):   # the last: testsupport
    if p not in sys.path:
        sys.path.insert(0, p)

import conf_torture  # noqa: E402
from conf_compare import summary  # noqa: E402
from conf_lanes import Setup, run_both  # noqa: E402
from testsupport import procs  # noqa: E402

_REPORT: dict = {}


@pytest.fixture(scope="session")
def setup():
    wd = Path(tempfile.mkdtemp(prefix="conformance-"))
    s = Setup(wd)
    try:
        yield s
    finally:
        s.close()
        _REPORT["workdir"] = wd
        _REPORT["sipedge_log"] = s.sipedge.log_path if s.sipedge else None
        if os.environ.get("CONFORMANCE_KEEP"):
            print(f"\nconformance work dir kept: {wd}")
        else:
            _REPORT["sipedge_log_text"] = s.sipedge.log_text() if s.sipedge else ""
            shutil.rmtree(wd, ignore_errors=True)


@pytest.fixture(scope="session")
def outcomes(setup):
    ref, sub = run_both(setup)
    _REPORT["cases"] = (ref, sub)
    return ref, sub


@pytest.fixture(scope="session")
def torture(setup):
    """RFC 4475 files through both routers (in parallel), plus sipedge's process facts."""
    pid = setup.sipedge.proc.pid
    before = _proc_facts(pid)
    with ThreadPoolExecutor(2) as ex:
        fr = ex.submit(conf_torture.run, setup.ref, skip=conf_torture.NOT_FOR_KAMAILIO)
        fs = ex.submit(conf_torture.run, setup.sub)
        ref, sub = fr.result(), fs.result()
    after = _proc_facts(pid)
    _REPORT["torture"] = (ref, sub)
    return {"kamailio": ref, "sipedge": sub, "before": before, "after": after,
            "alive": setup.sipedge.alive(), "log": setup.sipedge.log_text(),
            "drained": _transactions_drained(setup)}


def _transactions_drained(setup, limit: float = 45.0) -> dict:
    """sipedge's own count (`sipedge ctl stats`) once its transactions are gone, or
    the last count when they are still there after ``limit`` seconds (a finished
    transaction lingers 5 s; a negative INVITE reply waits up to fr_timer for its ACK)."""
    last: dict = {}

    def drained() -> bool:
        try:
            last.update(setup.sipedge.ctl("stats"))
        except RuntimeError:   # no answer this time: ask again
            return False
        return last.get("server_transactions") == 0 and last.get("client_transactions") == 0
    procs.poll(drained, limit, interval=0.5)
    return last


def _proc_facts(pid: int) -> dict:
    f = procs.facts(pid)
    return {"fds": f.get("fds"), "Threads": f.get("threads"), "VmRSS": f.get("rss_kb")} if f else {}


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    if "cases" in _REPORT:
        ref, sub = _REPORT["cases"]
        tr.section("conformance: outcome per case (kamailio / sipedge)")
        for n in ref:
            k, s = summary(ref[n]), summary(sub[n]) if sub else "-"
            mark = "  " if k == s else "!="
            tr.write_line(f"{mark} {n}")
            tr.write_line(f"     kamailio: {k}")
            if k != s:
                tr.write_line(f"     sipedge : {s}")
    if "torture" in _REPORT:
        ref, sub = _REPORT["torture"]
        from test_conformance_rfc4475 import EXPECTED
        tr.section("RFC 4475 torture messages")
        tr.write_line(f"{'file':11s} {'cls':3s} {'kamailio (reference)':44s} {'sipedge':44s} probe")
        for n in sorted(ref, key=lambda x: EXPECTED[x][0]):
            cls = EXPECTED[n][1]
            p = sub[n]["probe_s"]
            tr.write_line(f"{n:11s} {cls:3s} {ref[n]['outcome'][:44]:44s} "
                          f"{sub[n]['outcome'][:44]:44s} {'%.0f ms' % (p * 1000) if p is not None else 'NO ANSWER'}")
