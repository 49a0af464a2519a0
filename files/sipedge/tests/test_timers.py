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


def test_finished_calls_leave_no_reference_cycles():
    """The shell collects cyclic garbage rarely (gc.set_threshold) and freezes its
    heap out of the collector at each reload (shell.Edge._prepare), because the
    core makes no cycles: every transaction and timer is freed by reference count,
    whether the call was answered, refused, failed over, cancelled or unanswered."""
    edge = Harness(dispatcher__failover=True)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(40):
            call_id, branch = b"gc%d" % i, b"z9hG4bKgc%d" % i
            fwd = edge.recv(request(b"INVITE", call_id=call_id, branch=branch))[-1][1].serialize()
            edge.recv(response(fwd, 180, b"Ringing"), src=B1)
            final = (200, 486, 503, None, None)[i % 5]
            if final is not None:
                edge.recv(response(fwd, final, b"X"), src=B1)
            elif i % 5 == 3:
                edge.recv(request(b"CANCEL", call_id=call_id, branch=branch, cseq=b"1 CANCEL"))
            edge.advance(1)
            for dest in edge.proxy.dispatcher.destinations():  # a failure marks it down: up again
                edge.proxy.dispatcher.set_state(dest.setid, dest.uri, 0)
        edge.advance(300)
        assert edge.live() == (0, 0)
        assert gc.collect() == 0
    finally:
        if enabled:
            gc.enable()
