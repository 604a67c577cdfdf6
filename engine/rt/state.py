"""Allocate and initialise every array the audio thread touches.

``allocate(session, ...)`` returns an ``EngineState`` whose arrays come from
``alloc(name, shape, dtype)`` (plain numpy by default; shared memory for the
live audio process). The caller owns the arrays and must keep them alive for
as long as any thread may run the block function on them. Control thread.
"""
from __future__ import annotations

import math

import numpy as np

from ..dsp.layout import (C_PUBLISH, K_NEXT_PUB, M_DETECT, M_TRUE_PEAK, N_SNAP, N_SNT,
                          C_CMDCAP, C_LATENCY, C_LOOKAHEAD, C_MAXBLOCK, C_MINHOLD, C_NRULES, C_NTRACKS,
                          C_OUTCH, C_RAMP, C_RING, C_SR, D_ATTACK_INC, D_HOLD, D_RELEASE_INC,
                          D_THRESHOLD, DS_DEPTH, DS_GAIN, DS_STEADY, L_BOXSUM, L_ENV, M_CEILING,
                          M_GAIN_DB, M_RAMP, M_RELEASE, N_CFG, N_CLOCK, N_LIM, N_LIMI, N_MASTER,
                          N_RCFG, N_RSTATE, N_SPOS, N_TCTL, R_GAIN, R_PAN_L, R_PAN_R, S_EOF,
                          T_GAIN_DB, T_MUTE, T_PAN, T_SOLO, EngineState)
from ..dsp.denoise import FIFO_ROWS as DN_FIFO_ROWS
from ..dsp.denoise import FRAME as DN_FRAME
from ..dsp.denoise import LATENCY as DN_LATENCY
from ..dsp.denoise import N_POS as DN_N_POS
from ..dsp.denoise import P_FILL as DN_P_FILL
from ..dsp.strip import (BQ_EQ0, D_GATE_DB, D_RECOMPUTE, DN_DRY, N_BQ, N_DYN, N_SC, N_SP,
                         P_GATE_RANGE, P_HPF_FREQ, SC_DN, SC_KEY, SC_KEYSRC, SC_RMS, SC_SLOPE,
                         SC_NBANDS, SC_PDC, SC_SETTLED, SC_TYPE0, SC_USED, design_hpf)
from ..dsp.meters import TP_PAD, TP_TAPS, Meter, init_meter, meter_shapes
from ..dsp.smoothing import ramp_jump
from ..dsp.limiter import TP_MARGIN_DB
from ..params import db_to_lin, pan_gains

RAMP_S = 0.010            # gain / pan / mute / depth smoothing, seconds
LOOKAHEAD_S = 0.002       # limiter window (the output is delayed by one sample less)
RELEASE_S = 0.100         # limiter release time constant, seconds
MIN_HOLD_S = 0.020        # shortest ducking hold, seconds
READ_AHEAD_S = 2.5        # source ring length (rounded up to a power of two)
CMD_CAPACITY = 4096       # queued parameter changes
AUTOMATION_CAPACITY = 16384  # applied changes awaiting the control thread
EVENT_CAPACITY = 4096     # xrun / underrun / ceiling events awaiting the control thread
PUBLISH_HZ = 30           # meter snapshots per second


def _pow2(n: int) -> int:
    return 1 << max(0, int(n - 1).bit_length())


def float32_ceiling(ceiling_db: float) -> float:
    """Largest float32 value not above ``ceiling_db``, as a float."""
    c = db_to_lin(ceiling_db)
    c32 = np.float32(c)
    if float(c32) > c:
        c32 = np.nextafter(c32, np.float32(0.0))
    return float(c32)


def _numpy_alloc(name, shape, dtype):
    return np.zeros(shape, dtype=dtype)


