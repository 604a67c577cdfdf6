"""The channel strip's kernels: high-pass, gate/expander, 4-band EQ, compressor.

One track's strip runs on its pre-fader signal, in place, sample by sample, in
the order hpf -> gate -> eq -> comp (denoise, before them, is
``engine.dsp.denoise``). Every filter is a biquad in transposed direct form II
with float64 state; dynamics work in the log domain. Audio thread; RT-safe.

Parameters (``engine.strip.PARAMS``) live in ``sp[t, SP_TARGET]`` (set by
commands) and move to ``sp[t, SP_CUR]`` only on a fixed grid in session time,
every GRID samples: continuous values glide there (one-pole, SMOOTH_S; gains in
dB, frequencies and Q on a log scale), so the filters' coefficients change every
0.67 ms while a parameter moves and never jump; a stage switched in or out
crosses between its input and output over SWITCH_S, sample by sample. Since the
grid is session time, the output does not depend on the block size: live equals
offline, and a parameter change at any frame gives the same output however the
host cut the blocks.

State per track (allocated by ``engine.rt.state``; T tracks):
  sp      float64 (T, 3, N_SP)   [target, current, current at the step's start]
  sp_cfg  int64 (T, N_SC)        what the session fixed: slope, band types, detector, key
  bq      float64 (T, N_BQ, 5)   biquads [b0, b1, b2, a1, a2]: 0-1 high-pass, 2-5 EQ bands
  bq_z    float64 (T, N_BQ, 2, 2) their state per channel
  dyn     float64 (T, N_DYN)     gate and compressor envelopes, meters' accumulators
  dn_*    the denoise stage's (engine.dsp.denoise), one row per track that has it

Denoise, when the session gives a track one, always runs (switched out, it passes
the dry signal delayed as much): the track is DN_LATENCY (1440 samples, 30 ms)
late, live and offline alike, whether it is switched in or not. Every other track of
such a session is delayed as much (SC_PDC: delay compensation, as a DAW's for a plugin
with latency), so the tracks stay together; the master's compensation
(``engine.rt.state.master_latency``) takes it out of every file written.
"""
import math

import numpy as np

from .denoise import LATENCY as DN_LATENCY
from .denoise import denoise_segment
from .jit import rt_kernel
from .vec import copy

DN_DRY = 2048           # the dry delay line (a power of two over denoise's LATENCY)

GRID = 32               # samples between parameter updates (session time)
SMOOTH_S = 0.010        # glide of a continuous parameter (time constant, s)
SWITCH_S = 0.010        # crossfade of a stage switched in or out (s)
RMS_S = 0.010           # the compressor's RMS detector window (time constant, s)
DETECT_HOLD_S = 0.012   # the gate's detector holds a peak this long (a 42 Hz half-cycle) ...
DETECT_REL_S = 0.010    # ... then decays with this time constant
FLOOR_DB = -120.0       # levels and gains below this are silence

# sp rows
SP_TARGET = 0
SP_CUR = 1
SP_PREV = 2

# the parameters' slots (engine.strip.PARAMS order)
P_DENOISE = 0
P_HPF = 1
P_HPF_FREQ = 2
P_GATE = 3
P_GATE_THR = 4
P_GATE_HYST = 5
P_GATE_RANGE = 6
P_GATE_RATIO = 7
P_GATE_ATT = 8
P_GATE_HOLD = 9
P_GATE_REL = 10
P_EQ = 11
P_EQ0 = 12              # band k: P_EQ0 + 3k freq, + 1 gain, + 2 Q
P_COMP = 24
P_COMP_THR = 25
P_COMP_RATIO = 26
P_COMP_KNEE = 27
P_COMP_ATT = 28
P_COMP_REL = 29
P_COMP_MAKEUP = 30
N_SP = 31

