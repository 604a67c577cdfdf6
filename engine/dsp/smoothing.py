"""Per-sample parameter ramps (de-zippering).

A ramp is three float64: start, target and pos (samples since the ramp began).
The sample at ``pos`` gets ``start + (target - start) * (pos + 1) / n``, so the
first sample after a change has already moved by 1/n and the n-th sample is
exactly ``target``; a ramp is steady (pos >= n) exactly when its last value has
been produced. The value is a closed form of the sample position, so it is the
same however the stream is cut into blocks, and a finished ramp multiplies by
its target exactly (bit-transparent at 1.0).
"""
from .jit import rt_kernel

from .layout import RAMP_POS, RAMP_START, RAMP_TARGET


@rt_kernel(inline="always")
def ramp_at(ramp, n, k):
    """Value of ``ramp`` for the sample k after its current position; n = ramp length.

    k = -1 gives the value of the sample before (the value the ramp is at now).
    """
    pos = ramp[RAMP_POS] + k + 1
    if pos >= n:
        return ramp[RAMP_TARGET]
    start = ramp[RAMP_START]
    return start + (ramp[RAMP_TARGET] - start) * (pos / n)


@rt_kernel(inline="always")
def ramp_steady(ramp, n):
    """True when the ramp has reached its target."""
    return ramp[RAMP_POS] >= n


@rt_kernel
def ramp_to(ramp, n, target):
    """Start a ramp from the current value to ``target`` (no-op if already headed there)."""
    if target == ramp[RAMP_TARGET]:
        return
    ramp[RAMP_START] = ramp_at(ramp, n, -1)
    ramp[RAMP_TARGET] = target
    ramp[RAMP_POS] = 0.0


@rt_kernel(inline="always")
def ramp_advance(ramp, n, k):
    """Move the ramp k samples on."""
    pos = ramp[RAMP_POS] + k
    ramp[RAMP_POS] = pos if pos < n else float(n)


@rt_kernel
def ramp_jump(ramp, n, value):
    """Set the ramp to ``value`` at once (initial state, no smoothing)."""
    ramp[RAMP_START] = value
    ramp[RAMP_TARGET] = value
    ramp[RAMP_POS] = float(n)
