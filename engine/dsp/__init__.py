"""Real-time DSP kernels: ``@njit`` functions on preallocated arrays.

No I/O, no threads, no allocation. Imports only ``engine.params`` and the
state layout.
"""