# sp_cfg
SC_SLOPE = 0            # 12 | 18 | 24
SC_TYPE0 = 1            # band k's type: SC_TYPE0 + k (EQ_* below)
SC_RMS = 5              # 1: the compressor's detector is RMS
SC_KEY = 6              # the compressor's key: -1 itself, else a row of key_raw
SC_KEYSRC = 7           # this track is a key: its row in key_raw, else -1
SC_USED = 8             # 1 when any stage is in or crossing (else the strip is skipped)
SC_DN = 9               # the session has denoise on this track: its row of the dn_ arrays, else -1
SC_SETTLED = 10         # 1: nothing moves (every parameter at its target, no switch fading,
                        # filters designed): grid steps are skipped until a command clears it
SC_NBANDS = 11          # EQ bands the session gives (the others are never run)
SC_PDC = 12             # 1: another track denoises and this one does not: it is delayed as
                        # much (DN_LATENCY, through its delay line), so the tracks stay together
N_SC = 13
EQ_PEAK, EQ_LOWSHELF, EQ_HIGHSHELF, EQ_LOWCUT, EQ_HIGHCUT = 0, 1, 2, 3, 4

N_BQ = 6
BQ_EQ0 = 2

# dyn
D_GATE_DB = 0           # the gate's gain now, dB (<= 0)
D_GATE_OPEN = 1         # 1 while the gate is open
D_GATE_HOLD = 2         # samples of hold left
D_COMP_DB = 3           # the compressor's smoothed gain reduction, dB (>= 0)
D_COMP_MS = 4           # the RMS detector's mean square
D_GATE_MIN = 5          # lowest gate gain since the last publish, dB (the meter)
D_COMP_MAX = 6          # largest compressor reduction since the last publish, dB
D_RECOMPUTE = 7         # 1: recompute the filters at the next grid point
D_GATE_ENV = 8          # the gate's level detector: the peak held DETECT_HOLD_S, then decaying
D_GATE_EHOLD = 9        # ... samples of its hold left
D_DN_DRY = 10           # write position in the denoise stage's dry delay line
N_DYN = 11

_LN10_20 = math.log(10.0) / 20.0


@rt_kernel
def _design(kind, f, gain_db, q, sr, out):
    """RBJ Audio EQ Cookbook biquad normalised by a0 into out[:5] = [b0, b1, b2, a1, a2].
    kind: EQ_* ; f Hz; gain_db (peak and shelves); q."""
    w0 = 2.0 * math.pi * f / sr
    cw = math.cos(w0)
    alpha = math.sin(w0) / (2.0 * q)
    a = math.pow(10.0, gain_db / 40.0)
    if kind == EQ_PEAK:
        b0, b1, b2 = 1.0 + alpha * a, -2.0 * cw, 1.0 - alpha * a
        a0, a1, a2 = 1.0 + alpha / a, -2.0 * cw, 1.0 - alpha / a
    elif kind == EQ_LOWSHELF:
        s = 2.0 * math.sqrt(a) * alpha
        b0 = a * ((a + 1.0) - (a - 1.0) * cw + s)
        b1 = 2.0 * a * ((a - 1.0) - (a + 1.0) * cw)
        b2 = a * ((a + 1.0) - (a - 1.0) * cw - s)
        a0 = (a + 1.0) + (a - 1.0) * cw + s
        a1 = -2.0 * ((a - 1.0) + (a + 1.0) * cw)
        a2 = (a + 1.0) + (a - 1.0) * cw - s
    elif kind == EQ_HIGHSHELF:
        s = 2.0 * math.sqrt(a) * alpha
        b0 = a * ((a + 1.0) + (a - 1.0) * cw + s)
        b1 = -2.0 * a * ((a - 1.0) + (a + 1.0) * cw)
        b2 = a * ((a + 1.0) + (a - 1.0) * cw - s)
        a0 = (a + 1.0) - (a - 1.0) * cw + s
        a1 = 2.0 * ((a - 1.0) - (a + 1.0) * cw)
        a2 = (a + 1.0) - (a - 1.0) * cw - s
    elif kind == EQ_LOWCUT:
        b0, b1, b2 = (1.0 + cw) / 2.0, -(1.0 + cw), (1.0 + cw) / 2.0
        a0, a1, a2 = 1.0 + alpha, -2.0 * cw, 1.0 - alpha
    else:   # high-cut
        b0, b1, b2 = (1.0 - cw) / 2.0, 1.0 - cw, (1.0 - cw) / 2.0
        a0, a1, a2 = 1.0 + alpha, -2.0 * cw, 1.0 - alpha
    out[0] = b0 / a0
    out[1] = b1 / a0
    out[2] = b2 / a0
    out[3] = a1 / a0
    out[4] = a2 / a0


