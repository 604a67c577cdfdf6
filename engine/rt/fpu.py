"""Denormals off on the audio thread: flush-to-zero and denormals-are-zero (x86 MXCSR).

A recursive filter fed digital silence decays through the denormal range (the
K-weighting state reached 4.9e-324), where many CPUs take a hundred cycles per
operation. ``denormals_off`` sets MXCSR's FTZ and DAZ bits and returns the
previous MXCSR; ``fpu_restore`` puts it back. The block's entry points call the
pair around their work (``engine_cycle`` for live and virtual runs, ``run_blocks``
offline), so every run computes with the same rules (live equals offline) and the
calling thread's own state is left as it was (Python's floats keep IEEE
semantics). On a CPU other than x86-64 both are no-ops (AArch64 flushes with
FPCR.FZ, not set here). Audio thread; RT-safe.
"""
import platform

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.extending import intrinsic

FTZ_DAZ = 0x8040                 # MXCSR bits 15 (flush to zero) and 6 (denormals are zero)
X86 = platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _mxcsr(builder, name, ptr):
    fnty = ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer()])
    fn = cgutils.get_or_insert_function(builder.module, fnty, name)
    builder.call(fn, [builder.bitcast(ptr, ir.IntType(8).as_pointer())])


@intrinsic
def denormals_off(typingctx):
    """Set FTZ and DAZ; returns the previous MXCSR (0 where there is none)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        if not X86:
            return ir.Constant(i32, 0)
        slot = cgutils.alloca_once(builder, i32)
        _mxcsr(builder, "llvm.x86.sse.stmxcsr", slot)
        old = builder.load(slot)
        builder.store(builder.or_(old, ir.Constant(i32, FTZ_DAZ)), slot)
        _mxcsr(builder, "llvm.x86.sse.ldmxcsr", slot)
        return old
    return types.int32(), codegen


@intrinsic
def fpu_restore(typingctx, old):
    """Put back an MXCSR returned by ``denormals_off``."""
    def codegen(context, builder, signature, args):
        if X86:
            slot = cgutils.alloca_once(builder, ir.IntType(32))
            builder.store(args[0], slot)
            _mxcsr(builder, "llvm.x86.sse.ldmxcsr", slot)
        return context.get_dummy_value()
    return types.void(types.int32), codegen


@intrinsic
def fpu_state(typingctx):
    """The current MXCSR (tests: what the thread runs with)."""
    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        if not X86:
            return ir.Constant(i32, 0)
        slot = cgutils.alloca_once(builder, i32)
        _mxcsr(builder, "llvm.x86.sse.stmxcsr", slot)
        return builder.load(slot)
    return types.int32(), codegen
