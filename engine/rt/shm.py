"""State in shared memory, so a separate audio process sees the same arrays.

The parent lays every array out in one ``multiprocessing.shared_memory``
block (64-byte aligned) and hands the child a picklable ``Layout``; the child
attaches and builds the same namedtuples over the same memory. Each process
builds its own address table for the callback, since the mappings differ.
Control thread only.
"""
from __future__ import annotations

from dataclasses import dataclass
from multiprocessing import shared_memory

import numpy as np

ALIGN = 64


@dataclass(frozen=True)
class Layout:
    """Where each array lives in the block: {group: [(name, shape, dtype str, offset)]}."""
    shm_name: str
    size: int
    groups: dict


class _Recorder:
    """An allocator that only notes what is asked for (first pass)."""

    def __init__(self):
        self.specs = []

    def __call__(self, name, shape, dtype):
        self.specs.append((name, tuple(int(s) for s in shape), np.dtype(dtype).str))
        return np.zeros(shape, dtype)


class SharedArena:
    """Owns one shared-memory block and hands out aligned arrays in it."""

    def __init__(self, shm: shared_memory.SharedMemory, owner: bool):
        self.shm = shm
        self.owner = owner
        self.offset = 0
        self.placed: dict[str, list] = {}
        self._group = None

    def group(self, name):
        self._group = name
        self.placed[name] = []
        return self

    def __call__(self, name, shape, dtype):
        dt = np.dtype(dtype)
        nbytes = int(np.prod(shape)) * dt.itemsize
        off = self.offset
        arr = np.ndarray(shape, dt, buffer=self.shm.buf, offset=off)
        arr.fill(0)
        self.placed[self._group].append((name, tuple(int(s) for s in shape), dt.str, off))
        self.offset = off + (nbytes + ALIGN - 1) // ALIGN * ALIGN
        return arr

    def layout(self) -> Layout:
        return Layout(self.shm.name, self.shm.size, dict(self.placed))

    def close(self):
        self.shm.close()
        if self.owner:
            try:
                self.shm.unlink()
            except FileNotFoundError:
                pass


def create(builders: dict) -> tuple[SharedArena, dict]:
    """Allocate every group in one shared block.

    builders: {group: fn(alloc) -> namedtuple}. Each fn is called twice: once
    to size the block, once to allocate (and initialise) in it. Returns the
    arena and {group: namedtuple over shared memory}.
    """
    size = 0
    for fn in builders.values():
        rec = _Recorder()
        fn(rec)
        for _, shape, dt in rec.specs:
            nbytes = int(np.prod(shape)) * np.dtype(dt).itemsize
            size += (nbytes + ALIGN - 1) // ALIGN * ALIGN
    shm = shared_memory.SharedMemory(create=True, size=max(size, ALIGN))
    arena = SharedArena(shm, owner=True)
    out = {g: fn(arena.group(g)) for g, fn in builders.items()}
    return arena, out


def attach(layout: Layout, types: dict) -> tuple[SharedArena, dict]:
    """Map an existing block; types: {group: namedtuple class}. Audio child process."""
    # A spawned child shares the parent's resource tracker, which unlinks the
    # block if the parent dies; the child only maps it.
    shm = shared_memory.SharedMemory(name=layout.shm_name)
    arena = SharedArena(shm, owner=False)
    out = {}
    for g, cls in types.items():
        arrays = {name: np.ndarray(shape, np.dtype(dt), buffer=shm.buf, offset=off)
                  for name, shape, dt, off in layout.groups[g]}
        out[g] = cls(**arrays)
    return arena, out


def address_table(*groups) -> tuple[np.ndarray, np.ndarray]:
    """(addresses, shapes) of every array of the namedtuples, in field order.

    addresses: int64 (K,); shapes: int64 (K, 3) (unused dimensions are 1).
    The callback rebuilds each array from these with ``numba.carray``.
    """
    arrays = [a for g in groups for a in g]
    addr = np.array([a.ctypes.data for a in arrays], np.int64)
    shapes = np.ones((len(arrays), 3), np.int64)
    for k, a in enumerate(arrays):
        shapes[k, :a.ndim] = a.shape
    return addr, shapes


MADV_POPULATE_WRITE = 23   # Linux 5.14+
MCL_CURRENT, MCL_FUTURE = 1, 2


def prefault(arena: SharedArena) -> str:
    """Map every page of the shared block into this process now, before the audio
    thread needs them (else it takes the page faults itself: thousands in the first
    pass over the rings, measured as xruns), and lock memory where the system allows.
    Changes no data. Returns what it managed, for diagnostics. Audio child process."""
    import ctypes
    import ctypes.util
    import mmap

    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    done = []
    buf = arena.shm.buf
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    start = addr - addr % mmap.PAGESIZE
    length = arena.shm.size + (addr - start)
    if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(length), MADV_POPULATE_WRITE) == 0:
        done.append("populated")
    else:                       # an older kernel: read one byte per page (maps it)
        view = memoryview(buf)
        total = 0
        for off in range(0, arena.shm.size, mmap.PAGESIZE):
            total += view[off]
        done.append("touched")
    if libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0:
        done.append("locked")
    return "+".join(done)