def allocate(session, maxblock: int | None = None, ring_frames: int | None = None,
             alloc=_numpy_alloc) -> EngineState:
    """Allocate the engine state for ``session`` and set it to the session's values.

    maxblock: largest frame count one chunk of the block function handles
    (default: the session's blocksize). ring_frames: source read-ahead per
    track (default READ_AHEAD_S, rounded up to a power of two).
    """
    sr = session.engine.samplerate
    maxblock = int(maxblock or session.engine.blocksize)
    ntracks = len(session.tracks)
    nrules = max(len(session.ducking), 1)
    ring = _pow2(ring_frames or int(READ_AHEAD_S * sr))
    window = max(2, round(LOOKAHEAD_S * sr))
    ndn = max(1, len(denoise_tracks(session)))
    shapes = {
        "cfg": ((N_CFG,), np.int64),
        "clock": ((N_CLOCK,), np.int64),
        "track_ctl": ((ntracks, N_TCTL), np.float64),
        "track_ramp": ((ntracks, 3, 3), np.float64),
        "track_rules": ((ntracks, nrules + 1), np.int64),
        "src_ring": ((ntracks, 2, ring), np.float32),
        "src_pos": ((ntracks, N_SPOS), np.int64),
        "tbuf": ((ntracks, 2, maxblock), np.float32),
        "gbuf": ((2, maxblock), np.float32),
        "rule_cfg": ((nrules, N_RCFG), np.float64),
        "rule_keys": ((nrules, ntracks), np.uint8),
        "rule_state": ((nrules, N_RSTATE), np.float64),
        "keybuf": ((2, maxblock), np.float32),
        "duckbuf": ((nrules, maxblock), np.float32),
        "tduck": ((maxblock,), np.float32),
        "mixbuf": ((2, maxblock), np.float32),
        "master": ((N_MASTER,), np.float64),
        "lim_delay": ((2, window - 1 + 8 * maxblock), np.float32),
        "lim_dq_val": ((window,), np.float64),
        "lim_dq_idx": ((window,), np.int64),
        "lim_box": ((window,), np.float64),
        "lim_state": ((N_LIM,), np.float64),
        "lim_istate": ((N_LIMI,), np.int64),
        "cmd_ring": ((CMD_CAPACITY, 4), np.float64),
        "cmd_idx": ((2,), np.int64),
        "track_meter": ((ntracks, 2), np.float64),
        "master_meter": ((2, 2), np.float64),
        "rule_meter": ((nrules,), np.float64),
        "peak_hold": ((2,), np.float64),
        "auto_ring": ((AUTOMATION_CAPACITY, 4), np.float64),
        "auto_idx": ((3,), np.int64),
        **meter_shapes(sr, maxblock),
        "lt_tp_work": ((2, TP_TAPS + maxblock + TP_PAD), np.float32),
        "track_tp": ((ntracks,), np.float64),
        "snap": ((N_SNAP,), np.float64),
        "snap_track": ((ntracks, N_SNT), np.float64),
        "snap_rule": ((nrules,), np.float64),
        "acc_track": ((ntracks,), np.float64),
        "acc_rule": ((nrules,), np.float64),
        "ev_ring": ((EVENT_CAPACITY, 3), np.float64),
        "ev_idx": ((3,), np.int64),
        "ev_prev": ((ntracks + 1, 2), np.int64),
        "sp": ((ntracks, 3, N_SP), np.float64),
        "sp_cfg": ((ntracks, N_SC), np.int64),
        "bq": ((ntracks, N_BQ, 5), np.float64),
        "bq_z": ((ntracks, N_BQ, 2, 2), np.float64),
        "dyn": ((ntracks, N_DYN), np.float64),
        "key_raw": ((max(1, len(key_tracks(session))), 2, maxblock), np.float32),
        "sbuf": ((2, maxblock), np.float32),
        "dn_states": ((ndn, 2), np.int64),
        "dn_fifo": ((ndn, 2, DN_FIFO_ROWS, DN_FRAME), np.float32),
        "dn_pos": ((ndn, DN_N_POS), np.float64),
        # a delay line per track when any track denoises: the denoised tracks' dry path,
        # and the others' delay compensation (they wait for the denoiser, pdc_latency)
        "dn_dry": ((ntracks if denoise_tracks(session) else 1, 2, DN_DRY), np.float32),
    }
    st = EngineState(**{name: alloc(name, shape, dtype)
                        for name, (shape, dtype) in shapes.items()})
    _initialise(st, session, maxblock, ring, window)
    return st