@rt_kernel
def _first_order_hp(f, sr, out):
    """First-order Butterworth high-pass (bilinear, prewarped) as a biquad."""
    k = math.tan(math.pi * f / sr)
    out[0] = 1.0 / (1.0 + k)
    out[1] = -1.0 / (1.0 + k)
    out[2] = 0.0
    out[3] = (k - 1.0) / (k + 1.0)
    out[4] = 0.0


@rt_kernel
def design_hpf(slope, f, sr, bq):
    """Butterworth high-pass of 12/18/24 dB per octave at f (-3.01 dB there) into
    bq[0:2]: one biquad (Q 1/sqrt 2), a first-order section and a biquad (Q 1), or
    two biquads (Q 0.5412, 1.3066). An unused section passes the signal as is."""
    if slope == 12:
        _design(EQ_LOWCUT, f, 0.0, 1.0 / math.sqrt(2.0), sr, bq[0])
        _identity(bq[1])
    elif slope == 18:
        _first_order_hp(f, sr, bq[0])
        _design(EQ_LOWCUT, f, 0.0, 1.0, sr, bq[1])
    else:
        _design(EQ_LOWCUT, f, 0.0, 1.0 / (2.0 * math.cos(math.pi / 8.0)), sr, bq[0])
        _design(EQ_LOWCUT, f, 0.0, 1.0 / (2.0 * math.cos(3.0 * math.pi / 8.0)), sr, bq[1])


@rt_kernel
def _identity(c):
    c[0] = 1.0
    c[1] = 0.0
    c[2] = 0.0
    c[3] = 0.0
    c[4] = 0.0


@rt_kernel
def biquads(c, z, x, a, b, first, n):
    """x[:, a:b] through the cascade of biquads c[first:first + n] (in place; states
    z[first:first + n], 2 channels x 2), 1 to 4 of them: both channels and every section
    in one pass, the signal in float64 from the first section's input to the last's
    output (rounded to float32 once)."""
    if n == 1:
        _cascade1(c[first], z[first], x, a, b)
    elif n == 2:
        _cascade2(c[first], c[first + 1], z[first], z[first + 1], x, a, b)
    else:
        _cascade2(c[first], c[first + 1], z[first], z[first + 1], x, a, b)
        if n == 3:
            _cascade1(c[first + 2], z[first + 2], x, a, b)
        else:
            _cascade2(c[first + 2], c[first + 3], z[first + 2], z[first + 3], x, a, b)


@rt_kernel
def _cascade1(c, z, x, a, b):
    b0, b1, b2, a1, a2 = c[0], c[1], c[2], c[3], c[4]
    l1, l2, r1, r2 = z[0, 0], z[0, 1], z[1, 0], z[1, 1]
    xl_row = x[0]
    xr_row = x[1]
    for i in range(a, b):
        xl = np.float64(xl_row[i])
        xr = np.float64(xr_row[i])
        yl = b0 * xl + l1
        yr = b0 * xr + r1
        l1 = b1 * xl - a1 * yl + l2
        r1 = b1 * xr - a1 * yr + r2
        l2 = b2 * xl - a2 * yl
        r2 = b2 * xr - a2 * yr
        xl_row[i] = np.float32(yl)
        xr_row[i] = np.float32(yr)
    z[0, 0], z[0, 1], z[1, 0], z[1, 1] = l1, l2, r1, r2


