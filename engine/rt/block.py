"""The block function: one call mixes one block. Live, virtual and offline runs all call it.

``process_block(st, out, nframes)`` takes any frame count (0 included; more
than ``C_MAXBLOCK`` is processed in chunks) and writes ``out[:nframes]``
(frames x output channels, float32, interleaved as PortAudio and soundfile
want it). It allocates nothing, takes no lock and does no I/O: it is safe to
call from a numba ``@cfunc`` on the audio thread.

Order of work for a block:
  1. pull each track's frames from its source ring (underruns -> silence)
  2. split the block at the frames of due commands; per segment:
     ducking rules (key sum -> envelope), tracks (gain, pan, duck -> bus),
     master gain, limiter
  3. meters (the master's loudness and true peak; each file track's source
     true peak is measured by the reader process as it decodes), events (underruns, the limiter starting to work), a snapshot for
     the UI every C_PUBLISH frames, output (downmix for mono), counters
In true-peak mode the limiter's detector is the 4x-oversampled signal
(``dsp.meters.tp_scan_delay``), which delays the master TP_HALF samples more.
"""
import math

import numpy as np
from ..dsp.jit import rt_kernel

from ..dsp.duck import duck_segment
from ..dsp.layout import (A_LOST, A_READ, A_WRITE, C_LOOKAHEAD, C_MAXBLOCK, C_MINHOLD, C_NRULES,
                          C_NTRACKS, C_OUTCH,
                          C_RAMP, CMD_FRAME, CMD_PARAM, CMD_TARGET, CMD_VALUE, DS_DEPTH, DS_GAIN,
                          DS_STEADY, K_BLOCKS, K_CEIL, K_CMD_APPLIED, K_CMD_INVALID,
                          K_CMD_LATE, K_FRAME, K_NAN, M_CEILING, M_GAIN_DB, M_RAMP, M_RELEASE,
                          Q_READ, Q_WRITE, R_GAIN, R_PAN_L, R_PAN_R, T_GAIN_DB, T_MUTE, T_PAN,
                          T_SOLO, C_PUBLISH, C_SR, EV_CEILING, EV_FRAME, EV_KIND, EV_QUIET_S,
                          EV_UNDERRUN, EV_VALUE, K_NEXT_PUB, M_ACC, M_DETECT, M_TRUE_PEAK,
                          S_UNDERRUNS, SN_CEIL, SN_FRAME, SN_M, SN_PEAK_L, SN_PEAK_R, SN_S,
                          SN_SEQ, STK_COMP, STK_GATE, STK_OPEN, STK_PEAK, STK_TP)
from ..dsp.limiter import limit_segment
from ..dsp.meters import MS_M, MS_S, Meter, meter_feed, tp_scan_delay
from ..dsp.mix import add_key, gain_stage, mix_track
from ..dsp.smoothing import ramp_to
from ..dsp.vec import copy, fill, peak, peak_sumsq
from ..params import (P_DUCK_DEPTH, P_GAIN, P_MASTER_GAIN, P_MUTE, P_PAN, P_SOLO, P_STRIP,
                      db_to_lin, lin_to_db, pan_gains)
from ..dsp.strip import (D_COMP_DB, D_COMP_MAX, D_GATE_DB, D_GATE_OPEN, D_GATE_MIN, N_SP, SC_DN, SC_KEY, SC_SETTLED,
                         SC_KEYSRC, SP_TARGET, strip_segment)
from .fpu import denormals_off, fpu_restore
from .rings import ring_pull


@rt_kernel
def track_gain_target(st, t, any_solo):
    """Linear gain a track heads for: fader x (not muted) x (soloed, or no solo at all)."""
    ctl = st.track_ctl[t]
    if ctl[T_MUTE] != 0.0:
        return 0.0
    if any_solo and ctl[T_SOLO] == 0.0:
        return 0.0
    return db_to_lin(ctl[T_GAIN_DB])


@rt_kernel
def retarget_all(st):
    """Point every track's gain ramp at its target (after a mute/solo/fader change)."""
    ntracks = st.cfg[C_NTRACKS]
    any_solo = False
    for t in range(ntracks):
        if st.track_ctl[t, T_SOLO] != 0.0:
            any_solo = True
    for t in range(ntracks):
        ramp_to(st.track_ramp[t, R_GAIN], st.cfg[C_RAMP], track_gain_target(st, t, any_solo))


