"""Per-sample problem scanning for ``livemix analyze`` (numba, streaming, one pass).

A file is fed chunk by chunk (interleaved float32, as soundfile reads it)
through ``scan_chunk``, which de-interleaves it into the (channels, frames)
layout the meters take and, in the same pass, finds:

- clipped runs: >= CLIP_RUN consecutive samples of one channel at full
  scale (|x| >= CLIP_LEVEL), merged with runs less than ``gap`` frames apart;
- dropouts: runs of exact digital zeros on every channel, at least
  ``min_zero`` frames long, with signal before and after (a run still open
  at the end of the file is trailing silence, never reported);
- DC offset: per-channel means over consecutive windows of ``dc_window``
  frames (the caller judges them);
- NaN / Inf samples, replaced by 0 and counted.

``scan_overs`` runs the true-peak detector (``meters.tp_scan``) only over
the sub-blocks whose sample peak could put a true peak above the ceiling,
and reports the overs as merged intervals.

Events are rows [kind, start frame, end frame (exclusive), value] in an
``ev`` buffer the caller drains (``ist[I_NEV]`` rows, then sets it to 0),
DC rows likewise in ``dcw`` (``ist[I_NDC]``).
Open events (still growing) live in ``trk`` rows [open, start, end, value]
until a later event is more than ``gap`` away or ``scan_finish`` is called.
"""
import numpy as np
from numba import njit

from .meters import MC_NCH, MS_TP_GAIN, TP_HALF, TP_TAPS, tp_flush, tp_scan
from .vec import copy, peak

CLIP_LEVEL = 0.99996        # |x| at or above this is full scale (16-bit max is 0.999969)
CLIP_RUN = 3                # consecutive full-scale samples that make a clipped run
DET_BLOCK = 4096            # frames per true-peak detector block

K_CLIP = 0
K_OVER = 1
K_DROP = 2
N_KINDS = 3

# ist slots (int64)
I_RUN = 0           # 2 slots: current full-scale run length, per channel
I_RUNSTART = 2      # 2 slots: its first frame
I_ZRUN = 4          # current all-zero run length
I_ZSTART = 5        # its first frame
I_SEEN = 6          # 1 once a non-zero frame went by
I_NONFINITE = 7     # NaN/Inf samples replaced by 0
I_DCPOS = 8         # frames into the current DC window
I_NEV = 9           # rows in ev
I_LOST = 10         # events lost to a full ev buffer
I_NDC = 11          # rows in dcw
N_IST = 12

# fst slots (float64)
F_DC = 0            # 2 slots: sum of the current DC window, per channel
F_PREVPK = 2        # sample peak of the detector's previous block
N_FST = 3


