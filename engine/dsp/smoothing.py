"""Per-sample parameter ramps (de-zippering).

A ramp is three float64: start, target and pos (samples since the ramp began).
Its value at ``pos`` is ``start + (target - start) * pos / n`` and exactly
``target`` from ``pos >= n`` on. The value is a closed form of the sample
position, so it is the same however the stream is cut into blocks, and a
finished ramp multiplies by its target exactly (bit-transparent at 1.0).
"""
from numba import njit

from .layout import RAMP_POS, RAMP_START, RAMP_TARGET


@njit(cache=True, inline="always")
def ramp_at(ramp, n, k):
    """Value of ``ramp`` k samples after its current position; n = ramp length."""
    pos = ramp[RAMP_POS] + k
    if pos >= n:
        return ramp[RAMP_TARGET]
    start = ramp[RAMP_START]
    return start + (ramp[RAMP_TARGET] - start) * (pos / n)


@njit(cache=True, inline="always")
def ramp_steady(ramp, n):
    """True when the ramp has reached its target."""
    return ramp[RAMP_POS] >= n


@njit(cache=True)
def ramp_to(ramp, n, target):
    """Start a ramp from the current value to ``target`` (no-op if already headed there)."""
    if target == ramp[RAMP_TARGET]:
        return
    ramp[RAMP_START] = ramp_at(ramp, n, 0)
    ramp[RAMP_TARGET] = target
    ramp[RAMP_POS] = 0.0


@njit(cache=True, inline="always")
def ramp_advance(ramp, n, k):
    """Move the ramp k samples on."""
    pos = ramp[RAMP_POS] + k
    ramp[RAMP_POS] = pos if pos < n else float(n)


@njit(cache=True)
def ramp_jump(ramp, n, value):
    """Set the ramp to ``value`` at once (initial state, no smoothing)."""
    ramp[RAMP_START] = value
    ramp[RAMP_TARGET] = value
    ramp[RAMP_POS] = float(n)