@rt_kernel
def apply_command(st, param, target, value):
    """Apply one parameter change now. Returns False for an unknown param or target."""
    ramp_n = st.cfg[C_RAMP]
    t = int(target)
    if param == P_MASTER_GAIN:
        st.master[M_GAIN_DB] = value
        ramp_to(st.master[M_RAMP:M_RAMP + 3], ramp_n, db_to_lin(value))
        return True
    if param == P_DUCK_DEPTH:
        if t < 0 or t >= st.cfg[C_NRULES]:
            return False
        depth = min(0.0, max(value, -120.0))
        ramp_to(st.rule_state[t, DS_DEPTH:DS_DEPTH + 3], ramp_n, depth)
        return True
    if t < 0 or t >= st.cfg[C_NTRACKS]:
        return False
    if param >= P_STRIP and param < P_STRIP + N_SP:
        # the strip takes it at its next grid point (session time): engine.dsp.strip
        st.sp[t, SP_TARGET, param - P_STRIP] = value
        st.sp_cfg[t, SC_SETTLED] = 0
        return True
    if param == P_GAIN:
        st.track_ctl[t, T_GAIN_DB] = value
    elif param == P_MUTE:
        st.track_ctl[t, T_MUTE] = 1.0 if value >= 0.5 else 0.0
    elif param == P_SOLO:
        st.track_ctl[t, T_SOLO] = 1.0 if value >= 0.5 else 0.0
    elif param == P_PAN:
        pan = min(1.0, max(-1.0, value))
        st.track_ctl[t, T_PAN] = pan
        left, right = pan_gains(pan)
        ramp_to(st.track_ramp[t, R_PAN_L], ramp_n, left)
        ramp_to(st.track_ramp[t, R_PAN_R], ramp_n, right)
        return True
    else:
        return False
    retarget_all(st)
    return True


@rt_kernel
def log_change(st, frame, param, target, value):
    """Log an applied change with the frame it took effect at (automation ring)."""
    ring = st.auto_ring
    cap = ring.shape[0]
    w = st.auto_idx[A_WRITE]
    if w - st.auto_idx[A_READ] >= cap:
        st.auto_idx[A_LOST] += 1
        return
    row = ring[w & (cap - 1)]
    row[CMD_FRAME] = frame
    row[CMD_PARAM] = param
    row[CMD_TARGET] = target
    row[CMD_VALUE] = value
    st.auto_idx[A_WRITE] = w + 1   # publish after the data


@rt_kernel
def _segment(st, a, b):
    """Mix samples [a, b) of the current block into st.mixbuf and limit them."""
    cfg = st.cfg
    ntracks = cfg[C_NTRACKS]
    nrules = cfg[C_NRULES]
    ramp_n = cfg[C_RAMP]
    # the channel strips, on each track's pre-fader signal (sidechain keys first: a key
    # track's signal as it came from its source)
    for t in range(ntracks):
        slot = st.sp_cfg[t, SC_KEYSRC]
        if slot >= 0:
            for c in range(2):
                copy(st.key_raw[slot, c], a, st.tbuf[t, c], a, b - a)
    frame0 = st.clock[K_FRAME]
    sr = np.float64(cfg[C_SR])
    for t in range(ntracks):
        ks = st.sp_cfg[t, SC_KEY]
        dn = max(st.sp_cfg[t, SC_DN], 0)
        strip_segment(st.tbuf[t], st.key_raw[ks if ks >= 0 else 0], st.sbuf, a, b, frame0,
                      st.sp[t], st.sp_cfg[t], st.bq[t], st.bq_z[t], st.dyn[t], sr,
                      st.dn_states[dn], st.dn_fifo[dn], st.dn_pos[dn],
                      st.dn_dry[min(t, st.dn_dry.shape[0] - 1)])
    # ducking rules: key sum after the key tracks' faders, then the envelope
    for r in range(nrules):
        key = st.keybuf
        fill(key[0], a, b, 0.0)
        fill(key[1], a, b, 0.0)
        for t in range(ntracks):
            if st.rule_keys[r, t]:
                add_key(st.tbuf[t], a, b, st.track_ramp[t], ramp_n, key)
        duck_segment(key, a, b, st.rule_cfg[r], st.rule_state[r], st.duckbuf[r],
                     cfg[C_MINHOLD], ramp_n)
    # tracks into the bus
    for t in range(ntracks):
        nr = st.track_rules[t, 0]
        if nr == 0:
            duck = st.tduck
            steady = True
        elif nr == 1:
            r = st.track_rules[t, 1]
            duck = st.duckbuf[r]
            steady = st.rule_state[r, DS_STEADY] != 0.0
        else:
            # several rules on one target: the deepest wins (they do not stack)
            duck = st.tduck
            steady = True
            for i in range(a, b):
                g = np.float32(1.0)
                for j in range(nr):
                    g = min(g, st.duckbuf[st.track_rules[t, 1 + j], i])
                duck[i] = g
            for j in range(nr):
                if st.rule_state[st.track_rules[t, 1 + j], DS_STEADY] == 0.0:
                    steady = False
        mix_track(st.tbuf[t], a, b, st.track_ramp[t], ramp_n, duck, steady, st.mixbuf,
                  st.gbuf, st.track_meter[t])
        if nr > 1:
            for i in range(a, b):
                st.tduck[i] = np.float32(1.0)
    # master fader, then scrub anything non-finite (NaN/Inf never reach the output)
    bus = st.mixbuf
    gain_stage(bus, a, b, st.master[M_RAMP:M_RAMP + 3], ramp_n)
    pk = max(peak(bus[0], a, b), peak(bus[1], a, b))
    if not pk <= 3.0e38:                 # NaN or Inf somewhere (a NaN peak fails too)
        for c in range(2):
            for i in range(a, b):
                if not abs(bus[c, i]) <= np.float32(3.0e38):
                    bus[c, i] = np.float32(0.0)
                    st.clock[K_NAN] += 1
        pk = max(peak(bus[0], a, b), peak(bus[1], a, b))
    if st.master[M_TRUE_PEAK] != 0.0:
        pk = tp_scan_delay(_limiter_detector(st), bus, a, b, st.master[M_DETECT])
        st.clock[K_CEIL] += limit_segment(bus, a, b, pk, st.master[M_CEILING],
                                          st.master[M_RELEASE], cfg[C_LOOKAHEAD], st.lim_delay,
                                          st.lim_dq_val, st.lim_dq_idx, st.lim_box,
                                          st.lim_state, st.lim_istate, st.m_tp_det,
                                          st.master[M_DETECT])
    else:
        st.clock[K_CEIL] += limit_segment(bus, a, b, pk, st.master[M_CEILING],
                                          st.master[M_RELEASE], cfg[C_LOOKAHEAD], st.lim_delay,
                                          st.lim_dq_val, st.lim_dq_idx, st.lim_box,
                                          st.lim_state, st.lim_istate, None,
                                          st.master[M_CEILING])


