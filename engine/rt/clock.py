"""Pointers and a monotonic clock usable from nopython code (audio thread).

``now_ns`` and ``sleep_until_ns`` call libc's ``clock_gettime`` and
``clock_nanosleep`` (CLOCK_MONOTONIC) through external symbols registered with
LLVM at import, so functions using them stay cacheable (a ctypes function
pointer would bake an address into the machine code).
"""
import ctypes
import ctypes.util

import llvmlite.binding as ll
from llvmlite import ir
from numba import types
from numba.core.extending import intrinsic

from ..dsp.jit import rt_kernel

CLOCK_MONOTONIC = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
ll.add_symbol("clock_gettime", ctypes.cast(_libc.clock_gettime, ctypes.c_void_p).value)
ll.add_symbol("usleep", ctypes.cast(_libc.usleep, ctypes.c_void_p).value)
ll.add_symbol("clock_nanosleep", ctypes.cast(_libc.clock_nanosleep, ctypes.c_void_p).value)
_clock_gettime = types.ExternalFunction("clock_gettime", types.int32(types.int32, types.voidptr))
_clock_nanosleep = types.ExternalFunction(
    "clock_nanosleep", types.int32(types.int32, types.int32, types.voidptr, types.voidptr))
TIMER_ABSTIME = 1
EINTR = 4
_usleep = types.ExternalFunction("usleep", types.int32(types.uint32))


@intrinsic
def voidptr_from_int(typingctx, addr):
    """An int64 address as a void*."""
    sig = types.voidptr(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())
    return sig, codegen


@intrinsic
def typed_ptr(typingctx, addr, dtype):
    """An int64 address as a pointer to ``dtype`` (for numba.carray)."""
    ty = dtype.instance_type
    sig = types.CPointer(ty)(addr, dtype)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(ty).as_pointer())
    return sig, codegen


@rt_kernel
def now_ns(ts):
    """Monotonic time in nanoseconds; ts is an int64 (2,) scratch array (timespec)."""
    _clock_gettime(CLOCK_MONOTONIC, voidptr_from_int(ts.ctypes.data))
    return ts[0] * 1000000000 + ts[1]


@rt_kernel
def sleep_until_ns(ts, t):
    """Sleep until CLOCK_MONOTONIC reaches ``t`` ns (absolute: no drift, however late a
    wake-up was). ts is an int64 (2,) scratch array (timespec). Returns at once when
    ``t`` has passed."""
    ts[0] = t // 1000000000
    ts[1] = t % 1000000000
    while _clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, voidptr_from_int(ts.ctypes.data),
                           voidptr_from_int(0)) == EINTR:
        pass    # a signal woke the thread early: sleep on to the same instant


@rt_kernel
def sleep_us(us):
    """Sleep ``us`` microseconds. Only for freewheel mode, where there is no deadline."""
    _usleep(us)
