"""The blocking API, produced from the async one (in the manner of Modal's synchronicity).

`synchronize(AsyncX, "X")` builds a class whose every public attribute forwards to the async class
or instance: coroutines run to completion on a private event loop in a daemon thread, async
iterators become iterators, async context managers context managers, and results that are
instances of other synchronized classes come back wrapped. The I/O code exists once, in async form.

Callbacks passed to the blocking API run on that private loop's thread; they must not call back
into the blocking API (that would wait on itself, so it raises RuntimeError instead).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine
from typing import Any

_SYNC_CLASSES: dict[type, type] = {}


class _Loop:
    """One event loop per process, in a daemon thread, started on first use (and again after fork)."""

    def __init__(self):
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

    def run(self, coro: Coroutine) -> Any:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking sandlot call from a callback; use the Async* API inside callbacks")
        future = asyncio.run_coroutine_threadsafe(coro, self._get())
        try:
            return future.result()
        except KeyboardInterrupt:  # Ctrl-C: stop the work on the loop as well
            future.cancel()
            raise


_loop = _Loop()


def run(coro: Coroutine) -> Any:
    """Run a coroutine on the private loop and return its result (wrapped)."""
    return wrap(_loop.run(coro))


def wrap(value: Any) -> Any:
    """The blocking face of a value produced by the async API."""
    if isinstance(value, SyncWrapper):
        return value
    sync_cls = next((_SYNC_CLASSES[t] for t in type(value).__mro__ if t in _SYNC_CLASSES), None)
    if sync_cls is not None:
        return sync_cls._wrap(value)
    if inspect.iscoroutine(value):
        return run(value)
    if isinstance(value, AsyncIterator):
        return SyncIterator(value)
    if isinstance(value, list):
        return [wrap(v) for v in value]
    return value


def unwrap(value: Any) -> Any:
    return value._impl if isinstance(value, SyncWrapper) else value


def _forwarding(fn):
    """A blocking function calling `fn`: arguments unwrapped, result run and wrapped."""
    @functools.wraps(fn)
    def call(*args, **kwargs):
        return wrap(fn(*map(unwrap, args), **{k: unwrap(v) for k, v in kwargs.items()}))
    return call


class _Forward:
    """Class attribute of a synchronized class: forwards `name` to the async instance, or to the
    async class when looked up on the class (classmethods, staticmethods, instance-or-id methods)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, obj, cls):
        target = obj._impl if obj is not None else cls._async_cls
        value = getattr(target, self.name)
        return _forwarding(value) if callable(value) and not isinstance(value, type) else wrap(value)


async def _anext(iterator: AsyncIterator) -> tuple[bool, Any]:
    try:
        return False, await iterator.__anext__()
    except StopAsyncIteration:  # may not cross a Future, so it is returned as a flag
        return True, None


class SyncIterator:
    """Blocking iteration over an async iterator; `close()` ends it early."""

    def __init__(self, iterator: AsyncIterator):
        self._iterator = iterator

    def __iter__(self):
        return self

    def __next__(self):
        done, value = _loop.run(_anext(self._iterator))
        if done:
            raise StopIteration
        return wrap(value)

    def close(self) -> None:
        if hasattr(self._iterator, "aclose"):
            _loop.run(self._iterator.aclose())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SyncWrapper:
    """Base of synchronized classes; holds the async object in `_impl`."""

    _async_cls: type
    _impl: Any

    @classmethod
    def _wrap(cls, impl):
        # one wrapper per async object, so `sandbox.files is sandbox.files`; held weakly by the impl
        ref = impl.__dict__.get("_sync_wrapper")
        wrapper = ref() if ref is not None else None
        if wrapper is None:
            wrapper = object.__new__(cls)
            wrapper._impl = impl
            impl.__dict__["_sync_wrapper"] = weakref.ref(wrapper)
        return wrapper

    def __init__(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} objects come from the API (e.g. Sandbox.create()), "
                        "they are not constructed directly")

    def __getattr__(self, name: str):  # instance attributes of the async object (e.g. `commands`)
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._impl, name)
        return _forwarding(value) if callable(value) else wrap(value)

    def __setattr__(self, name: str, value) -> None:
        if name == "_impl":
            object.__setattr__(self, name, value)
        else:
            setattr(self._impl, name, unwrap(value))

    def __dir__(self):
        return sorted(set(super().__dir__()) | {n for n in dir(self._impl) if not n.startswith("_")})

    def __repr__(self) -> str:
        return repr(self._impl).replace(type(self._impl).__name__, type(self).__name__, 1)


def _enter(self):
    return wrap(_loop.run(self._impl.__aenter__()))


def _exit(self, *exc):
    return _loop.run(self._impl.__aexit__(*exc))


def _iter(self):
    return SyncIterator(self._impl.__aiter__())


def synchronize(async_cls: type, name: str, doc: str | None = None) -> type:
    """Build the blocking twin of `async_cls` and register it, so results get wrapped."""
    namespace: dict[str, Any] = {
        "_async_cls": async_cls,
        "__doc__": doc or f"Blocking form of `{async_cls.__name__}`: the same API, without `await`.",
        "__module__": "sandlot",
        "__qualname__": name,
    }
    for attr in dir(async_cls):
        if not attr.startswith("_"):
            namespace[attr] = _Forward(attr)
    if hasattr(async_cls, "__aenter__"):
        namespace.update(__enter__=_enter, __exit__=_exit)
    if hasattr(async_cls, "__aiter__"):
        namespace["__iter__"] = _iter
    sync_cls = type(name, (SyncWrapper,), namespace)
    _SYNC_CLASSES[async_cls] = sync_cls
    return sync_cls
