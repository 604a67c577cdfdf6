"""The decorator for every function that may run on the audio thread.

``rt_kernel`` is numba's ``njit(cache=True)`` compiled without numba's
runtime (NRT, ``_nrt=False``): no reference counting on the arrays passed
around (it cost about 1 us per block in atomic increments), and any
allocation in the audio path is a compile error instead of a hidden malloc.
``error_model="numpy"``: a division by zero gives inf/NaN as in numpy instead
of raising, which would take the GIL inside the callback (and return garbage
from a cfunc); the block function scrubs NaN/Inf before the output anyway.
"""
from numba import njit


def rt_kernel(fn=None, **options):
    """``@rt_kernel`` or ``@rt_kernel(inline="always", fastmath=...)``."""
    opts = dict(cache=True, _nrt=False, error_model="numpy")
    opts.update(options)
    if fn is None:
        return njit(**opts)
    return njit(**opts)(fn)
