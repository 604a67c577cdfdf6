"""State in shared memory, so a separate audio process sees the same arrays.

The parent lays every array out in ``multiprocessing.shared_memory`` blocks
(one per group, 64-byte aligned) and hands the children a picklable
``Layout``; a child attaches and builds the same namedtuples over the same
memory. Each process
builds its own address table for the callback, since the mappings differ.
Control thread only.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

ALIGN = 64


@dataclass(frozen=True)
class Layout:
    """Where each array lives: {group: (block name, [(name, shape, dtype str, offset)])}.
    ``kept``: the groups whose block outlives the parent (see ``create``)."""
    groups: dict
    kept: tuple = ()


class _Recorder:
    """An allocator that only notes what is asked for (first pass)."""

    def __init__(self):
        self.specs = []

    def __call__(self, name, shape, dtype):
        self.specs.append((name, tuple(int(s) for s in shape), np.dtype(dtype).str))
        return np.zeros(shape, dtype)


def _untrack(shm: shared_memory.SharedMemory) -> None:
    """Take a block off the resource tracker's list, so that the parent's death (even by
    SIGKILL) does not unlink it; its owner unlinks it when it is done."""
    from multiprocessing import resource_tracker
    try:
        resource_tracker.unregister(shm._name, "shared_memory")
    except Exception:
        pass


def unlink(shm: shared_memory.SharedMemory, tracked: bool = True) -> None:
    """Remove a block's name (it goes once nobody maps it). ``tracked=False`` for a
    block taken off the resource tracker's list (whose own unlink would ask the
    tracker to forget a name it does not know, and it prints a traceback)."""
    try:
        if tracked:
            shm.unlink()
        else:
            from multiprocessing.shared_memory import _posixshmem
            _posixshmem.shm_unlink(shm._name)
    except FileNotFoundError:
        pass


class SharedArena:
    """Owns one shared-memory block per group and hands out aligned arrays in them."""

    def __init__(self, owner: bool, kept=()):
        self.owner = owner
        self.kept = tuple(kept)
        self.blocks: dict[str, shared_memory.SharedMemory] = {}
        self.placed: dict[str, list] = {}
        self._group = None
        self._offset = 0

    def group(self, name, size):
        if name in self.kept:      # a name that says whose it is, for /dev/shm's reader
            block = f"livemix-{name}-{os.getpid()}-{secrets.token_hex(3)}"
            shm = shared_memory.SharedMemory(name=block, create=True, size=max(size, ALIGN))
            _untrack(shm)
        else:
            shm = shared_memory.SharedMemory(create=True, size=max(size, ALIGN))
        self.blocks[name] = shm
        self.placed[name] = []
        self._group = name
        self._offset = 0
        return self

    def __call__(self, name, shape, dtype):
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        off = self._offset
        arr = np.ndarray(shape, dt, buffer=self.blocks[self._group].buf, offset=off)
        arr.fill(0)
        self.placed[self._group].append((name, tuple(int(s) for s in shape), dt.str, off))
        self._offset = off + (nbytes + ALIGN - 1) // ALIGN * ALIGN
        return arr

    def layout(self) -> Layout:
        return Layout({g: (self.blocks[g].name, specs) for g, specs in self.placed.items()},
                      self.kept)

    def close(self):
        for g, shm in self.blocks.items():
            shm.close()
            if self.owner:
                unlink(shm, tracked=g not in self.kept)


def create(builders: dict, keep=()) -> tuple[SharedArena, dict]:
    """Allocate each group in its own shared block.

    builders: {group: fn(alloc) -> namedtuple}. Each fn is called twice: once
    to size the block, once to allocate (and initialise) in it. ``keep``: groups
    whose block survives the death of this process (the record ring, so that
    ``livemix recover`` can salvage what a killed run had not yet written); the
    arena's ``close`` still unlinks them. Returns the arena and {group:
    namedtuple over shared memory}.
    """
    arena = SharedArena(owner=True, kept=keep)
    out = {}
    for g, fn in builders.items():
        rec = _Recorder()
        fn(rec)
        size = sum((int(np.prod(shape)) * np.dtype(dt).itemsize + ALIGN - 1) // ALIGN * ALIGN
                   for _, shape, dt in rec.specs)
        out[g] = fn(arena.group(g, size))
    return arena, out


def attach(layout: Layout, types: dict) -> tuple[SharedArena, dict]:
    """Map existing blocks; types: {group: namedtuple class}. Child processes."""
    # A spawned child shares the parent's resource tracker, which unlinks a block
    # (when the parent dies) that anyone registered: the child only maps them, and
    # takes the kept ones off the tracker's list again (attaching registers them).
    arena = SharedArena(owner=False)
    out = {}
    for g, cls in types.items():
        name, specs = layout.groups[g]
        shm = shared_memory.SharedMemory(name=name)
        if g in layout.kept:
            _untrack(shm)
        arena.blocks[g] = shm
        out[g] = cls(**{n: np.ndarray(shape, np.dtype(dt), buffer=shm.buf, offset=off)
                        for n, shape, dt, off in specs})
    return arena, out


def address_table(*groups) -> tuple[np.ndarray, np.ndarray]:
    """(addresses, shapes) of every array of the namedtuples, in field order.

    addresses: int64 (K,); shapes: int64 (K, 4) (unused dimensions are 1).
    The callback rebuilds each array from these with ``numba.carray``.
    """
    arrays = [a for g in groups for a in g]
    addr = np.array([a.ctypes.data for a in arrays], np.int64)
    shapes = np.ones((len(arrays), 4), np.int64)
    for k, a in enumerate(arrays):
        shapes[k, :a.ndim] = a.shape
    return addr, shapes


MADV_POPULATE_WRITE = 23   # Linux 5.14+
MCL_CURRENT, MCL_FUTURE = 1, 2


def prefault(arena: SharedArena) -> str:
    """Map every page of the shared blocks into this process now, before the audio
    thread needs them (else it takes the page faults itself: thousands in the first
    pass over the rings, measured as xruns), and lock memory where the system allows.
    Changes no data. Returns what it managed ("populated, locked", or "..., not
    locked (reason)"), for the parent to say. Audio child process."""
    import ctypes
    import ctypes.util
    import mmap

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    how = "populated"
    for shm in arena.blocks.values():
        buf = shm.buf
        addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        start = addr - addr % mmap.PAGESIZE
        length = shm.size + (addr - start)
        if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length),
                        MADV_POPULATE_WRITE) != 0:
            view = memoryview(buf)      # an older kernel: read one byte per page (maps it)
            total = 0
            for off in range(0, shm.size, mmap.PAGESIZE):
                total += view[off]
            how = "touched"
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
        return how + ", locked"
    return how + f", not locked ({os.strerror(ctypes.get_errno())})"