@rt_kernel
def _cascade2(c, d, z, w, x, a, b):
    b0, b1, b2, a1, a2 = c[0], c[1], c[2], c[3], c[4]
    e0, e1, e2, f1, f2 = d[0], d[1], d[2], d[3], d[4]
    l1, l2, r1, r2 = z[0, 0], z[0, 1], z[1, 0], z[1, 1]
    m1, m2, s1, s2 = w[0, 0], w[0, 1], w[1, 0], w[1, 1]
    xl_row = x[0]
    xr_row = x[1]
    for i in range(a, b):
        xl = np.float64(xl_row[i])
        xr = np.float64(xr_row[i])
        yl = b0 * xl + l1
        yr = b0 * xr + r1
        l1 = b1 * xl - a1 * yl + l2
        r1 = b1 * xr - a1 * yr + r2
        l2 = b2 * xl - a2 * yl
        r2 = b2 * xr - a2 * yr
        ul = e0 * yl + m1
        ur = e0 * yr + s1
        m1 = e1 * yl - f1 * ul + m2
        s1 = e1 * yr - f1 * ur + s2
        m2 = e2 * yl - f2 * ul
        s2 = e2 * yr - f2 * ur
        xl_row[i] = np.float32(ul)
        xr_row[i] = np.float32(ur)
    z[0, 0], z[0, 1], z[1, 0], z[1, 1] = l1, l2, r1, r2
    w[0, 0], w[0, 1], w[1, 0], w[1, 1] = m1, m2, s1, s2


@rt_kernel
def _to_db(x):
    return 20.0 * math.log10(x) if x > 1e-6 else FLOOR_DB


@rt_kernel
def _from_db(db):
    """The linear level of ``db``, floored where _to_db floors (so comparing levels in
    either domain agrees)."""
    return max(math.exp(db * _LN10_20), 1e-6)


@rt_kernel
def comp_gain_db(level_db, thr, ratio, knee):
    """The static curve: dB of reduction (>= 0) at ``level_db``: hard above the knee,
    quadratic inside it (Giannoulis, Massberg, Reiss 2012). ratio may be inf."""
    slope = 1.0 - 1.0 / ratio if ratio < 1e30 else 1.0
    over = level_db - thr
    if 2.0 * over < -knee:
        return 0.0
    if 2.0 * abs(over) <= knee and knee > 0.0:
        d = over + knee / 2.0
        return slope * d * d / (2.0 * knee)
    return slope * over


@rt_kernel
def gate_target_db(level_db, is_open, thr, rng, ratio):
    """The gate's (or expander's) gain toward which it moves, dB (<= 0)."""
    if is_open:
        return 0.0
    if ratio <= 0.0:
        return -rng
    return max(-rng, (level_db - thr) * (ratio - 1.0))


