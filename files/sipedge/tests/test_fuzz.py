"""The router under 4,500 mutated datagrams (fuzz_datagrams.py) on loopback, run by
fuzz_run.py against a real `sipedge run` and a backend socket that answers like a SIP
server; `make fuzz` is the long run of the same code.

One run per module, checked four ways.  Each failure names the datagrams (seed and
index) and the file holding them (findings.jsonl in the run's work dir), which
`python fuzz_run.py --replay FILE` sends again.
"""

import pytest

import fuzz_run
from fuzz_datagrams import Generator

SEED = 9
COUNT = 4500
WARMUP = 500         # datagrams before the memory baseline
PROBE_EVERY = 100    # a well-formed OPTIONS through the router every N datagrams


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return fuzz_run.run(tmp_path_factory.mktemp("fuzz"), seed=SEED, count=COUNT, warmup=WARMUP,
                        probe_every=PROBE_EVERY, budget=60.0)


def test_datagrams_depend_on_the_seed_alone():
    one, two, other = Generator(SEED), Generator(SEED), Generator(SEED + 1)
    first = [one.datagram(i) for i in range(300)]
    assert [d.data for d in first] == [two.datagram(i).data for i in range(300)]
    assert [d.data for d in first] != [other.datagram(i).data for i in range(300)]


def test_router_stays_alive_and_answers(report):
    failures, sent = report.liveness, report.sent
    assert not failures, "the router stopped answering:\n" + report.describe(failures)
    assert sent == COUNT, f"{sent} of {COUNT} datagrams sent: {report.stopped}\n{report.summary()}"


def test_router_logs_no_traceback(report):
    errors = report.errors
    assert not errors, f"{len(errors)} datagrams made the router log an error:\n" + report.describe(errors)


def test_transactions_drain_to_zero(report):
    """After the last datagram and the linger time: no transaction, and no timer
    beyond those of the idle router before the first datagram (`sipedge ctl stats`)."""
    # the likely culprits: datagrams whose error was raised inside the transaction layer
    suspects = [f for f in report.errors if "transaction.py" in f.detail] or report.errors
    listed = "".join(f"\n  {report.where(f)}: {f.detail.splitlines()[-1]}" for f in suspects[:10])
    drained = report.drained
    assert drained, (f"left {fuzz_run.DRAIN_LIMIT:g} s after the last datagram: {report.transactions()} (idle: "
                     f"{report.idle_timers} timers); datagrams "
                     f"that logged an error in the transaction layer:{listed or ' none'}\nreplay: {report.replay}")


def test_memory_and_file_descriptors_stay_flat(report):
    """Resident memory within RSS_MARGIN_KB and no more open files, from the end of the
    warm-up to the end (both measured with every transaction gone)."""
    assert report.warm and report.end, report.summary()
    rss, fds = report.rss_growth_kb, report.fd_growth
    assert rss <= fuzz_run.RSS_MARGIN_KB, (
        f"RSS grew {rss} kB ({report.warm['rss_kb']} -> {report.end['rss_kb']} kB), margin "
        f"{fuzz_run.RSS_MARGIN_KB} kB; {report.long_values} datagrams (seed {SEED}) carried long unique values "
        f"after the warm-up; to see which kind stays: python fuzz_run.py --replay {report.replay} --only long-method "
        "(or long-ruri, long-header-name, long-host, huge-value)")
    assert fds <= fuzz_run.FD_MARGIN, f"open file descriptors: {report.warm} -> {report.end}"
