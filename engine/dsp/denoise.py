"""Noise suppression (the strip's ``denoise`` stage): RNNoise, called from the audio thread.

RNNoise (Xiph; the model OBS's noise suppression uses) works at 48 kHz on frames
of ``FRAME`` = 480 samples of float32 scaled to the int16 range, one C state per
channel. The library is the ``librnnoise.so`` that the ``pyrnnoise`` wheel ships
(pip requirement ``pyrnnoise>=0.4,<0.5``); only the file is used, never
pyrnnoise's Python API. ``LIVEMIX_RNNOISE_LIB`` names another build of it.

Latency: ``LATENCY`` = 1440 samples (30 ms at 48 kHz), exactly, live and offline
alike, whatever the block sizes. It is the sum of

* ``FIFO_DELAY`` = 480: the frame FIFO below. A sample is played one frame after
  it came in, so any block size works (a frame is processed the moment its last
  sample arrives, and its output is ready before its first sample is due);
* ``MODEL_DELAY`` = 960: RNNoise's own, measured (0.4.5's build of RNNoise 0.2):
  ``rnnoise_process_frame`` returns the audio of two frames earlier (its
  overlap-add window and the model's look-ahead). An impulse comes out with its
  peak exactly ``LATENCY`` late, but RNNoise's spectral gains spread it over its
  960-sample window: a little comes out before, never earlier than
  ``MODEL_DELAY`` after the start of the input frame that held it (so up to
  ``FRAME + t % FRAME`` samples ahead of ``LATENCY``, for an impulse at sample t).

Per-track state (preallocated by the caller, passed in; numpy or shared memory):

* ``states``: int64 (2,): the RNNoise state of the left and the right channel,
  C heap addresses from ``create_states(2)`` in the process that runs the kernel
  (the offline renderer and the live audio process each create their own; an
  address means nothing in another process). 0: that channel passes through
  (still delayed by ``FIFO_DELAY`` only) with a speech probability of -1.
  ``states[1] = MONO`` (-1): the right channel's output is the left's (for a mono
  track, left == right): RNNoise runs once, half the cost.
* ``fifo``: float32 (2, FIFO_ROWS, FRAME) = (2, 4, 480), per channel ``c``:
  ``fifo[c, ROW_IN]`` the input frame being filled, ``fifo[c, ROW_OUT]`` the
  processed frame being played, ``fifo[c, ROW_SCRATCH_IN]`` /
  ``fifo[c, ROW_SCRATCH_OUT]`` RNNoise's input and output (int16-scaled) for the
  call. Zeros at the start. C-contiguous.
* ``pos``: float64 (N_POS,) = (4,): ``pos[P_FILL]`` samples in the input frame
  (0 .. FRAME-1, an integer), ``pos[P_FRAMES]`` frames processed so far,
  ``pos[P_PROB]`` / ``pos[P_PROB + 1]`` the speech probability (0 .. 1) RNNoise
  gave the last frame of the left / right channel: the meter's reading (-1: no
  state). Zeros at the start.

``state_shapes()`` gives these shapes and dtypes for an allocator. The kernel,
``denoise_segment``, runs on the audio thread: no GIL, no allocation, and RNNoise's
``rnnoise_process_frame`` neither allocates, locks nor touches global state
(checked on 0.4.5's binary), so tracks may run on different threads as long as
one state is used by one thread at a time.

If the library does not load, importing this module still works:
``library_problem()`` says why, and ``rnnoise_process_frame`` is bound to a stub
(copies its input, returns -1) so that code calling the kernel (the block
function) still compiles and links: an unresolved external symbol would crash the
process when numba links it, even on a path never taken. The engine refuses a
session with ``denoise`` when ``library_problem()`` is not None.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os

import llvmlite.binding as ll
import numpy as np
from numba import carray, cfunc, types

from ..rt.clock import voidptr_from_int
from .jit import rt_kernel

FRAME = 480                      # RNNoise's frame, samples at 48 kHz
SAMPLERATE = 48000               # the only rate RNNoise works at
FIFO_DELAY = FRAME               # the frame FIFO
MODEL_DELAY = 2 * FRAME          # rnnoise_process_frame's own delay
LATENCY = FIFO_DELAY + MODEL_DELAY   # 1440 samples, 30 ms
SCALE = 32768.0                  # RNNoise's input is float in the int16 range

ROW_IN, ROW_OUT, ROW_SCRATCH_IN, ROW_SCRATCH_OUT = 0, 1, 2, 3
FIFO_ROWS = 4
P_FILL, P_FRAMES, P_PROB = 0, 1, 2   # pos[P_PROB], pos[P_PROB + 1]: left, right
N_POS = 4
MONO = -1                        # states[1] = MONO: the right channel copies the left

ENV_LIB = "LIVEMIX_RNNOISE_LIB"
REQUIREMENT = "pyrnnoise>=0.4,<0.5"
_SYMBOLS = ("rnnoise_create", "rnnoise_destroy", "rnnoise_process_frame",
            "rnnoise_get_frame_size")


def state_shapes() -> dict:
    """One track's denoise arrays: name -> (shape, dtype)."""
    return {"states": ((2,), np.int64),
            "fifo": ((2, FIFO_ROWS, FRAME), np.float32),
            "pos": ((N_POS,), np.float64)}