@rt_kernel
def gate_run(x, a, b, p, d, sr):
    """The gate/expander over x[:, a:b] in place. p: the track's current parameters;
    d: its dyn row. The level is a peak detector (the largest |sample| held for
    DETECT_HOLD_S, then decaying over DETECT_REL_S: a steady tone above 42 Hz reads
    its peak exactly, and its zero crossings do not close the gate). The gate opens
    when the level reaches the threshold and closes when it stays under threshold -
    hysteresis for the hold time; open, its gain is 0 dB; closed, -range (a gate) or
    (level - threshold) x (ratio - 1) down to -range (an expander). The gain moves
    linearly in dB, over the range in attack_ms opening and in release_ms closing.
    Starts closed."""
    thr = p[P_GATE_THR]
    close = thr - p[P_GATE_HYST]
    rng = min(p[P_GATE_RANGE], -FLOOR_DB)
    mute = p[P_GATE_RANGE] > -FLOOR_DB
    ratio = p[P_GATE_RATIO]
    up = rng / (p[P_GATE_ATT] * 0.001 * sr)
    down = rng / (p[P_GATE_REL] * 0.001 * sr)
    hold_n = p[P_GATE_HOLD] * 0.001 * sr
    g = d[D_GATE_DB]
    g_last = g
    gain = 0.0 if mute and g <= -rng else math.exp(g * _LN10_20)
    thr_lin = _from_db(thr)
    close_lin = _from_db(close)
    is_open = d[D_GATE_OPEN] != 0.0
    hold = d[D_GATE_HOLD]
    gmin = d[D_GATE_MIN]
    env = d[D_GATE_ENV]
    ehold = d[D_GATE_EHOLD]
    ehold_n = DETECT_HOLD_S * sr
    decay = math.exp(-1.0 / (DETECT_REL_S * sr))
    for i in range(a, b):
        pk = max(abs(np.float64(x[0, i])), abs(np.float64(x[1, i])))
        if ehold > 0.0:
            ehold -= 1.0
        else:
            env *= decay
        if pk >= env:                 # a new peak (or one the decay came down to): held
            env = pk
            ehold = ehold_n
        if env >= thr_lin:            # (the levels compared in linear terms: no log)
            is_open = True
            hold = hold_n
        elif is_open and env < close_lin:
            if hold > 0.0:
                hold -= 1.0
            else:
                is_open = False
        if is_open:
            target = 0.0
        elif ratio <= 0.0:
            target = -rng
        else:
            target = gate_target_db(_to_db(env), False, thr, rng, ratio)
        if g < target:
            g = min(target, g + up)
        elif g > target:
            g = max(target, g - down)
        if g != g_last:               # the gain in dB moved: its factor again
            g_last = g
            gain = 0.0 if mute and g <= -rng else math.exp(g * _LN10_20)
        x[0, i] = np.float32(x[0, i] * gain)
        x[1, i] = np.float32(x[1, i] * gain)
        if g < gmin:
            gmin = g
    d[D_GATE_DB] = g
    d[D_GATE_ENV] = env
    d[D_GATE_EHOLD] = ehold
    d[D_GATE_OPEN] = 1.0 if is_open else 0.0
    d[D_GATE_HOLD] = hold
    d[D_GATE_MIN] = gmin


@rt_kernel
def comp_run(x, key, a, b, p, d, rms, sr):
    """The compressor over x[:, a:b] in place, detecting on key[:, a:b] (x itself when
    not keyed by another track). Feed-forward: the static curve on the detector's
    level in dB, then a smooth branching attack/release detector on the reduction
    (one-pole each way: a step reaches 63 % of its change in dB in the time
    constant), then makeup. rms: detect the mean square over RMS_S, else the peak."""
    thr = p[P_COMP_THR]
    ratio = p[P_COMP_RATIO]
    knee = p[P_COMP_KNEE]
    makeup = p[P_COMP_MAKEUP]
    aa = math.exp(-1.0 / (p[P_COMP_ATT] * 0.001 * sr))
    ar = math.exp(-1.0 / (p[P_COMP_REL] * 0.001 * sr))
    am = math.exp(-1.0 / (RMS_S * sr))
    y = d[D_COMP_DB]
    ms = d[D_COMP_MS]
    gmax = d[D_COMP_MAX]
    # under the knee the curve is 0: levels below it are recognised without a log
    below = math.exp((thr - knee / 2.0) * _LN10_20)
    y_last = y
    gain = math.exp((makeup - y) * _LN10_20)
    for i in range(a, b):
        kl = np.float64(key[0, i])
        kr = np.float64(key[1, i])
        if rms:
            ms = am * ms + (1.0 - am) * 0.5 * (kl * kl + kr * kr)
            if ms < below * below:
                xl = 0.0
            else:
                xl = comp_gain_db(10.0 * math.log10(ms) if ms > 1e-12 else FLOOR_DB, thr,
                                  ratio, knee)
        else:
            pk = max(abs(kl), abs(kr))
            xl = 0.0 if pk < below else comp_gain_db(_to_db(pk), thr, ratio, knee)
        if xl > y:
            y = aa * y + (1.0 - aa) * xl
        else:
            y = ar * y + (1.0 - ar) * xl
        if y != y_last:                 # the reduction moved: its factor again
            y_last = y
            gain = math.exp((makeup - y) * _LN10_20)
        x[0, i] = np.float32(x[0, i] * gain)
        x[1, i] = np.float32(x[1, i] * gain)
        if y > gmax:
            gmax = y
    d[D_COMP_DB] = y
    d[D_COMP_MS] = ms
    d[D_COMP_MAX] = gmax