@rt_kernel
def _limiter_detector(st):
    """The true-peak limiter's detector: the master meter's filter, its own history."""
    return Meter(st.m_cfg, st.m_kw, st.m_state, st.m_sub, st.m_hist, st.m_tp_coef,
                 st.lt_tp_work, st.m_tp_acc, st.m_tp_det, st.m_series, st.m_series_idx)


@rt_kernel
def _master_meter(st):
    return Meter(st.m_cfg, st.m_kw, st.m_state, st.m_sub, st.m_hist, st.m_tp_coef,
                 st.m_tp_work, st.m_tp_acc, st.m_tp_det, st.m_series, st.m_series_idx)


@rt_kernel
def event_push(st, frame, kind, value):
    """Log an event for the control thread (xrun, underrun, ceiling). Audio thread."""
    ring = st.ev_ring
    cap = ring.shape[0]
    w = st.ev_idx[0]
    if w - st.ev_idx[1] >= cap:
        st.ev_idx[2] += 1
        return
    row = ring[w & (cap - 1)]
    row[EV_FRAME] = frame
    row[EV_KIND] = kind
    row[EV_VALUE] = value
    st.ev_idx[0] = w + 1   # publish after the data


@rt_kernel
def _note(st, slot, count, frame, kind, value):
    """Log an event when ``count`` moved and nothing was logged for EV_QUIET_S."""
    prev = st.ev_prev[slot]
    if count == prev[0]:
        return
    prev[0] = count
    if frame - prev[1] > EV_QUIET_S * st.cfg[C_SR]:
        event_push(st, frame, kind, value)
    prev[1] = frame


@rt_kernel
def _publish(st, frame):
    """Write the snapshot (seqlock) and restart the interval's peaks."""
    snap = st.snap
    snap[SN_SEQ] += 1.0                       # odd: being written
    snap[SN_FRAME] = frame
    snap[SN_PEAK_L] = st.master[M_ACC]
    snap[SN_PEAK_R] = st.master[M_ACC + 1]
    snap[SN_M] = st.m_state[MS_M]
    snap[SN_S] = st.m_state[MS_S]
    snap[SN_CEIL] = st.clock[K_CEIL]
    for t in range(st.cfg[C_NTRACKS]):
        st.snap_track[t, STK_PEAK] = st.acc_track[t]
        st.snap_track[t, STK_TP] = st.track_tp[t]
        st.acc_track[t] = 0.0
        d = st.dyn[t]
        st.snap_track[t, STK_GATE] = d[D_GATE_MIN]
        st.snap_track[t, STK_COMP] = d[D_COMP_MAX]
        st.snap_track[t, STK_OPEN] = d[D_GATE_OPEN]
        d[D_GATE_MIN] = d[D_GATE_DB]
        d[D_COMP_MAX] = d[D_COMP_DB]
    for r in range(st.cfg[C_NRULES]):
        st.snap_rule[r] = st.acc_rule[r]
        st.acc_rule[r] = 1.0
    st.master[M_ACC] = 0.0
    st.master[M_ACC + 1] = 0.0
    snap[SN_SEQ] += 1.0                       # even: complete


