"""What the generated blocking API (`_sync/`) runs on: one private event loop, in a daemon thread.

A blocking method submits the async method's coroutine to that loop and waits for its result, so
the I/O code exists once, in async form, and behaves the same in both forms: background readers
(command output, watch polling) keep running on the loop between blocking calls.

Callbacks passed to the blocking API run on the loop's thread; they must not call back into the
blocking API (it would wait on itself, so it raises RuntimeError instead).

At exit the loop's tasks are ended, its thread joined, and threads Python did not start (pyqwest's
tokio threads) are given the time to leave the Python code they are in: pyqwest answers an awaited
read from such a thread, in `call_soon_threadsafe`, which releases and retakes the GIL, and the
awaiting code may go on (and the program end) before that thread has its GIL back. A finalizing
CPython before 3.14 ends a thread that retakes the GIL with pthread_exit, and its unwinding through
Rust's frames aborts the process: SIGABRT in ~4 % of `sandlot exec` runs before this.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import sys
import threading
import time
import types
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from typing import Any, ClassVar, Generic, Self, TypeVar, cast

T = TypeVar("T")
A = TypeVar("A")
F = TypeVar("F", bound=Callable[..., Any])


class _Loop:
    """One event loop per process, in a daemon thread, started on first use (and again after fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0

    def _get(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="sandlot-sync", daemon=True)
                self._thread.start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking sandlot call from a callback; use the Async* API inside callbacks")
        future = asyncio.run_coroutine_threadsafe(coro, self._get())
        try:
            return future.result()
        except KeyboardInterrupt:  # Ctrl-C: stop the work on the loop as well
            future.cancel()
            raise

    def stop(self) -> None:
        """End the loop's tasks (a background command's reader, a watch's poller) and its thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None or self._pid != os.getpid():
                return
            self._loop = self._thread = None

        async def end_tasks() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await loop.shutdown_asyncgens()

        with contextlib.suppress(Exception):  # a task that will not end is left to the daemon thread
            asyncio.run_coroutine_threadsafe(end_tasks(), loop).result(timeout=2)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=2)


_loop = _Loop()


@atexit.register
def _at_exit() -> None:
    """The async API's users too may end while a pyqwest thread is in `call_soon_threadsafe`."""
    _loop.stop()
    deadline = time.monotonic() + 1
    while _foreign_threads_in_python() and time.monotonic() < deadline:
        time.sleep(0.001)  # lets them take the GIL and leave


def _foreign_threads_in_python() -> set[int]:
    """Threads in Python code that the threading module did not start (nor ever saw)."""
    return set(sys._current_frames()) - {t.ident for t in threading.enumerate()}


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine of the async API on the private loop; its result, or its exception."""
    return _loop.run(coro)


async def _anext(iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    try:
        return False, await iterator.__anext__()
    except StopAsyncIteration:  # may not cross a Future, so it is returned as a flag
        return True, None


class SyncIterator(Iterator[T]):
    """Blocking iteration over an async iterator of the async API; `close()` (or leaving a `with`
    block) ends it early."""

    def __init__(self, iterator: AsyncIterator[T]):
        self._iterator = iterator

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> T:
        done, value = _loop.run(_anext(self._iterator))
        if done:
            raise StopIteration
        return value  # type: ignore[return-value]  # not None unless done

    def close(self) -> None:
        aclose: Callable[[], Coroutine[Any, Any, None]] | None = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            _loop.run(aclose())

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SyncWrapper(Generic[A]):
    """Base of the generated blocking classes: holds the async object in `_impl`."""

    _async_cls: ClassVar[type]
    _impl: A

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_async_cls" in cls.__dict__:
            _WRAPPERS[cls._async_cls] = cls

    def __init__(self, *args: object, **kwargs: object) -> None:
        raise TypeError(f"{type(self).__name__} objects come from the API (e.g. Sandbox.create()), "
                        "they are not constructed directly")

    @classmethod
    def _wrap(cls, impl: A) -> Self:
        """The blocking face of `impl`: one per async object (so `sandbox.files is sandbox.files`),
        held weakly by it."""
        ref = impl.__dict__.get("_sync_wrapper")
        wrapper = ref() if ref is not None else None
        if wrapper is None:
            wrapper = object.__new__(cls)
            wrapper._impl = impl
            impl.__dict__["_sync_wrapper"] = weakref.ref(wrapper)
        return wrapper

    def __repr__(self) -> str:
        return repr(self._impl).replace(type(self._impl).__name__, type(self).__name__, 1)


def unwrap(value: Any) -> Any:
    """An argument of a blocking method as its async twin takes it: a blocking object (a
    `Codebase` given to `Sandbox.create`) becomes the async object it wraps."""
    return value._impl if isinstance(value, SyncWrapper) else value


def instance_or_id(method: F) -> F:
    """The blocking twin of `_sandbox._instance_or_id`: on an instance, the generated method; on the
    class, the async class's by-id form, run to completion (`Sandbox.kill("sbx123")`)."""
    return cast(F, _InstanceOrId(method))


class _InstanceOrId:
    def __init__(self, method: Callable[..., Any]):
        self._method = method
        functools.update_wrapper(cast(Any, self), method)

    def __get__(self, obj: SyncWrapper[Any] | None, cls: type[SyncWrapper[Any]]) -> Callable[..., Any]:
        if obj is not None:
            return types.MethodType(self._method, obj)
        by_id = getattr(cls._async_cls, self._method.__name__)

        @functools.wraps(by_id)
        def call(*args: Any, **kwargs: Any) -> Any:
            return _blocking(run(by_id(*args, **kwargs)))

        return call


_WRAPPERS: dict[type, type[SyncWrapper[Any]]] = {}  # async class -> its generated blocking class


def _blocking(value: Any) -> Any:
    """A by-id call's result in blocking form: async objects of the API (a fork's children), alone
    or in a list, wrapped as the generated methods wrap them on an instance."""
    if isinstance(value, list):
        return [_blocking(item) for item in value]
    wrapper = _WRAPPERS.get(type(value))
    return wrapper._wrap(value) if wrapper is not None else value
