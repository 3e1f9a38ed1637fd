"""The newest-wins slot: where a frame waits for the next stage of a live stream, replaced by a newer one if that
stage has not taken it yet. Every replacement is a dropped frame, counted, and reported through `on_drop` (the
stream's stats: `/metrics` shows them per slot). One class for every such hand-off: ingest, WHIP, the shared
encoder, per-viewer tracks.

Producers and consumers may be threads or an asyncio event loop: `take()` blocks a thread, `take_async()` awaits
on a loop, `put()` may be called from either.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class NewestSlot(Generic[T]):
    """Holds at most one item. Overflow policy: the newest item replaces an untaken one (counted as dropped)."""

    def __init__(self, name: str, on_drop: Callable[[str], None] | None = None) -> None:
        self.name = name
        self.on_drop = on_drop  # called with `name` for each dropped item (set later by who counts drops)
        self.dropped = 0
        self._item: T | None = None
        self._closed = False
        self._ready = threading.Condition()
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def closed(self) -> bool:
        return self._closed

    def put(self, item: T) -> bool:
        """Offer `item`; returns True when it replaced one nobody took (a drop). Ignored once closed."""
        with self._ready:
            if self._closed:
                return False
            replaced = self._item is not None
            self._item = item
            if replaced:
                self.dropped += 1
            self._ready.notify()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(_wake, waiter)
        if replaced and self.on_drop is not None:
            self.on_drop(self.name)
        return replaced

    def take_nowait(self) -> T | None:
        with self._ready:
            item, self._item = self._item, None
            return item

    def take(self, timeout: float | None = None) -> T | None:
        """The item, waiting for one up to `timeout` seconds; None on timeout or once closed and empty."""
        with self._ready:
            if self._item is None and not self._closed:
                self._ready.wait(timeout)
            item, self._item = self._item, None
            return item

    async def take_async(self) -> T | None:
        """The item, awaited on the running event loop; None once closed and empty."""
        loop = asyncio.get_running_loop()
        while True:
            with self._ready:
                if self._item is not None or self._closed:
                    item, self._item = self._item, None
                    return item
                waiter: asyncio.Future[None] = loop.create_future()
                self._async_waiters.append((loop, waiter))
            try:
                await waiter
            finally:
                with self._ready:
                    if (loop, waiter) in self._async_waiters:
                        self._async_waiters.remove((loop, waiter))

    def close(self) -> None:
        """No more items: waiting consumers wake up (an item still here is taken first, then None)."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
            waiters, self._async_waiters = self._async_waiters, []
        for loop, waiter in waiters:
            loop.call_soon_threadsafe(_wake, waiter)
