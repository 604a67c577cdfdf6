"""Track stage: fader/mute/solo gain, pan and ducking gain, summed into the master bus.

Per track and channel c the output is  y_c = s_c * float32(g * pan_c * d)
with g the smoothed fader gain (mute and solo folded in), pan_c the smoothed
pan gain and d the ducking gain, all evaluated per sample. The same float
expression is used on the fast path (nothing moving: one constant per
channel) and on the slow path (per-sample gains), so the output does not
depend on which path ran, nor on the block size.
"""
import numpy as np
from numba import njit

from .layout import R_GAIN, R_PAN_L, R_PAN_R
from .meters import peak_sumsq
from .smoothing import ramp_advance, ramp_at, ramp_steady


@njit(cache=True)
def add_key(src, a, b, ramps, ramp_n, key):
    """key[:, a:b] += float32(g) * src[:, a:b]: a key track after its fader, before pan."""
    gramp = ramps[R_GAIN]
    if ramp_steady(gramp, ramp_n):
        g = np.float32(ramp_at(gramp, ramp_n, 0))
        if g == 0.0:
            return
        for c in range(2):
            for i in range(a, b):
                key[c, i] += g * src[c, i]
    else:
        for i in range(a, b):
            g = np.float32(ramp_at(gramp, ramp_n, i - a))
            key[0, i] += g * src[0, i]
            key[1, i] += g * src[1, i]


@njit(cache=True)
def mix_track(src, a, b, ramps, ramp_n, duck, duck_steady, mix, gbuf, meter):
    """Mix samples [a, b) of one track into ``mix``; advance its ramps.

    src (2, N) float32 pre-fader signal; duck (N,) float32 ducking gain
    (all ones when the track is not a target); meter[0] accumulates the
    post-fader peak, meter[1] the sum of squares (linear). Audio thread only.
    """
    n = b - a
    gr = ramps[R_GAIN]
    lr = ramps[R_PAN_L]
    rr = ramps[R_PAN_R]
    if ramp_steady(gr, ramp_n) and ramp_steady(lr, ramp_n) and ramp_steady(rr, ramp_n) \
            and duck_steady:
        g = ramp_at(gr, ramp_n, 0)
        d = float(duck[a]) if n > 0 else 1.0
        cl = np.float32(g * ramp_at(lr, ramp_n, 0) * d)
        cr = np.float32(g * ramp_at(rr, ramp_n, 0) * d)
        if cl == 0.0 and cr == 0.0:
            return
        for i in range(a, b):
            mix[0, i] += cl * src[0, i]
        for i in range(a, b):
            mix[1, i] += cr * src[1, i]
        pl, sl = peak_sumsq(src[0], a, b)
        pr, sr = peak_sumsq(src[1], a, b)
        fl = float(abs(cl))
        fr = float(abs(cr))
        meter[0] = max(meter[0], pl * fl, pr * fr)
        meter[1] += sl * fl * fl + sr * fr * fr
        return
    for i in range(a, b):
        k = i - a
        g = ramp_at(gr, ramp_n, k)
        d = float(duck[i])
        gbuf[0, i] = np.float32(g * ramp_at(lr, ramp_n, k) * d)
        gbuf[1, i] = np.float32(g * ramp_at(rr, ramp_n, k) * d)
    pk = meter[0]
    ss = meter[1]
    for c in range(2):
        for i in range(a, b):
            y = gbuf[c, i] * src[c, i]
            mix[c, i] += y
            pk = max(pk, abs(float(y)))
            ss += float(y) * float(y)
    meter[0] = pk
    meter[1] = ss
    ramp_advance(gr, ramp_n, n)
    ramp_advance(lr, ramp_n, n)
    ramp_advance(rr, ramp_n, n)