# --- the library (control side) ---------------------------------------------------------------

def find_library() -> tuple[str | None, str | None]:
    """(path of librnnoise, None), or (None, why not). ``LIVEMIX_RNNOISE_LIB`` wins."""
    env = os.environ.get(ENV_LIB)
    if env:
        return env, None
    try:
        spec = importlib.util.find_spec("pyrnnoise")      # locates; does not import it
    except (ImportError, ValueError) as e:
        return None, f"pyrnnoise cannot be located: {e}"
    if spec is None or not spec.submodule_search_locations:
        return None, f"pyrnnoise is not installed (pip install '{REQUIREMENT}')"
    for d in spec.submodule_search_locations:
        for pattern in ("librnnoise*.so*", "librnnoise*.dylib", "rnnoise*.dll"):
            hits = sorted(glob.glob(os.path.join(d, pattern)))
            if hits:
                return hits[0], None
    return None, f"pyrnnoise has no librnnoise in {', '.join(spec.submodule_search_locations)}"


def load_library(path: str) -> tuple[ctypes.CDLL | None, str | None]:
    """(the library with its functions typed, None), or (None, a one-line reason)."""
    libm = ctypes.util.find_library("m")
    if libm:        # the wheel's .so uses libm without declaring it: have it in the global scope
        try:
            ctypes.CDLL(libm, mode=ctypes.RTLD_GLOBAL)
        except OSError:
            pass
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        return None, " ".join(f"cannot load {path}: {e}".split())
    missing = [s for s in _SYMBOLS if not hasattr(lib, s)]
    if missing:
        return None, f"{path} is not RNNoise: it lacks {', '.join(missing)}"
    lib.rnnoise_create.argtypes = [ctypes.c_void_p]
    lib.rnnoise_create.restype = ctypes.c_void_p
    lib.rnnoise_destroy.argtypes = [ctypes.c_void_p]
    lib.rnnoise_destroy.restype = None
    lib.rnnoise_process_frame.argtypes = [ctypes.c_void_p] * 3
    lib.rnnoise_process_frame.restype = ctypes.c_float
    lib.rnnoise_get_frame_size.argtypes = []
    lib.rnnoise_get_frame_size.restype = ctypes.c_int
    n = lib.rnnoise_get_frame_size()
    if n != FRAME:
        return None, f"{path}: RNNoise frames of {n} samples, {FRAME} expected"
    return lib, None


def _open() -> tuple[ctypes.CDLL | None, str | None]:
    path, problem = find_library()
    if problem:
        return None, problem
    return load_library(path)


_lib, _problem = _open()
LIBRARY_PATH = getattr(_lib, "_name", None)


def library_problem() -> str | None:
    """None when RNNoise is loaded, else a one-line reason (for refusing ``denoise``)."""
    return _problem


if _lib is not None:
    ll.add_symbol("rnnoise_process_frame",
                  ctypes.cast(_lib.rnnoise_process_frame, ctypes.c_void_p).value)
else:
    @cfunc(types.float32(types.voidptr, types.voidptr, types.voidptr), cache=True,
           error_model="numpy")
    def _stub_process_frame(st, out, inp):
        """Stands in when the library is missing (never called: the engine refuses
        ``denoise`` then); a pass-through, probability -1."""
        o = carray(out, FRAME, np.float32)
        i = carray(inp, FRAME, np.float32)
        for k in range(FRAME):
            o[k] = i[k]
        return np.float32(-1.0)

    ll.add_symbol("rnnoise_process_frame", _stub_process_frame.address)

_process_frame = types.ExternalFunction(
    "rnnoise_process_frame", types.float32(types.voidptr, types.voidptr, types.voidptr))


def create_states(n: int) -> np.ndarray:
    """``n`` fresh RNNoise states (C heap addresses, int64) for this process. Control
    thread. Raises RuntimeError when the library is missing or a state cannot be made."""
    if _lib is None:
        raise RuntimeError(f"denoise: {_problem}")
    out = np.zeros(n, np.int64)
    for k in range(n):
        p = _lib.rnnoise_create(None)
        if not p:
            destroy_states(out)
            raise RuntimeError("denoise: rnnoise_create failed")
        out[k] = p
    return out