# --- parameters on the grid -------------------------------------------------------------------

@rt_kernel
def _glide(cur, target, k, log_scale):
    """One grid step of a continuous parameter toward its target (k: the step's share)."""
    if cur == target or not (abs(target) < 1e30 and abs(cur) < 1e30):
        return target
    if log_scale:
        v = math.exp(math.log(cur) + (math.log(target) - math.log(cur)) * k)
    else:
        v = cur + (target - cur) * k
    return target if abs(v - target) <= 1e-6 * max(1.0, abs(target)) else v


@rt_kernel
def grid_step(sp, cfg, bq, d, sr):
    """At a grid point: parameters one step on, switches one step of their crossfade,
    the filters redesigned when theirs moved. Returns nothing; sets cfg[SC_USED]."""
    k = 1.0 - math.exp(-GRID / (SMOOTH_S * sr))
    step = GRID / (SWITCH_S * sr)
    tgt = sp[SP_TARGET]
    cur = sp[SP_CUR]
    prev = sp[SP_PREV]
    moved_hpf = False
    moved_eq = False
    used = False
    settled = d[D_RECOMPUTE] == 0.0
    for j in range(N_SP):
        prev[j] = cur[j]
        if j == P_DENOISE or j == P_HPF or j == P_GATE or j == P_EQ or j == P_COMP:
            if cur[j] < tgt[j]:
                cur[j] = min(tgt[j], cur[j] + step)
            elif cur[j] > tgt[j]:
                cur[j] = max(tgt[j], cur[j] - step)
            if cur[j] > 0.0 or prev[j] > 0.0:
                used = True
            if cur[j] != prev[j] or cur[j] != tgt[j]:
                settled = False
            continue
        if cur[j] == tgt[j]:
            continue
        settled = False
        if j == P_GATE_ATT or j == P_GATE_HOLD or j == P_GATE_REL or j == P_COMP_ATT \
                or j == P_COMP_REL:
            cur[j] = tgt[j]                 # times: no glide needed (they set speeds)
            continue
        log_scale = j == P_HPF_FREQ or (j >= P_EQ0 and j < P_COMP and (j - P_EQ0) % 3 != 1)
        cur[j] = _glide(cur[j], tgt[j], k, log_scale)
        if j == P_HPF_FREQ:
            moved_hpf = True
        elif j >= P_EQ0 and j < P_COMP:
            moved_eq = True
    if moved_hpf or d[D_RECOMPUTE] != 0.0:
        design_hpf(cfg[SC_SLOPE], cur[P_HPF_FREQ], sr, bq)
    if moved_eq or d[D_RECOMPUTE] != 0.0:
        for band in range(cfg[SC_NBANDS]):
            base = P_EQ0 + 3 * band
            _design(cfg[SC_TYPE0 + band], cur[base], cur[base + 1], cur[base + 2], sr,
                    bq[BQ_EQ0 + band])
    d[D_RECOMPUTE] = 0.0
    cfg[SC_USED] = 1 if used else 0
    cfg[SC_SETTLED] = 1 if settled else 0


# --- one track's strip over a segment ---------------------------------------------------------

@rt_kernel
def _stage_mix(x, dry, a, b, m0, m1, i0):
    """x = dry + (x - dry) * m, m from m0 toward m1 linearly across the grid step that
    began at sample i0 (GRID samples long): a switch's crossfade."""
    for i in range(a, b):
        m = m0 + (m1 - m0) * (i - i0 + 1) / GRID
        for c in range(2):
            x[c, i] = np.float32(dry[c, i] + (np.float64(x[c, i]) - dry[c, i]) * m)


@rt_kernel
def _delayed(x, dry, a, b, dnd, d):
    """dry[:, a:b] = x[:, a:b] DN_LATENCY samples ago, through the track's delay line."""
    mask = DN_DRY - 1
    w = int(d[D_DN_DRY])
    for c in range(2):
        line = dnd[c]
        for i in range(a, b):
            j = (w + i - a) & mask
            dry[c, i] = line[(j - DN_LATENCY) & mask]
            line[j] = x[c, i]
    d[D_DN_DRY] = (w + b - a) & mask