def key_tracks(session) -> list[int]:
    """Tracks another track's compressor is keyed by, in order (rows of key_raw)."""
    names = [t.name for t in session.tracks]
    keys = []
    for t in session.tracks:
        c = t.strip.comp
        if c is not None and c.key != "self" and names.index(c.key) not in keys:
            keys.append(names.index(c.key))
    return keys


def denoise_tracks(session) -> list[int]:
    """Tracks whose strip has the denoise stage, in order (rows of the dn_ arrays)."""
    return [t for t, track in enumerate(session.tracks) if track.strip.denoise]


def start_denoisers(st: EngineState) -> None:
    """Give each denoise row RNNoise states of this process (they are C heap memory:
    each process that runs the kernels makes its own: the offline renderer, the audio
    process). Rows with none pass their audio through. Control thread."""
    from ..dsp.denoise import create_states
    for row in range(st.dn_states.shape[0]):
        if any(st.sp_cfg[t, SC_DN] == row for t in range(st.sp_cfg.shape[0])):
            st.dn_states[row] = create_states(2)


def stop_denoisers(st: EngineState) -> None:
    from ..dsp.denoise import destroy_states
    if st.dn_states.any():
        destroy_states(st.dn_states)


def _init_strip(st: EngineState, session) -> None:
    """Each track's strip as the session sets it (engine.strip; engine.dsp.strip)."""
    from ..strip import EQ_TYPES, initial_values
    keys = key_tracks(session)
    dn = denoise_tracks(session)
    names = [t.name for t in session.tracks]
    for t, track in enumerate(session.tracks):
        s = track.strip
        st.sp[t, :] = initial_values(s)
        cfg = st.sp_cfg[t]
        cfg[SC_SLOPE] = s.hpf.slope if s.hpf else 12
        for k in range(4):
            cfg[SC_TYPE0 + k] = EQ_TYPES.index(s.eq[k].type) if k < len(s.eq) else 0
        cfg[SC_RMS] = 1 if s.comp is not None and s.comp.detector == "rms" else 0
        cfg[SC_KEY] = keys.index(names.index(s.comp.key)) \
            if s.comp is not None and s.comp.key != "self" else -1
        cfg[SC_KEYSRC] = keys.index(t) if t in keys else -1
        cfg[SC_USED] = 1 if not s.empty else 0
        cfg[SC_SETTLED] = 0                  # the first grid step designs the filters
        cfg[SC_NBANDS] = len(s.eq)
        cfg[SC_DN] = dn.index(t) if t in dn else -1
        cfg[SC_PDC] = 1 if dn and t not in dn else 0
        d = st.dyn[t]
        d[D_RECOMPUTE] = 1.0
        d[D_GATE_DB] = -min(st.sp[t, 1, P_GATE_RANGE], 120.0)   # a gate starts closed
        # filters designed now too (the first grid point redesigns them the same way)
        design_hpf(cfg[SC_SLOPE], st.sp[t, 1, P_HPF_FREQ], float(session.engine.samplerate),
                   st.bq[t])
        for k in range(4):
            st.bq[t, BQ_EQ0 + k, 0] = 1.0
    # the denoisers' frames start at staggered places (the FIFO's first frame is zeros up
    # to there), so they fill in different blocks and the RNNoise calls, ~0.6 ms a
    # channel here, spread over the blocks instead of piling into one; the latency is
    # LATENCY whatever the place (engine.dsp.denoise)
    for row in range(len(dn)):
        st.dn_pos[row, DN_P_FILL] = (row * DN_FRAME) // len(dn)


