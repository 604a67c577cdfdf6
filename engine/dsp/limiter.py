"""Master ceiling limiter: lookahead, guaranteed sample-peak ceiling, transparent below it.

Let L be the window (``C_LOOKAHEAD`` samples; 2 ms, so 96 at 48 kHz) and c
the ceiling. For each input sample x[n] (stereo, after the master fader):

1. required gain   q[n] = min(1, c / max|x[n]|)
2. release         e[n] = min(q[n], e[n-1] + (1 - e[n-1]) * release_coef)
3. sliding minimum m[n] = min(e[n-L+1 .. n])
4. smoothing       s[n] = mean(m[n-L+1 .. n])
5. output          y[n] = x[n - (L-1)] * s[n]

True-peak mode replaces |x[n]| in step 1 by the true peak of the intervals
either side of x[n] (``meters.tp_scan_delay``: 4x oversampled at 48 kHz,
which delays the signal TP_HALF samples more: the latency is L - 1 + 20
samples, 115 at 48 kHz) held under the ceiling less TP_MARGIN_DB. The
output's true peak stays under the ceiling, measured by a 32x
reconstruction, for content up to 20 kHz: with the gain constant it is the
input's scaled, and the detector reads such content at most 0.06 dB low
(0.04 dB for tones: the peak estimate between grid points and the
filter's ripple; 0.06 dB for a 3 ms burst at 20 kHz, whose spectrum
reaches past 20 kHz); while the gain moves, the interpolation of the
varying gain overshoots by a few thousandths of a dB at most. The margin
covers both.

Every term of the mean in step 4 is a minimum over a window that contains
sample n-(L-1), so s[n] <= q[n-(L-1)]: the output never exceeds c. The gain
falls to its value over L samples (the attack; no step, no click) and
recovers with the one-pole release, which snaps to exactly 1.0 once within
1e-4 of it (about 0.9 s after the last reduction). The output is delayed by
L-1 samples. Once the release has snapped and 2L samples have passed without
a sample above c, s is exactly 1.0 and the output is the input, bit for bit. A final clamp to +/-c guards against rounding in
the running mean (it does nothing in practice; it makes the bound exact).

The minimum uses a monotonic deque of the values below 1 (amortised O(1));
a segment whose peak stays under c while the limiter is idle takes a fast
path that only runs the delay line (vectorised copies).
"""
import numpy as np
from .jit import rt_kernel

from .layout import (L_BOXSUM, L_DET_PREV, L_ENV, LI_BOX_BELOW, LI_BOX_POS, LI_DELAY_BASE, LI_DQ_COUNT,
                     LI_DQ_HEAD, LI_N)
from .vec import copy

TP_MARGIN_DB = 0.1   # true-peak mode: the detector holds the signal this far under the ceiling
                     # (the detector's under-read up to 20 kHz, <= 0.06 dB, and the gain's own
                     # movement, < 0.005 dB: measured, see tests/test_meters.py)
_SNAP = 1.0 - 1e-4   # release snaps to exactly 1.0 from here (a 0.0009 dB step)


@rt_kernel
def limiter_idle(fst, ist):
    """True when the limiter holds no gain reduction anywhere in its windows."""
    return fst[L_ENV] == 1.0 and ist[LI_DQ_COUNT] == 0 and ist[LI_BOX_BELOW] == 0