@rt_kernel
def _chunk(st, out, n):
    cfg = st.cfg
    ntracks = cfg[C_NTRACKS]
    nrules = cfg[C_NRULES]
    pos = st.clock[K_FRAME]
    ceil0 = st.clock[K_CEIL]
    for t in range(ntracks):
        ring_pull(st.src_ring[t], st.src_pos[t], st.tbuf[t], n)
        _note(st, t, st.src_pos[t, S_UNDERRUNS], pos, EV_UNDERRUN, t)
        st.track_meter[t, 0] = 0.0
        st.track_meter[t, 1] = 0.0
    fill(st.mixbuf[0], 0, n, 0.0)
    fill(st.mixbuf[1], 0, n, 0.0)
    cmds = st.cmd_ring
    cap = cmds.shape[0]
    a = 0
    while a < n:
        b = n
        while st.cmd_idx[Q_READ] < st.cmd_idx[Q_WRITE]:
            row = cmds[st.cmd_idx[Q_READ] & (cap - 1)]
            frame = row[CMD_FRAME]
            if frame >= 0 and frame > pos + a:
                if frame < pos + n:
                    # whole frames only, and always forward: a fractional frame
                    # (pos + a < frame < pos + a + 1) takes effect at the next one
                    b = min(n, max(a + 1, int(math.ceil(frame - pos))))
                break
            if frame >= 0 and frame < pos + a:
                st.clock[K_CMD_LATE] += 1
            if apply_command(st, int(row[CMD_PARAM]), row[CMD_TARGET], row[CMD_VALUE]):
                st.clock[K_CMD_APPLIED] += 1
                log_change(st, pos + a, row[CMD_PARAM], row[CMD_TARGET], row[CMD_VALUE])
            else:
                st.clock[K_CMD_INVALID] += 1
            st.cmd_idx[Q_READ] += 1
        _segment(st, a, b)
        a = b
    # meters and output
    for t in range(ntracks):
        m = st.track_meter[t]
        m[1] = math.sqrt(m[1] / (2 * n))
        st.acc_track[t] = max(st.acc_track[t], m[0])
    for r in range(nrules):
        g = st.rule_state[r, DS_GAIN]
        st.rule_meter[r] = lin_to_db(g)
        st.acc_rule[r] = min(st.acc_rule[r], g)
    for c in range(2):
        pk, ss = peak_sumsq(st.mixbuf[c], 0, n)
        st.master_meter[c, 0] = pk
        st.master_meter[c, 1] = math.sqrt(ss / n)
        if pk > st.peak_hold[c]:
            st.peak_hold[c] = pk
        st.master[M_ACC + c] = max(st.master[M_ACC + c], pk)
    if cfg[C_OUTCH] == 1:      # a mono output: the meter measures what goes out
        for i in range(n):
            st.mixbuf[0, i] = np.float32(0.5) * (st.mixbuf[0, i] + st.mixbuf[1, i])
    meter_feed(_master_meter(st), st.mixbuf, 0, n)
    _note(st, ntracks, st.clock[K_CEIL], pos, EV_CEILING, st.clock[K_CEIL] - ceil0)
    if pos + n >= st.clock[K_NEXT_PUB]:
        _publish(st, pos + n)
        st.clock[K_NEXT_PUB] = max(st.clock[K_NEXT_PUB], pos + n) + cfg[C_PUBLISH]
    if cfg[C_OUTCH] == 1:
        for i in range(n):
            out[i, 0] = st.mixbuf[0, i]
    else:
        for i in range(n):
            out[i, 0] = st.mixbuf[0, i]
            out[i, 1] = st.mixbuf[1, i]
    st.clock[K_FRAME] = pos + n
    st.clock[K_BLOCKS] += 1


@rt_kernel
def process_block(st, out, nframes):
    """Mix ``nframes`` frames into ``out`` (frames x channels float32). Any thread; RT-safe."""
    maxblock = st.cfg[C_MAXBLOCK]
    done = 0
    while done < nframes:
        n = min(maxblock, nframes - done)
        _chunk(st, out[done:done + n], n)
        done += n


@rt_kernel(nogil=True)   # offline renders: a video's encoder runs beside it
def run_blocks(st, out, nframes, blocksize):
    """Call ``process_block`` for consecutive blocks of ``blocksize`` frames (offline
    driver), with denormals flushed as on the audio thread (``engine.rt.fpu``)."""
    fpu = denormals_off()
    done = 0
    while done < nframes:
        n = min(blocksize, nframes - done)
        process_block(st, out[done:done + n], n)
        done += n
    fpu_restore(fpu)