def _initialise(st: EngineState, session, maxblock: int, ring: int, window: int) -> None:
    _init_strip(st, session)
    sr = session.engine.samplerate
    ramp_n = max(1, round(RAMP_S * sr))
    cfg = st.cfg
    cfg[C_SR] = sr
    cfg[C_MAXBLOCK] = maxblock
    cfg[C_NTRACKS] = len(session.tracks)
    cfg[C_NRULES] = len(session.ducking)
    cfg[C_RAMP] = ramp_n
    cfg[C_LOOKAHEAD] = window
    cfg[C_OUTCH] = session.engine.channels
    cfg[C_RING] = ring
    cfg[C_CMDCAP] = st.cmd_ring.shape[0]
    cfg[C_MINHOLD] = round(MIN_HOLD_S * sr)
    cfg[C_LATENCY] = master_latency(session)

    st.src_pos[:, S_EOF] = -1
    any_solo = any(t.solo for t in session.tracks)
    for i, t in enumerate(session.tracks):
        st.track_ctl[i, T_GAIN_DB] = t.gain_db
        st.track_ctl[i, T_PAN] = t.pan
        st.track_ctl[i, T_MUTE] = float(t.mute)
        st.track_ctl[i, T_SOLO] = float(t.solo)
        g = 0.0 if t.mute or (any_solo and not t.solo) else db_to_lin(t.gain_db)
        left, right = pan_gains(t.pan)
        ramp_jump(st.track_ramp[i, R_GAIN], ramp_n, g)
        ramp_jump(st.track_ramp[i, R_PAN_L], ramp_n, left)
        ramp_jump(st.track_ramp[i, R_PAN_R], ramp_n, right)

    names = {t.name: i for i, t in enumerate(session.tracks)}
    for r, rule in enumerate(session.ducking):
        rc = st.rule_cfg[r]
        rc[D_THRESHOLD] = db_to_lin(rule.threshold_db)
        rc[D_ATTACK_INC] = 1.0 / max(1.0, rule.attack_ms * 1e-3 * sr)
        rc[D_RELEASE_INC] = 1.0 / max(1.0, rule.release_ms * 1e-3 * sr)
        rc[D_HOLD] = round(rule.hold_ms * 1e-3 * sr)
        ramp_jump(st.rule_state[r, DS_DEPTH:DS_DEPTH + 3], ramp_n, rule.depth_db)
        st.rule_state[r, DS_GAIN] = 1.0
        st.rule_state[r, DS_STEADY] = 1.0
        for k in rule.key:
            st.rule_keys[r, names[k]] = 1
        for tname in rule.targets:
            t = names[tname]
            n = st.track_rules[t, 0]
            st.track_rules[t, 1 + n] = r
            st.track_rules[t, 0] = n + 1

    st.master[M_GAIN_DB] = session.master.gain_db
    ramp_jump(st.master[M_RAMP:M_RAMP + 3], ramp_n, db_to_lin(session.master.gain_db))
    st.master[M_CEILING] = float32_ceiling(session.master.ceiling_db)
    st.master[M_RELEASE] = 1.0 - math.exp(-1.0 / (RELEASE_S * sr))
    st.lim_state[L_ENV] = 1.0
    st.lim_state[L_BOXSUM] = float(window)
    st.lim_box[:] = 1.0
    st.tduck[:] = 1.0
    st.rule_meter[:] = 0.0
    m = master_meter(st)
    init_meter(m, sr, 1 if session.engine.channels == 1 else 2)   # what goes out
    st.master[M_TRUE_PEAK] = 1.0 if session.master.ceiling_mode == "true-peak" else 0.0
    st.master[M_DETECT] = (float32_ceiling(session.master.ceiling_db - TP_MARGIN_DB)
                           if session.master.ceiling_mode == "true-peak" else st.master[M_CEILING])
    cfg[C_PUBLISH] = max(1, round(sr / PUBLISH_HZ))
    st.clock[K_NEXT_PUB] = cfg[C_PUBLISH]
    st.acc_rule[:] = 1.0
    st.snap_rule[:] = 1.0
    st.ev_prev[:, 1] = -(1 << 62)


