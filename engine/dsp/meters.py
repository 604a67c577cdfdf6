"""Block meters: sample peak and sum of squares.

Meter values never feed back into the audio, so these reductions may use
fast-math (reassociation lets LLVM vectorise them).
"""
from numba import njit


@njit(cache=True, fastmath=True)
def peak_sumsq(x, a, b):
    """(peak, sum of squares) of x[a:b] for a 1-D float32 array, in float64."""
    pk = 0.0
    ss = 0.0
    for i in range(a, b):
        v = float(x[i])
        pk = max(pk, abs(v))
        ss += v * v
    return pk, ss
