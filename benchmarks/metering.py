"""The cost of loudness and true-peak metering inside the block function (render.py).

Measured on the reference session widened to 32 tracks (its 8 stems four
times over), at one block size:

- ``block_us``: ``run_blocks`` per block, meters included (what the audio
  thread pays);
- ``meters_us``: the same meter kernel alone, per block, on the same
  signal (the mixed output: the master's loudness and true peak), driven by
  a jitted loop (each track's source true peak is measured by the reader
  process as it decodes, not in the block);
- ``mix_us`` = block - meters, and ``meters_vs_mix`` their ratio (target < 0.15);
- ``true_peak_ceiling``: ``run_blocks`` with ``ceiling_mode = "true-peak"``
  against ``"sample-peak"`` (the oversampled detector in the limiter).
"""
from __future__ import annotations

import dataclasses
import time

import numpy as np
from numba import njit

from engine.dsp.meters import meter_feed
from engine.rt.block import _master_meter, run_blocks
from engine.rt.state import allocate

WIDEN = 4        # copies of the reference session's tracks (8 x 4 = 32)


@njit(cache=False, _nrt=False)
def _meters_only(st, tracks, master, bs, meters):
    """Run the block function's meter calls over (T, 2, N) track and (2, N) master
    audio; with meters False only the copies into the block buffers (subtracted).

    Compiled without numba's runtime, as the engine is: the Meter tuples the
    engine's helpers return hold borrowed arrays, which code with the runtime
    would release once too often."""
    n = master.shape[1]
    ntracks = tracks.shape[0]
    for a in range(0, n - bs + 1, bs):
        for t in range(ntracks):
            for c in range(2):
                for i in range(bs):
                    st.tbuf[t, c, i] = tracks[t, c, a + i]
        for c in range(2):
            for i in range(bs):
                st.mixbuf[c, i] = master[c, a + i]
        if meters:
            meter_feed(_master_meter(st), st.mixbuf, 0, bs)


def widen(session, copies: int = WIDEN):
    tracks = []
    for k in range(copies):
        for t in session.tracks:
            tracks.append(t if k == 0 else dataclasses.replace(t, name=f"{t.name}{k + 1}"))
    return dataclasses.replace(session, tracks=tuple(tracks))


def _loaded_state(session, stems, frames, bs):
    st = allocate(session, maxblock=bs, ring_frames=frames + bs)
    for t, x in enumerate(stems):
        st.src_ring[t][:, :frames] = x[:, :frames]
        st.src_pos[t, 0] = frames
    return st


def _time_run(session, stems, frames, bs, reps):
    best = None
    out = np.zeros((frames, session.engine.channels), np.float32)
    for _ in range(reps + 1):                    # the first call compiles or loads
        st = _loaded_state(session, stems, frames, bs)
        t0 = time.perf_counter()
        run_blocks(st, out, frames, bs)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return best, out


def metering_cost(session, stems: list, seconds: float, bs: int = 128, reps: int = 3) -> dict:
    """Per-block cost of the meters against the mix, 32 tracks, block size ``bs``."""
    wide = widen(session)
    tracks = [stems[i % len(stems)] for i in range(len(wide.tracks))]
    frames = int(min(seconds, 20.0) * wide.engine.samplerate) // bs * bs
    nblocks = frames // bs
    block_s, out = _time_run(wide, tracks, frames, bs, reps)
    audio = np.ascontiguousarray(np.stack([x[:, :frames] for x in tracks]), np.float32)
    master = np.ascontiguousarray(out.T, np.float32)
    meter_s = copy_s = None
    for _ in range(reps + 1):
        st = allocate(wide, maxblock=bs)
        t0 = time.perf_counter()
        _meters_only(st, audio, master, bs, True)
        t1 = time.perf_counter()
        _meters_only(st, audio, master, bs, False)
        t2 = time.perf_counter()
        meter_s = t1 - t0 if meter_s is None else min(meter_s, t1 - t0)
        copy_s = t2 - t1 if copy_s is None else min(copy_s, t2 - t1)
    meters = max(0.0, meter_s - copy_s)
    tp_wide = dataclasses.replace(wide, master=dataclasses.replace(wide.master,
                                                                    ceiling_mode="true-peak"))
    sp_wide = dataclasses.replace(wide, master=dataclasses.replace(wide.master,
                                                                    ceiling_mode="sample-peak"))
    tp_s, _ = _time_run(tp_wide, tracks, frames, bs, reps)
    sp_s, _ = _time_run(sp_wide, tracks, frames, bs, reps)
    us = 1e6 / nblocks
    return {
        "tracks": len(wide.tracks), "blocksize": bs, "blocks": nblocks,
        "block_us": round(block_s * us, 3),
        "meters_us": round(meters * us, 3),
        "mix_us": round((block_s - meters) * us, 3),
        "meters_vs_mix": round(meters / max(block_s - meters, 1e-12), 4),
        "target_meters_vs_mix": 0.15,
        "true_peak_ceiling": {"block_us": round(tp_s * us, 3),
                              "sample_peak_block_us": round(sp_s * us, 3),
                              "ratio": round(tp_s / sp_s, 3)},
    }