@rt_kernel
def _delay(x, dry, a, b, dnd, d):
    """x[:, a:b] delayed by DN_LATENCY in place: a track waiting for another's denoiser."""
    _delayed(x, dry, a, b, dnd, d)
    for c in range(2):
        copy(x[c], a, dry[c], a, b - a)


@rt_kernel
def _denoise(x, dry, a, b, m0, m1, i0, dns, dnf, dnp, dnd, d):
    """The denoise stage over x[:, a:b]: RNNoise, LATENCY samples late, crossfaded with
    the dry signal delayed as much (so switching it never moves the track in time)."""
    _delayed(x, dry, a, b, dnd, d)
    if m0 == 0.0 and m1 == 0.0:
        for c in range(2):
            copy(x[c], a, dry[c], a, b - a)
        return
    denoise_segment(dns, dnf, dnp, x, a, b)
    if m0 != 1.0 or m1 != 1.0:
        _stage_mix(x, dry, a, b, m0, m1, i0)


@rt_kernel
def _run_span(x, key, dry, a, b, i0, sp, cfg, bq, z, d, sr, dns, dnf, dnp, dnd):
    """The stages over x[:, a:b], all inside one grid step (that began at sample i0)."""
    cur = sp[SP_CUR]
    prev = sp[SP_PREV]
    if cfg[SC_DN] >= 0:
        _denoise(x, dry, a, b, prev[P_DENOISE], cur[P_DENOISE], i0, dns, dnf, dnp, dnd, d)
    elif cfg[SC_PDC] != 0:
        _delay(x, dry, a, b, dnd, d)
    for stage in range(4):
        j = (P_HPF, P_GATE, P_EQ, P_COMP)[stage]
        m1 = cur[j]
        m0 = prev[j]
        if m1 == 0.0 and m0 == 0.0:
            continue
        fading = m1 != 1.0 or m0 != 1.0
        if fading:
            for c in range(2):
                copy(dry[c], a, x[c], a, b - a)
        if stage == 0:
            biquads(bq, z, x, a, b, 0, 1 if cfg[SC_SLOPE] == 12 else 2)
        elif stage == 1:
            gate_run(x, a, b, cur, d, sr)
        elif stage == 2:
            if cfg[SC_NBANDS] > 0:
                biquads(bq, z, x, a, b, BQ_EQ0, cfg[SC_NBANDS])
        else:
            comp_run(x, key if cfg[SC_KEY] >= 0 else x, a, b, cur, d, cfg[SC_RMS] != 0, sr)
        if fading:
            _stage_mix(x, dry, a, b, m0, m1, i0)


@rt_kernel
def strip_segment(x, key, dry, a, b, frame0, sp, cfg, bq, z, d, sr, dns, dnf, dnp, dnd):
    """One track's strip over its signal x[:, a:b] (in place); frame0 is the session
    frame of x[:, 0], so the grid is session time. key: the compressor's key signal
    (another track's, as it came from its source) or unused; dry: (2, N) scratch;
    dns, dnf, dnp, dnd: its denoise state (engine.dsp.denoise), when it has one."""
    if cfg[SC_SETTLED] != 0 and cfg[SC_USED] == 0 and cfg[SC_DN] < 0 and cfg[SC_PDC] == 0:
        return                        # nothing in, nothing moving: the signal as it is
    i = a
    while i < b:
        f = frame0 + i
        if f % GRID == 0 and cfg[SC_SETTLED] == 0:
            grid_step(sp, cfg, bq, d, sr)
        i0 = i - (f % GRID)
        end = min(b, i0 + GRID)
        if cfg[SC_USED] != 0 or cfg[SC_DN] >= 0 or cfg[SC_PDC] != 0:
            _run_span(x, key, dry, i, end, i0, sp, cfg, bq, z, d, sr, dns, dnf, dnp, dnd)
        i = end
