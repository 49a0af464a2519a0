"""One thread's event loop, and the line-framed link between processes.

`Loop` is a plain epoll loop: handlers per file descriptor, the timers of a
sans-I/O core (epoll's timeout is the core's next deadline), and work posted
by other threads through a queue and a wake-up pipe.  It is hand-written
rather than asyncio because per wake-up it costs a fraction of asyncio's
machinery, and wake-ups are what a busy edge is made of (asyncio's loop took
about a fifth of the CPU per call in `make bench`).

`Link` carries JSON messages, one per line, over a non-blocking Unix stream
socket between the main process and a worker: any size, in order, and a
closed link (a process gone) is seen at once.
"""

import json
import logging
import os
import queue
import select
import signal
import threading
import time

log = logging.getLogger("sipedge")
IN, OUT = select.EPOLLIN, select.EPOLLOUT
BACKGROUND_NICE = 10


def background():
    """Lower the calling thread's CPU priority (Linux: per thread): its work
    (preparing a reload, verifying a password) yields the CPU to the SIP
    loops.  Raising one's nice value needs no privilege."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)
    except OSError as exc:
        log.debug("cannot lower this thread's priority: %s", exc)


class Loop:
    """An epoll loop driving one core's timers until stopped."""

    def __init__(self):
        self.poller = select.epoll()
        self.handlers = {}  # fd -> handler(now, events)
        self.stopping = threading.Event()
        self._posted = queue.SimpleQueue()  # (function, args) handed over by threads
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.add(self._wake_r, self._run_posted)

    def add(self, fd, handler, events=IN):
        self.handlers[fd] = handler
        self.poller.register(fd, events)

    def modify(self, fd, events):
        self.poller.modify(fd, events)

    def remove(self, fd):
        if self.handlers.pop(fd, None) is not None:
            self.poller.unregister(fd)

    def post(self, function, *args):
        """Run `function(*args)` on the loop's thread (callable from any thread)."""
        self._posted.put((function, args))
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: the loop is awake anyway

    def _run_posted(self, _now, _events):
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while True:
            try:
                function, args = self._posted.get_nowait()
            except queue.Empty:
                return
            function(*args)

    def stop(self, *_args):
        self.stopping.set()
        try:
            os.write(self._wake_w, b"\0")
        except BlockingIOError:
            pass

    def run(self, core, on_signal=None):
        """Serve until stopped.  SIGTERM and SIGINT call `on_signal` (default:
        stop) on the loop's thread."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_args: self.post(on_signal or self.stop))
        signal.set_wakeup_fd(self._wake_w)  # a signal wakes epoll up
        handlers, poller = self.handlers, self.poller
        try:
            while not self.stopping.is_set():
                deadline = core.next_deadline()
                timeout = -1 if deadline is None else max(0.0, deadline - time.monotonic())
                events = poller.poll(timeout)
                now = time.monotonic()
                for fd, mask in events:
                    handler = handlers.get(fd)
                    if handler is not None:
                        handler(now, mask)
                if deadline is not None and now >= deadline:
                    try:
                        core.run_timers(now)
                    except Exception:  # pylint: disable=broad-except
                        log.exception("internal error in a timer")
        finally:
            signal.set_wakeup_fd(-1)

    def close(self):
        self.poller.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


class Link:
    """JSON messages, one per line, over a non-blocking Unix stream socket;
    `on_message(message)` for each one received, `on_close()` when the other
    side is gone."""

    def __init__(self, loop, sock, on_message, on_close):
        self.loop, self.sock, self.on_message, self.on_close = loop, sock, on_message, on_close
        sock.setblocking(False)
        self._in = b""
        self._out = b""
        self.closed = False
        loop.add(sock.fileno(), self._ready)

    def send(self, message):
        if self.closed:
            return
        was_empty = not self._out
        self._out += json.dumps(message, separators=(",", ":")).encode() + b"\n"
        if was_empty:
            self._flush()

    def _flush(self):
        try:
            sent = self.sock.send(self._out)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._close()
            return
        self._out = self._out[sent:]
        self.loop.modify(self.sock.fileno(), IN | OUT if self._out else IN)

    def _ready(self, _now, events):
        if events & OUT:
            self._flush()
        if not events & (IN | select.EPOLLHUP | select.EPOLLERR) or self.closed:
            return
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close()
            return
        *lines, self._in = (self._in + data).split(b"\n")
        for line in lines:
            self.on_message(json.loads(line))

    def _close(self):
        if not self.closed:
            self.closed = True
            self.loop.remove(self.sock.fileno())
            self.sock.close()
            self.on_close()
