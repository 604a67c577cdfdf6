"""The PortAudio callback: a numba ``@cfunc``, so no Python runs on the audio thread.

PortAudio calls ``pa_callback(in, out, frames, timeinfo, status, user)``;
``user`` points to a header ``[count, addresses*, shapes*]`` (see
``engine.rt.shm.address_table``) from which the callback rebuilds the
``EngineState`` and ``IoState`` arrays with ``numba.carray`` and calls
``engine_cycle``. The arrays live in shared memory owned by the parent
process; the header and tables must outlive the stream.

The cfunc body keeps numba's runtime (``carray`` needs it to return arrays),
but the arrays it builds have no reference-counted owner, and everything it
calls is compiled without the runtime (see ``engine.dsp.jit``).
"""
import numpy as np
from numba import carray, cfunc, njit, types

from ..dsp.layout import IO_INCH, IO_OUTCH, EngineState, IoState
from .clock import typed_ptr
from .cycle import engine_cycle

SIGNATURE = types.int32(types.voidptr, types.voidptr, types.uint64, types.voidptr,
                        types.uint64, types.voidptr)
PA_CONTINUE = 0


@njit(cache=True, inline="always")
def _a1(addr, shp, k, dtype):
    return carray(typed_ptr(addr[k], dtype), (shp[k, 0],))


@njit(cache=True, inline="always")
def _a2(addr, shp, k, dtype):
    return carray(typed_ptr(addr[k], dtype), (shp[k, 0], shp[k, 1]))


@njit(cache=True, inline="always")
def _a3(addr, shp, k, dtype):
    return carray(typed_ptr(addr[k], dtype), (shp[k, 0], shp[k, 1], shp[k, 2]))


@njit(cache=True, inline="always")
def _a4(addr, shp, k, dtype):
    return carray(typed_ptr(addr[k], dtype), (shp[k, 0], shp[k, 1], shp[k, 2], shp[k, 3]))


@njit(cache=True)
def unpack(addr, shp):
    """Rebuild (EngineState, IoState) from an address table (field order)."""
    i8, f4, f8, u1 = np.int64, np.float32, np.float64, np.uint8
    st = EngineState(
        _a1(addr, shp, 0, i8), _a1(addr, shp, 1, i8), _a2(addr, shp, 2, f8),
        _a3(addr, shp, 3, f8), _a2(addr, shp, 4, i8), _a3(addr, shp, 5, f4),
        _a2(addr, shp, 6, i8), _a3(addr, shp, 7, f4), _a2(addr, shp, 8, f4),
        _a2(addr, shp, 9, f8), _a2(addr, shp, 10, u1), _a2(addr, shp, 11, f8),
        _a2(addr, shp, 12, f4), _a2(addr, shp, 13, f4), _a1(addr, shp, 14, f4),
        _a2(addr, shp, 15, f4), _a1(addr, shp, 16, f8), _a2(addr, shp, 17, f4),
        _a1(addr, shp, 18, f8), _a1(addr, shp, 19, i8), _a1(addr, shp, 20, f8),
        _a1(addr, shp, 21, f8), _a1(addr, shp, 22, i8), _a2(addr, shp, 23, f8),
        _a1(addr, shp, 24, i8), _a2(addr, shp, 25, f8), _a2(addr, shp, 26, f8),
        _a1(addr, shp, 27, f8), _a1(addr, shp, 28, f8), _a2(addr, shp, 29, f8),
        _a1(addr, shp, 30, i8),
        # the master meter
        _a1(addr, shp, 31, i8), _a2(addr, shp, 32, f8), _a1(addr, shp, 33, f8),
        _a1(addr, shp, 34, f8), _a2(addr, shp, 35, f8), _a2(addr, shp, 36, f4),
        _a2(addr, shp, 37, f4), _a2(addr, shp, 38, f4), _a1(addr, shp, 39, f4),
        _a2(addr, shp, 40, f8), _a1(addr, shp, 41, i8),
        # true-peak histories, snapshot, events
        _a2(addr, shp, 42, f4), _a1(addr, shp, 43, f8),
        _a1(addr, shp, 44, f8), _a2(addr, shp, 45, f8), _a1(addr, shp, 46, f8),
        _a1(addr, shp, 47, f8), _a1(addr, shp, 48, f8), _a2(addr, shp, 49, f8),
        _a1(addr, shp, 50, i8), _a2(addr, shp, 51, i8),
        # the channel strip
        _a3(addr, shp, 52, f8), _a2(addr, shp, 53, i8), _a3(addr, shp, 54, f8),
        _a4(addr, shp, 55, f8), _a2(addr, shp, 56, f8), _a3(addr, shp, 57, f4),
        _a2(addr, shp, 58, f4),
        # the strip's denoise stage
        _a2(addr, shp, 59, i8), _a4(addr, shp, 60, f4), _a2(addr, shp, 61, f8),
        _a3(addr, shp, 62, f4))
    k = 63
    io = IoState(
        _a1(addr, shp, k, i8), _a1(addr, shp, k + 1, i8), _a1(addr, shp, k + 2, i8),
        _a1(addr, shp, k + 3, i8), _a2(addr, shp, k + 4, i8), _a2(addr, shp, k + 5, f4),
        _a1(addr, shp, k + 6, i8), _a2(addr, shp, k + 7, i8), _a3(addr, shp, k + 8, f4))
    return st, io


@cfunc(SIGNATURE, cache=True)
def pa_callback(inp, outp, frames, timeinfo, status, user):
    hdr = carray(user, (3,), np.int64)
    n = hdr[0]
    addr = carray(typed_ptr(hdr[1], np.int64), (n,))
    shp = carray(typed_ptr(hdr[2], np.int64), (n, 4))
    st, io = unpack(addr, shp)
    outch = io.io_cfg[IO_OUTCH]
    inch = io.io_cfg[IO_INCH]
    out = carray(outp, (frames, outch), np.float32)
    if inch > 0:
        x = carray(inp, (frames, inch), np.float32)
    else:
        x = out    # no input stream: engine_cycle does not read it
    engine_cycle(st, io, x, out, frames, status)
    return PA_CONTINUE


class CallbackTable:
    """The header and tables ``user`` points to, for one process's view of the state."""

    def __init__(self, st: EngineState, io: IoState):
        from .shm import address_table
        self.addr, self.shapes = address_table(st, io)
        self.header = np.array([len(self.addr), self.addr.ctypes.data, self.shapes.ctypes.data],
                               np.int64)
        self.keep = (st, io)   # the arrays must outlive the stream

    @property
    def user(self) -> int:
        return int(self.header.ctypes.data)