def master_meter(st: EngineState) -> Meter:
    """The master meter's arrays in ``st`` as a ``Meter`` (a view, no copy)."""
    return Meter(*[getattr(st, "m_" + f) for f in Meter._fields])


RECORD_RING_S = 10.5      # recording ring, seconds (rounded up to a power of two)
DROP_LOG = 4096           # record-ring overflow events remembered


def pdc_latency(session) -> int:
    """How late every track reaches the mix, samples: the denoiser's latency when any
    track denoises (the others are delayed as much, so that they stay together), else 0."""
    return DN_LATENCY if denoise_tracks(session) else 0


def stem_latency(session) -> int:
    """The master bus's delay behind the tracks' strips (where stems are tapped), samples:
    the limiter's lookahead (its window less one), plus the true-peak detector's
    half-length in true-peak mode."""
    from ..dsp.meters import TP_HALF
    window = max(2, round(LOOKAHEAD_S * session.engine.samplerate))
    return window - 1 + (TP_HALF if session.master.ceiling_mode == "true-peak" else 0)


def master_latency(session) -> int:
    """The master bus's delay behind session time, samples: the strips' delay
    compensation (``pdc_latency``) plus the master's own (``stem_latency``). Every file
    livemix writes skips this much, so that it is session time."""
    return pdc_latency(session) + stem_latency(session)


def allocate_io(session, stems: bool = False, input_channels: int = 0, input_map=None,
                record_s: float = RECORD_RING_S, align: bool = False, alloc=_numpy_alloc):
    """Allocate the callback's state: recording ring, health counters, input map.

    input_map: {track index: (left channel, right channel)} 0-based device inputs.
    align: compensate the master's delay in the record ring (``master_latency``): the
    stems are delayed to meet it and recording goes on that long after it stops, so
    that a recorder skipping that many frames at the start writes session time.
    """
    from ..dsp.layout import (IO_INCH, IO_LATENCY, IO_OUTCH, IO_STEM_LATENCY, IO_STEMS,
                              LOAD_BINS, N_IOCFG,
                              N_RECIDX,
                              N_STATS, IoState)
    ntracks = len(session.tracks)
    outch = session.engine.channels
    nrec = outch + (2 * ntracks if stems else 0)
    reclen = _pow2(int(record_s * session.engine.samplerate))
    io = IoState(
        io_cfg=alloc("io_cfg", (N_IOCFG,), np.int64),
        stats=alloc("stats", (N_STATS,), np.int64),
        load_hist=alloc("load_hist", (LOAD_BINS,), np.int64),
        ts=alloc("ts", (2,), np.int64),
        in_map=alloc("in_map", (ntracks, 2), np.int64),
        rec_ring=alloc("rec_ring", (nrec, reclen), np.float32),
        rec_idx=alloc("rec_idx", (N_RECIDX,), np.int64),
        rec_drops=alloc("rec_drops", (DROP_LOG, 2), np.int64),
        stem_delay=alloc("stem_delay", (ntracks if stems else 1, 2,
                                        max(1, stem_latency(session))), np.float32),
    )
    io.io_cfg[IO_LATENCY] = master_latency(session) if align else 0
    io.io_cfg[IO_STEM_LATENCY] = stem_latency(session) if align else 0
    io.io_cfg[IO_OUTCH] = outch
    io.io_cfg[IO_INCH] = input_channels
    io.io_cfg[IO_STEMS] = int(stems)
    io.in_map[:] = -1
    for t, (left, right) in (input_map or {}).items():
        io.in_map[t] = (left, right)
    return io
