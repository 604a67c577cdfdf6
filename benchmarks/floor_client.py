"""The machine's xrun floor: a trivial PortAudio client on the same JACK server, no livemix.

A spawned process opens an output stream exactly as livemix's audio child
does (sounddevice's ``_StreamBase`` with a numba ``@cfunc`` callback, block
size 0, "low" latency, 2 channels at 48 kHz) whose callback only writes
silence and counts itself and PortAudio's xrun flags. JACK reports an xrun
to every client when any part of the graph (the server's own thread
included) is late, so what this client counts in a window is the floor that
the machine and the server give every client: xruns livemix could not have
caused. ``benchmarks/realtime.py`` measures it on the same server before and
after each livemix window of the same length and reports livemix's excess.
"""
from __future__ import annotations

import time

import numpy as np
from numba import carray, cfunc, types

SIGNATURE = types.int32(types.voidptr, types.voidptr, types.uint64, types.voidptr,
                        types.uint64, types.voidptr)
F_CALLBACKS, F_XRUNS = 0, 1


@cfunc(SIGNATURE, cache=True)
def silence(inp, outp, frames, timeinfo, status, user):
    counters = carray(user, (2,), np.int64)
    out = carray(outp, (frames * 2,), np.float32)
    for i in range(frames * 2):
        out[i] = 0.0
    counters[F_CALLBACKS] += 1
    if status & 15:          # input/output underflow/overflow
        counters[F_XRUNS] += 1
    return 0


def floor_child(conn, seconds: float, settle_s: float, samplerate: int) -> None:
    """Child process: open the stream, let it settle, measure one window; send
    {"seconds", "callbacks", "xruns"} or {"error": ...}."""
    try:
        import sounddevice as sd
        counters = np.zeros(2, np.int64)
        stream = sd._StreamBase(kind="output", samplerate=samplerate, blocksize=0,
                                device=None, channels=2, dtype="float32", latency="low",
                                callback=silence.address,
                                userdata=sd._ffi.cast("void*", counters.ctypes.data),
                                wrap_callback=None)
        with stream:
            time.sleep(settle_s)
            a = counters.copy()
            t0 = time.monotonic()
            time.sleep(seconds)
            b = counters.copy()
            elapsed = time.monotonic() - t0
        conn.send({"seconds": round(elapsed, 3),
                   "callbacks": int(b[F_CALLBACKS] - a[F_CALLBACKS]),
                   "xruns": int(b[F_XRUNS] - a[F_XRUNS])})
    except BaseException as e:      # report, never hang the parent
        conn.send({"error": f"{type(e).__name__}: {e}"})


def measure(seconds: float, settle_s: float = 1.0, samplerate: int = 48000,
            timeout_s: float = 60.0) -> dict:
    """One floor window of ``seconds`` on the server ``JACK_DEFAULT_SERVER`` names
    (the caller's environment). Returns {"seconds", "callbacks", "xruns"}."""
    import multiprocessing as mp
    import os
    import signal
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=floor_child, args=(child, seconds, settle_s, samplerate),
                       name="livemix-bench-floor", daemon=True)
    proc.start()
    child.close()
    try:
        if not parent.poll(seconds + settle_s + timeout_s):
            raise RuntimeError("the floor client did not report in time")
        msg = parent.recv()
        proc.join(timeout=10)
    finally:
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
            proc.join(timeout=2)
    if "error" in msg:
        raise RuntimeError(f"floor client: {msg['error']}")
    return msg
