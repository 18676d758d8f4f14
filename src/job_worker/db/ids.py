"""Ids of new rows, taken from a table's sequence ahead of their insert.

A process keeps a block of ids of a table (PostgreSQL: ``nextval`` of its ``id``
column's sequence) and hands them to the rows its transactions create, so that a
row whose insert is deferred (:meth:`job_worker.db.cursor.Cursor.defer_insert`) has
its id at once without a round trip: a single enqueue is one message to the
database, its ``INSERT`` and ``COMMIT`` together.

The blocks double while they run out within :data:`KEEP_SECONDS` (1, 2, 4 … up to
:data:`IdBlocks.MAX`); ids held longer are dropped, and the next block is as big as
what the dropped one gave in its time. So ids stay close to the order in which rows
are created across the processes that share a database (the job list shows the
newest first by id), a process that creates a row now and then takes blocks of one,
and the ids lost (sequences never give an id back; a rolled-back insert loses its id
too) are the rest of one block at a time per table and process: at worst twice as
many as the block's time used.

A process that uses up its block at a steady pace takes the next one in the message
of the commit that used the last id (:meth:`IdBlocks.refill_size`), sized to run out
before it is too old: its rows never wait for a block of their own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import NamedTuple

_logger = logging.getLogger(__name__)

#: how long a process keeps ids it took and did not use, in seconds
KEEP_SECONDS = 1.0


#: ``fetch(table, n)``: ``n`` new ids of ``table`` from its sequence, in increasing order
Fetch = Callable[[str, int], list[int]]
#: ``skip(table, past)``: move the sequence of ``table`` past ``past`` and the table's rows
Skip = Callable[[str, int], None]


class Refill(NamedTuple):
    """A block of ids to take with a commit (:meth:`IdBlocks.refill_size`)."""

    #: how many (0: none)
    size: int
    #: the highest id taken so far
    after: int


class _Block:
    __slots__ = ("free", "highest", "set_back", "size", "taken_at")

    def __init__(self) -> None:
        #: the ids not handed out yet, last first (the next one is popped from the end)
        self.free: list[int] = []
        #: the size of the last block taken
        self.size = 0
        self.taken_at = 0.0
        #: the highest id taken from the sequence so far
        self.highest = 0
        #: the first id of a refill that found the sequence set back (0: none): the next
        #: take moves the sequence past the ids taken before it asks for more
        self.set_back = 0


class IdBlocks:
    """The ids of this process's next rows, per table (thread-safe; a forked child
    starts with none of its parent's)."""

    #: the largest block taken at once (a request for more takes what it asks)
    MAX = 1024

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._blocks: dict[str, _Block] = {}
        self._lock = threading.Lock()
        _ALL.add(self)

    def take(
        self,
        table: str,
        count: int,
        fetch: Fetch,
        skip: Skip,
    ) -> list[int]:
        """``count`` ids of ``table`` in increasing order; ``fetch(table, n)`` takes
        ``n`` new ones from the sequence when the block has too few.

        A sequence that gives an id this process took already was set back (``TRUNCATE
        ... RESTART IDENTITY``, ``ALTER SEQUENCE ... RESTART``): it would give again
        the ids this process used after that, so ``skip(table, highest)`` moves it past
        them and past the table's rows, and the block is taken again."""
        with self._lock:
            free = self._filled(table, count, fetch, skip)
            if count == 1:
                return [free.pop()]
            taken = free[: -count - 1 : -1]
            del free[-count:]
            return taken

    def hold(
        self,
        table: str,
        count: int,
        fetch: Fetch,
        skip: Skip,
    ) -> None:
        """Make sure the block of ``table`` holds ``count`` ids, taking new ones as
        :meth:`take` would, without handing any out: the next rows have their ids
        without asking the database (a cursor asks while it can: see
        ``PostgresCursor._send_ahead``). Nothing for a table whose ids this process
        never took."""
        with self._lock:
            if table in self._blocks:
                self._filled(table, count, fetch, skip)

    def refill_size(self, table: str) -> Refill:
        """How many ids of ``table`` to take with the commit of a transaction that used
        the last of its block (see ``PostgresCursor.commit``), so that the next row has
        its id without a round trip of its own: 0 when the block has ids left, or when
        the process creates rows of ``table`` too seldom for a block to live until the
        next one (its last block held one id: blocks grow only while they run out within
        :data:`KEEP_SECONDS`). The size keeps the block's doubling, and holds at most
        about half of :data:`KEEP_SECONDS` of rows at the pace the last block was used
        up: taken ahead, it must run out before it is too old, or the next row would
        drop it and ask the database anyway. With it, the highest id taken so far, for
        :meth:`refill`."""
        with self._lock:
            block = self._blocks.get(table)
            if block is None or block.free or block.size < 2:
                return Refill(0, 0)
            spent = self._clock() - block.taken_at
            if spent >= KEEP_SECONDS:
                return Refill(0, 0)  # (the next take drops it, and sizes the next one)
            paced = int(block.size * KEEP_SECONDS / 2 / spent) if spent > 0 else self.MAX
            return Refill(max(1, min(2 * block.size, self.MAX, paced)), block.highest)

    def refill(self, table: str, ids: list[int], after: int) -> None:
        """Hand ``ids`` out (in increasing order, as :meth:`refill_size` asked them,
        ``after`` the highest id taken then) in order with those the block of ``table``
        holds: another thread may have taken a block meanwhile. Ids not above ``after``
        come from a sequence that was set back: they are left unused, and the next
        :meth:`take` that asks for ids moves the sequence past the ids taken and the
        table's rows first."""
        if not ids:
            return
        with self._lock:
            block = self._blocks.get(table)
            if block is None:
                return
            if ids[0] <= after:
                block.set_back = ids[0]
                return
            if block.free and block.free[0] > ids[0]:  # (a block taken meanwhile)
                block.free[:] = sorted([*block.free, *ids], reverse=True)
            else:
                block.free[:0] = ids[::-1]
            block.size, block.taken_at = len(ids), self._clock()
            block.highest = max(block.highest, ids[-1])

    def _filled(
        self,
        table: str,
        count: int,
        fetch: Fetch,
        skip: Skip,
    ) -> list[int]:
        """The free ids of ``table``'s block (the lock held), ``count`` of them at least."""
        block = self._blocks.get(table)
        if block is None:
            block = self._blocks[table] = _Block()
        now = self._clock()
        if block.free and now - block.taken_at > KEEP_SECONDS:
            # too old: dropped, and the next block is as big as what this one gave
            # in its time (half of it is doubled below)
            block.size = (block.size - len(block.free)) // 2
            block.free = []
        free = block.free
        if len(free) < count:
            size = max(count - len(free), min(2 * block.size, self.MAX) or 1)
            # (a refill may have seen the sequence set back already: it moved it on by
            # its block, so a take must not trust its next ids to tell)
            set_back, block.set_back = block.set_back, 0
            ids = fetch(table, size) if not set_back else []
            if set_back or ids[0] <= block.highest:
                _logger.warning(
                    "the id sequence of %s was set back (to %d; this process took ids up"
                    " to %d): it is moved past them and the table's rows",
                    table,
                    set_back or ids[0],
                    block.highest,
                    extra={"event": "db.id_sequence_set_back"},
                )
                skip(table, block.highest)
                ids = fetch(table, size)
            free[:0] = ids[::-1]
            block.size, block.taken_at, block.highest = size, now, ids[-1]
        return free

    def lowest_free(self, table: str) -> int | None:
        """The lowest id of ``table`` this process holds and has not handed out."""
        with self._lock:
            block = self._blocks.get(table)
            if block is None or not block.free:
                return None
            return block.free[-1]


#: every instance, for a forked child to forget its parent's ids (both would use them)
_ALL: weakref.WeakSet[IdBlocks] = weakref.WeakSet()


def _forget_in_child() -> None:
    for blocks in list(_ALL):
        blocks._blocks = {}
        blocks._lock = threading.Lock()  # (held by another thread of the parent, maybe)


os.register_at_fork(after_in_child=_forget_in_child)
