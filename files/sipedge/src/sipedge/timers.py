"""A timer queue driven by the caller's clock (the core never reads time)."""

import heapq
import itertools


class Timers:
    """Deadlines in a heap; a cancelled entry stays until it surfaces or the
    heap is compacted, so cancelling is O(1)."""

    def __init__(self):
        self._heap = []
        self._seq = itertools.count()
        self._dead = 0

    def start(self, when, callback, arg):
        entry = [when, next(self._seq), callback, arg]
        heapq.heappush(self._heap, entry)
        return entry

    def cancel(self, entry):
        if entry is not None and entry[2] is not None:
            entry[2] = entry[3] = None
            self._dead += 1
            if self._dead > 1024 and self._dead * 2 > len(self._heap):
                # In place: run() may be iterating over this very list.
                self._heap[:] = [e for e in self._heap if e[2] is not None]
                heapq.heapify(self._heap)
                self._dead = 0

    def next_deadline(self):
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
            self._dead -= 1
        return heap[0][0] if heap else None

    def run(self, now):
        """Fire every timer due at `now` (callbacks may start new ones)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            callback, arg = entry[2], entry[3]
            if callback is None:
                self._dead -= 1
            else:
                entry[2] = entry[3] = None  # a later cancel() of a fired timer is a no-op
                callback(arg, now)

    def __len__(self):
        """Number of live timers."""
        return len(self._heap) - self._dead
