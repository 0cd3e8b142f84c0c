"""The blocking API is generated from the async one: the generic wrapper, on toy classes (no server)."""

from __future__ import annotations

import asyncio
import inspect
import threading

import pytest

from sandlot.client._sync import SyncIterator, synchronize


class AsyncChild:
    def __init__(self, n):
        self.n = n

    async def double(self):
        await asyncio.sleep(0)
        return self.n * 2


class AsyncToy:
    """Toy."""

    label = "toy"

    def __init__(self, n=1):
        self.n = n
        self.child = AsyncChild(n)
        self.entered = self.exited = False

    @classmethod
    async def create(cls, n):
        await asyncio.sleep(0)
        return cls(n)

    @staticmethod
    async def add(a, b):
        return a + b

    @property
    def thread(self):
        return threading.current_thread().name

    async def loop_thread(self):
        return threading.current_thread().name

    async def children(self, k):
        return [AsyncChild(i) for i in range(k)]

    async def fail(self):
        raise KeyError("boom")

    async def count(self, k):
        for i in range(k):
            await asyncio.sleep(0)
            yield i

    async def call(self, callback):
        return callback(self.n)

    def plain(self):
        return AsyncChild(self.n + 1)

    async def identity(self, other):
        return other

    async def __aenter__(self):
        self.entered = True
        return self

    async def __aexit__(self, *exc):
        self.exited = True

    async def __aiter__(self):
        for i in range(3):
            yield i


Toy = synchronize(AsyncToy, "Toy")
Child = synchronize(AsyncChild, "Child")


def test_classmethods_and_staticmethods_run_to_completion():
    toy = Toy.create(3)
    assert isinstance(toy, Toy) and toy.n == 3
    assert Toy.add(2, 3) == 5


def test_results_of_synchronized_classes_are_wrapped():
    toy = Toy.create(4)
    assert isinstance(toy.child, Child) and toy.child.double() == 8
    assert [c.double() for c in toy.children(3)] == [0, 2, 4]
    assert isinstance(toy.plain(), Child)
    assert toy.child is toy.child  # one wrapper per async object


def test_arguments_are_unwrapped():
    toy = Toy.create(1)
    assert toy.identity(toy) is toy  # went in as AsyncToy, came back wrapped again


def test_exceptions_propagate_unchanged():
    with pytest.raises(KeyError, match="boom"):
        Toy.create(1).fail()


def test_async_iterators_become_iterators():
    toy = Toy.create(1)
    counter = toy.count(4)
    assert isinstance(counter, SyncIterator)
    assert list(counter) == [0, 1, 2, 3]
    assert list(toy) == [0, 1, 2]


def test_context_manager():
    with Toy.create(1) as toy:
        assert toy.entered
    assert toy.exited


def test_coroutines_run_on_the_private_loop_thread():
    toy = Toy.create(1)
    assert toy.loop_thread() == "sandlot-sync"
    assert toy.thread == threading.current_thread().name  # properties are no I/O: evaluated in place


def test_blocking_call_from_a_callback_raises_instead_of_deadlocking():
    toy = Toy.create(1)
    with pytest.raises(RuntimeError, match="callback"):
        toy.call(lambda n: Toy.add(n, 1))


def test_calls_from_several_threads():
    toy = Toy.create(2)
    results = []
    threads = [threading.Thread(target=lambda: results.append(toy.child.double())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [4] * 8


def test_not_constructed_directly():
    with pytest.raises(TypeError):
        Toy(1)


def test_metadata_is_carried_over():
    assert Toy.label == "toy"
    assert inspect.signature(Toy.create) == inspect.signature(AsyncToy.create)
    assert "Blocking form of `AsyncToy`" in Toy.__doc__
    assert ".Toy object" in repr(Toy.create(1))