def frame_cost_s(frames: int = 9) -> float:
    """Seconds one RNNoise frame of one channel takes on this machine: the median of
    ``frames`` calls on seeded noise (through ctypes; the kernel's call is the same C
    function). Control thread; raises RuntimeError when the library is missing."""
    import time
    state = create_states(1)
    try:
        x = (np.random.default_rng(1).standard_normal(FRAME) * 3000.0).astype(np.float32)
        y = np.zeros(FRAME, np.float32)
        fn = _lib.rnnoise_process_frame
        fn.restype = ctypes.c_float
        fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
        times = []
        for _ in range(frames):
            t0 = time.perf_counter()
            fn(int(state[0]), y.ctypes.data, x.ctypes.data)
            times.append(time.perf_counter() - t0)
        return float(np.median(times))
    finally:
        destroy_states(state)


def load_note(ntracks: int, blocksize: int, samplerate: int, cost_s: float) -> str | None:
    """What to tell a user whose ``ntracks`` denoised (stereo) tracks would load the audio
    thread past half a block when their frames complete (each track's frame fills in its
    own block, staggered, ``engine.rt.state``), given ``cost_s`` per channel frame; None
    when they fit. Blocks smaller than a frame take a whole track's frame in one block."""
    def worst(bs: int) -> float:
        per_frame = max(1, FRAME // bs)           # blocks a frame spans
        together = -(-ntracks // per_frame)        # tracks completing in one block
        return together * 2 * cost_s / (bs / samplerate)
    if ntracks == 0 or worst(blocksize) <= 0.5:
        return None
    fits = next((bs for bs in (64, 128, 256, 512, 1024, 2048, 4096, 8192)
                 if bs > blocksize and worst(bs) <= 0.5), None)
    advice = (f"a block of {fits} frames or more leaves room (--blocksize {fits})" if fits
              else "denoise fewer tracks")
    return (f"denoise: RNNoise takes {cost_s * 1e3:.2f} ms a channel per 10 ms frame on this "
            f"machine, so {ntracks} denoised track{'s' if ntracks > 1 else ''} can fill "
            f"{worst(blocksize) * 100:.0f} % of a {blocksize}-frame block when a frame "
            f"completes: expect xruns; {advice}")


def destroy_states(states: np.ndarray) -> None:
    """Free the states made by ``create_states`` in this process and zero them (twice
    is harmless). Control thread; no audio thread may be using them."""
    flat = states.reshape(-1)
    for k in range(flat.shape[0]):
        if flat[k] > 0 and _lib is not None:       # not 0 (none) nor MONO
            _lib.rnnoise_destroy(ctypes.c_void_p(int(flat[k])))
        flat[k] = 0


def reset(fifo: np.ndarray, pos: np.ndarray) -> None:
    """Empty the FIFO (the stage's next output starts from silence). RNNoise's own
    history is in its state: for a fresh start, destroy and create the states too."""
    fifo[...] = 0.0
    pos[...] = 0.0


# --- the kernel (audio thread) ----------------------------------------------------------------

@rt_kernel
def _run_frame(states, fifo, pos):
    """Both channels' full input frame through RNNoise into their output frame."""
    for c in range(2):
        fin = fifo[c, ROW_IN]
        fout = fifo[c, ROW_OUT]
        if c == 1 and states[1] == MONO:
            for k in range(FRAME):
                fout[k] = fifo[0, ROW_OUT, k]
            pos[P_PROB + 1] = pos[P_PROB]
            continue
        if states[c] == 0:
            for k in range(FRAME):
                fout[k] = fin[k]
            pos[P_PROB + c] = -1.0
            continue
        sin = fifo[c, ROW_SCRATCH_IN]
        sout = fifo[c, ROW_SCRATCH_OUT]
        for k in range(FRAME):
            sin[k] = fin[k] * np.float32(SCALE)
        p = _process_frame(voidptr_from_int(states[c]), voidptr_from_int(sout.ctypes.data),
                           voidptr_from_int(sin.ctypes.data))
        for k in range(FRAME):
            fout[k] = sout[k] * np.float32(1.0 / SCALE)
        pos[P_PROB + c] = p
    pos[P_FRAMES] += 1.0


@rt_kernel
def denoise_segment(states, fifo, pos, x, a, b):
    """Denoise ``x[:, a:b]`` (float32 (2, N): left, right) in place, ``LATENCY`` samples
    late. Each input sample goes into its channel's input frame and the sample at the
    same place of the last processed frame comes out; when the input frame fills,
    both channels go through RNNoise. The output does not depend on how a stream is
    cut into calls. Audio thread: no GIL, no allocation."""
    k = int(pos[P_FILL])
    i = a
    while i < b:
        n = min(b - i, FRAME - k)
        for c in range(2):
            fin = fifo[c, ROW_IN]
            fout = fifo[c, ROW_OUT]
            xc = x[c]
            for j in range(n):
                y = fout[k + j]
                fin[k + j] = xc[i + j]
                xc[i + j] = y
        i += n
        k += n
        if k == FRAME:
            _run_frame(states, fifo, pos)
            k = 0
    pos[P_FILL] = k
