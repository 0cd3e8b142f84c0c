"""The agent's event loop: one epoll loop driving callbacks, timers and coroutines.

asyncio would do, but importing it costs ~40 ms and ~8 MB of private memory in every sandbox.
Handlers stay ``async def``: they await the Futures made here, and a Task drives each one. epoll
itself rather than ``selectors`` over it: that module's imports (collections, namedtuple) cost ~3 ms
of every sandbox's start, before its agent can answer.
"""

import heapq
import select
import sys
import time
from _collections import deque

_epoll = select.epoll()
_callbacks = {}  # fd -> [reader callback, writer callback]
_ready = deque()  # callbacks to run in this turn
_timers = []  # heap of Timer


class CancelledError(BaseException):
    """Thrown into a cancelled Task at its await (BaseException, as in asyncio: not an error)."""


def log_exception(what):
    import traceback  # only when something went wrong: it pulls in ~3 ms of modules

    print("sandlot-agent: %s:\n%s" % (what, traceback.format_exc()), file=sys.stderr, flush=True)


def call_soon(callback, *args):
    _ready.append((callback, args))


class Timer:
    __slots__ = ("when", "callback", "args", "cancelled")

    def __init__(self, when, callback, args):
        self.when, self.callback, self.args, self.cancelled = when, callback, args, False

    def __lt__(self, other):
        return self.when < other.when

    def cancel(self):
        self.cancelled = True


def call_later(delay, callback, *args):
    timer = Timer(time.monotonic() + delay, callback, args)
    heapq.heappush(_timers, timer)
    return timer


def _watch(fd, index, callback):
    entry = _callbacks.get(fd)
    if entry is None:
        entry = _callbacks[fd] = [None, None]
        entry[index] = callback
        _epoll.register(fd, _events(entry))
    else:
        entry[index] = callback
        _epoll.modify(fd, _events(entry))


def _unwatch(fd, index):
    entry = _callbacks.get(fd)
    if entry is None or entry[index] is None:
        return
    entry[index] = None
    if entry[0] is None and entry[1] is None:
        del _callbacks[fd]
        try:
            _epoll.unregister(fd)
        except OSError:
            pass  # closed since it was watched: epoll dropped it then
    else:
        _epoll.modify(fd, _events(entry))


def _events(entry):
    return (select.EPOLLIN if entry[0] else 0) | (select.EPOLLOUT if entry[1] else 0)


# An error or a hang-up wakes both callbacks, as selectors reports it: a reader sees EOF, a writer EPIPE
_READABLE = ~select.EPOLLOUT
_WRITABLE = ~select.EPOLLIN


def add_reader(fd, callback, *args):
    _watch(fd, 0, (callback, args))


def remove_reader(fd):
    _unwatch(fd, 0)


def add_writer(fd, callback, *args):
    _watch(fd, 1, (callback, args))


def remove_writer(fd):
    _unwatch(fd, 1)


class Future:
    __slots__ = ("_done", "_result", "_exception", "_callbacks")

    def __init__(self):
        self._done, self._result, self._exception, self._callbacks = False, None, None, []

    def done(self):
        return self._done

    def result(self):
        if self._exception is not None:
            raise self._exception
        return self._result

    def set_result(self, value):
        self._finish(value, None)

    def set_exception(self, exception):
        self._finish(None, exception)

    def _finish(self, value, exception):
        if self._done:
            return
        self._done, self._result, self._exception = True, value, exception
        for callback in self._callbacks:
            call_soon(callback, self)
        self._callbacks = None

    def add_done_callback(self, callback):
        if self._done:
            call_soon(callback, self)
        else:
            self._callbacks.append(callback)

    def remove_done_callback(self, callback):
        if not self._done and callback in self._callbacks:
            self._callbacks.remove(callback)

    def __await__(self):
        if not self._done:
            yield self
        return self.result()


class Task(Future):
    """Runs a coroutine, resuming it whenever the Future it awaits is done."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro):
        super().__init__()
        self._coro, self._waiting = coro, None
        call_soon(self._step, None)

    def _step(self, future, throw=None):
        if self._done or (future is not None and future is not self._waiting):
            return  # finished, or woken by what it awaited before a cancel
        self._waiting = None
        try:
            # resumed, the awaiting Future.__await__ returns (or raises) the Future's outcome
            awaited = self._coro.send(None) if throw is None else self._coro.throw(throw)
        except StopIteration as e:
            self.set_result(e.value)
        except CancelledError as e:
            self.set_exception(e)
        except BaseException as e:
            if not self._callbacks:  # nobody is there to see it
                log_exception("unhandled error in a task")
            self.set_exception(e)
        else:
            self._waiting = awaited
            awaited.add_done_callback(self._step)

    def cancel(self):
        """Throw CancelledError into the coroutine where it waits. Now, not in a later turn: its
        finally blocks must unregister fds before the caller may close them."""
        if self._done:
            return
        if self._waiting is not None:
            self._waiting.remove_done_callback(self._step)
        self._step(None, CancelledError())


async def first(*futures):
    """Wait until one of ``futures`` is done (its outcome stays in it)."""
    woken = Future()

    def wake(_):
        woken.set_result(None)

    for future in futures:
        future.add_done_callback(wake)
    try:
        await woken
    finally:
        for future in futures:
            future.remove_done_callback(wake)


async def wait_readable(fd, timeout=None):
    """Wait until ``fd`` is readable; TimeoutError after ``timeout`` seconds."""
    ready = Future()
    add_reader(fd, ready.set_result, True)
    timer = call_later(timeout, ready.set_result, False) if timeout is not None else None
    try:
        if not await ready:
            raise TimeoutError()
    finally:
        remove_reader(fd)
        if timer is not None:
            timer.cancel()


def run_until(stop):
    """Run callbacks, timers and I/O until the Future ``stop`` is done."""
    while not stop.done():
        timeout = None
        if _ready:
            timeout = 0
        elif _timers:
            timeout = max(0, _timers[0].when - time.monotonic())
        for fd, mask in _epoll.poll(-1 if timeout is None else timeout):
            for index, bits in ((0, _READABLE), (1, _WRITABLE)):
                # looked up now: an earlier callback of this turn may have removed this one
                entry = _callbacks.get(fd)
                if mask & bits and entry is not None and entry[index] is not None:
                    _run(*entry[index])
        now = time.monotonic()
        while _timers and _timers[0].when <= now:
            timer = heapq.heappop(_timers)
            if not timer.cancelled:
                _ready.append((timer.callback, timer.args))
        for _ in range(len(_ready)):
            callback, args = _ready.popleft()
            _run(callback, args)


def _run(callback, args):
    try:
        callback(*args)
    except Exception:
        log_exception("error in a callback")