def new_scan_state(chunk: int, rate: int, min_gap: int):
    """(ist, fst, trk, ev, dcw) for chunks of up to ``chunk`` frames.

    min_gap: the smallest distance, frames, between two events of a kind
    that are not merged (sizes the event buffer)."""
    cap = chunk // max(1, min_gap) + 16
    return (np.zeros(N_IST, np.int64), np.zeros(N_FST, np.float64),
            np.zeros((N_KINDS, 4), np.float64), np.zeros((cap * N_KINDS, 4), np.float64),
            np.zeros((chunk // 1000 + 4, 3), np.float64))


@njit(cache=True, inline="always")
def _push(ev, ist, kind, s, e, v):
    n = ist[I_NEV]
    if n < ev.shape[0]:
        ev[n, 0] = kind
        ev[n, 1] = s
        ev[n, 2] = e
        ev[n, 3] = v
        ist[I_NEV] = n + 1
    else:
        ist[I_LOST] += 1


@njit(cache=True)
def _event(trk, ev, ist, kind, s, e, v, gap, keep_max):
    """Add [s, e) to kind's open event if within ``gap`` frames of it, else start a new one.

    value: the maximum (keep_max) or the sum of the parts' values."""
    t = trk[kind]
    if t[0] != 0.0 and s <= t[2] + gap:
        t[1] = min(t[1], s)
        t[2] = max(t[2], e)
        t[3] = max(t[3], v) if keep_max else t[3] + v
        return
    if t[0] != 0.0:
        _push(ev, ist, kind, t[1], t[2], t[3])
    t[0] = 1.0
    t[1] = s
    t[2] = e
    t[3] = v


@njit(cache=True)
def scan_chunk(buf, n, base, out, ist, fst, trk, ev, dcw, gap, min_zero, dc_window):
    """Scan interleaved buf[:n] (frames x channels float32; frame ``base`` of the file).

    Writes buf de-interleaved into out[:, :n] (NaN/Inf as 0). Clipped runs
    merge within ``gap`` frames; dropouts need ``min_zero`` frames; a DC
    row [first frame, mean ch0, mean ch1] per completed ``dc_window``."""
    nch = buf.shape[1]
    for i in range(n):
        g = base + i
        allzero = True
        for c in range(nch):
            v = buf[i, c]
            if not np.isfinite(v):
                v = np.float32(0.0)
                ist[I_NONFINITE] += 1
                allzero = False      # garbage, not digital silence: never a "dropout"
            out[c, i] = v
            fst[F_DC + c] += v
            if v != 0.0:
                allzero = False
            if abs(v) >= CLIP_LEVEL:
                if ist[I_RUN + c] == 0:
                    ist[I_RUNSTART + c] = g
                ist[I_RUN + c] += 1
            elif ist[I_RUN + c] != 0:
                if ist[I_RUN + c] >= CLIP_RUN:
                    _event(trk, ev, ist, K_CLIP, ist[I_RUNSTART + c], g, ist[I_RUN + c],
                           gap, False)
                ist[I_RUN + c] = 0
        if allzero:
            if ist[I_ZRUN] == 0:
                ist[I_ZSTART] = g
            ist[I_ZRUN] += 1
        else:
            if ist[I_ZRUN] >= min_zero and ist[I_SEEN] != 0:
                _event(trk, ev, ist, K_DROP, ist[I_ZSTART], g, ist[I_ZRUN], 0, False)
            ist[I_ZRUN] = 0
            ist[I_SEEN] = 1
        ist[I_DCPOS] += 1
        if ist[I_DCPOS] == dc_window:
            _dc_row(ist, fst, dcw, nch, g + 1 - dc_window, dc_window)


@njit(cache=True)
def _dc_row(ist, fst, dcw, nch, first, frames):
    k = ist[I_NDC]
    if k < dcw.shape[0]:
        dcw[k, 0] = first
        for c in range(nch):
            dcw[k, 1 + c] = fst[F_DC + c] / frames
        ist[I_NDC] = k + 1
    for c in range(2):
        fst[F_DC + c] = 0.0
    ist[I_DCPOS] = 0


@njit(cache=True)
def scan_finish(ist, fst, trk, ev, dcw, total, nch, gap):
    """End of file (``total`` frames): close clipped runs, flush open events, and
    the last, partial DC window (a row, even if short: the caller judges its length)."""
    for c in range(nch):
        if ist[I_RUN + c] >= CLIP_RUN:
            _event(trk, ev, ist, K_CLIP, ist[I_RUNSTART + c], total, ist[I_RUN + c],
                   gap, False)
        ist[I_RUN + c] = 0
    for k in range(N_KINDS):
        if trk[k, 0] != 0.0:
            _push(ev, ist, k, trk[k, 1], trk[k, 2], trk[k, 3])
            trk[k, 0] = 0.0
    if ist[I_DCPOS] > 0:
        _dc_row(ist, fst, dcw, nch, total - ist[I_DCPOS], ist[I_DCPOS])


@njit(cache=True)
def _overs(det, n, first, thr, trk, ev, ist, gap):
    """Samples whose true peak det[k] (interval starting at frame first + k) exceeds thr."""
    for k in range(n):
        v = det[k]
        if v > thr:
            _event(trk, ev, ist, K_OVER, first + k, first + k + 1, v, gap, True)


@njit(cache=True)
def scan_overs(d, x, n, base, thr, fst, trk, ev, ist, gap):
    """True-peak overs above ``thr`` (linear) in x[:, :n] (frame ``base`` of the file).

    d: a meter used only as the detector (maxblock >= DET_BLOCK). A block is
    interpolated only when its sample peak, or its history's, times the
    filter's gain bound could exceed thr; otherwise only the history moves on."""
    nch = d.cfg[MC_NCH]
    gain = d.state[MS_TP_GAIN]
    for a in range(0, n, DET_BLOCK):
        b = min(n, a + DET_BLOCK)
        pk = 0.0
        for c in range(nch):
            pk = max(pk, peak(x[c], a, b))
        bound = max(pk, fst[F_PREVPK]) * gain
        fst[F_PREVPK] = pk if b - a >= TP_TAPS else 3.0e38
        if b - a >= TP_TAPS and bound <= thr:
            for c in range(nch):
                copy(d.tp_work[c], 0, x[c], b - TP_TAPS, TP_TAPS)
            continue
        tp_scan(d, x, a, b)
        _overs(d.tp_det, b - a, base + a - TP_HALF, thr, trk, ev, ist, gap)


@njit(cache=True)
def overs_finish(d, total, thr, trk, ev, ist, gap):
    """The detector's last TP_HALF samples (as if silence followed)."""
    tp_flush(d)
    _overs(d.tp_det, TP_HALF, total - TP_HALF, thr, trk, ev, ist, gap)