@rt_kernel
def limit_segment(mix, a, b, pk, ceiling, release, window, delay, dq_val, dq_idx, box, fst,
                  ist, det, detect):
    """Limit ``mix[:, a:b]`` (2, N) float32 in place. Returns samples reduced.

    ``pk`` is the segment's peak as the detector sees it. Sample-peak mode
    (``det`` None): the caller's sample peak, ``detect`` = ``ceiling``.
    True-peak mode: ``det[0:b-a]`` holds the true peak of each sample's
    interval to the next (``meters.tp_scan_delay``), ``pk`` its maximum, and
    ``detect`` the level the detector holds the true peak under (the
    ceiling less a margin for the gain's own movement).
    ``delay`` (2, window - 1 + k * N) holds the lookahead: at ``LI_DELAY_BASE``
    start the window - 1 delayed samples still to come out; the input is
    appended after them and the base moves on, so the line is shifted back to
    the start only once every few blocks. ``ceiling`` is linear and must be
    representable in float32. Audio thread only.
    """
    n = b - a
    dlen = window - 1
    base = ist[LI_DELAY_BASE]
    if base + dlen + n > delay.shape[1]:
        for c in range(2):
            copy(delay[c], 0, delay[c], base, dlen)    # move the pending samples back
        base = 0
    for c in range(2):
        copy(delay[c], base + dlen, mix[c], a, n)      # append this segment's input
    reduced = 0
    if pk <= detect and limiter_idle(fst, ist):
        # Fast path: the gain is exactly 1; only the delay runs.
        for c in range(2):
            copy(mix[c], a, delay[c], base, n)
        ist[LI_N] += n
        ist[LI_BOX_POS] = (ist[LI_BOX_POS] + n) % window
    else:
        reduced = _limit_slow(mix, a, b, base, ceiling, release, window, delay, dq_val,
                              dq_idx, box, fst, ist, det, detect)
    ist[LI_DELAY_BASE] = base + n
    return reduced


@rt_kernel
def _limit_slow(mix, a, b, base, ceiling, release, window, delay, dq_val, dq_idx, box, fst,
                ist, det, detect):
    c32 = np.float32(ceiling)
    dlen = window - 1
    env = fst[L_ENV]
    boxsum = fst[L_BOXSUM]
    n = ist[LI_N]
    head = ist[LI_DQ_HEAD]
    count = ist[LI_DQ_COUNT]
    bpos = ist[LI_BOX_POS]
    below = ist[LI_BOX_BELOW]
    prev = fst[L_DET_PREV]
    reduced = 0
    for i in range(a, b):
        k = i - a
        xl = delay[0, base + dlen + k]
        xr = delay[1, base + dlen + k]
        if det is None:
            p = max(abs(xl), abs(xr))
        else:
            d = float(det[k])
            p = max(d, prev)              # the intervals on both sides of the sample
            prev = d
        q = 1.0 if p <= detect else detect / p
        if env < 1.0:
            env = env + (1.0 - env) * release
            if env >= _SNAP:
                env = 1.0
        if q < env:
            env = q
            reduced += 1
        # sliding minimum over the last `window` values of env (only values < 1 kept)
        if count > 0 and dq_idx[head] <= n - window:
            head += 1
            if head == window:
                head = 0
            count -= 1
        if env < 1.0:
            while count > 0:
                back = head + count - 1
                if back >= window:
                    back -= window
                if dq_val[back] >= env:
                    count -= 1
                else:
                    break
            slot = head + count
            if slot >= window:
                slot -= window
            dq_val[slot] = env
            dq_idx[slot] = n
            count += 1
        m = dq_val[head] if count > 0 else 1.0
        # running mean of m over the last `window` values
        old = box[bpos]
        box[bpos] = m
        bpos += 1
        if bpos == window:
            bpos = 0
        if m < 1.0:
            below += 1
        if old < 1.0:
            below -= 1
        if below == 0:
            boxsum = float(window)
            s = 1.0
        else:
            boxsum += m - old
            s = boxsum / window
        yl = delay[0, base + k]
        yr = delay[1, base + k]
        if s != 1.0:
            s32 = np.float32(s)
            yl = min(max(yl * s32, -c32), c32)
            yr = min(max(yr * s32, -c32), c32)
        mix[0, i] = yl
        mix[1, i] = yr
        n += 1
    fst[L_ENV] = env
    fst[L_BOXSUM] = boxsum
    fst[L_DET_PREV] = prev
    ist[LI_N] = n
    ist[LI_DQ_HEAD] = head
    ist[LI_DQ_COUNT] = count
    ist[LI_BOX_POS] = bpos
    ist[LI_BOX_BELOW] = below
    return reduced
