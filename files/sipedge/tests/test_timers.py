"""The timer queue, and the claim the shell's GC tuning rests on."""

import gc

from harness import B1, Harness, request, response
from sipedge.timers import Timers


def test_timers_fire_in_deadline_order_and_cancel():
    timers, fired = Timers(), []
    entries = [timers.start(t, lambda arg, now: fired.append((arg, now)), t) for t in (3.0, 1.0, 2.0)]
    timers.cancel(entries[2])
    assert timers.next_deadline() == 1.0
    timers.run(5.0)
    assert fired == [(1.0, 5.0), (3.0, 5.0)]
    assert len(timers) == 0 and timers.next_deadline() is None


def test_compaction_while_running_keeps_count_and_order():
    timers, fired = Timers(), []
    doomed = [timers.start(100.0 + i, lambda arg, now: fired.append(arg), i) for i in range(3000)]

    def cancel_all(_arg, now):
        for entry in doomed:
            timers.cancel(entry)  # compacts the heap in the middle of run()
        timers.start(1.5, lambda arg, now: fired.append(arg), "late")

    timers.start(1.0, cancel_all, None)
    timers.start(2.0, lambda arg, now: fired.append(arg), "two")
    timers.run(50.0)
    assert fired == ["late", "two"]
    assert len(timers) == 0 and timers.next_deadline() is None


def test_a_complete_call_leaves_no_reference_cycles():
    """The shell collects cyclic garbage rarely (gc.set_threshold) because the
    core makes none: every transaction and timer is freed by reference count."""
    edge = Harness()
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(20):
            sent = edge.recv(request(b"INVITE", call_id=b"gc%d" % i, branch=b"z9hG4bKgc%d" % i))
            fwd = sent[-1][1].serialize()
            edge.recv(response(fwd, 180, b"Ringing"), src=B1)
            edge.recv(response(fwd, 486 if i % 2 else 200, b"X"), src=B1)
        edge.advance(60)
        assert edge.live() == (0, 0)
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
