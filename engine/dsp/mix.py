"""Track stage: fader/mute/solo gain, pan and ducking gain, summed into the master bus.

Per track and channel c the output is  y_c = s_c * float32(g * pan_c * d)
with g the smoothed fader gain (mute and solo folded in), pan_c the smoothed
pan gain and d the ducking gain, all evaluated per sample. The same float
expression is used on the fast path (nothing moving: one constant per
channel) and on the slow path (per-sample gains), so the output does not
depend on which path ran, nor on the block size.
"""
import numpy as np

from .jit import rt_kernel
from .layout import R_GAIN, R_PAN_L, R_PAN_R
from .smoothing import ramp_advance, ramp_at, ramp_steady
from .vec import add_scaled, peak_sumsq, scale


@rt_kernel
def add_key(src, a, b, ramps, ramp_n, key):
    """key[:, a:b] += float32(g) * src[:, a:b]: a key track after its fader, before pan."""
    gramp = ramps[R_GAIN]
    if ramp_steady(gramp, ramp_n):
        g = np.float32(ramp_at(gramp, ramp_n, 0))
        if g != 0.0:
            add_scaled(key[0], src[0], g, a, b)
            add_scaled(key[1], src[1], g, a, b)
        return
    for i in range(a, b):
        g = np.float32(ramp_at(gramp, ramp_n, i - a))
        key[0, i] += g * src[0, i]
        key[1, i] += g * src[1, i]


@rt_kernel
def mix_track(src, a, b, ramps, ramp_n, duck, duck_steady, mix, gbuf, meter):
    """Mix samples [a, b) of one track into ``mix``; advance its ramps.

    src (2, N) float32 pre-fader signal; duck (N,) float32 ducking gain
    (all ones when the track is not a target); meter[0] accumulates the
    post-fader peak, meter[1] the sum of squares (linear). Audio thread only.
    """
    gr = ramps[R_GAIN]
    lr = ramps[R_PAN_L]
    rr = ramps[R_PAN_R]
    if ramp_steady(gr, ramp_n) and ramp_steady(lr, ramp_n) and ramp_steady(rr, ramp_n) \
            and duck_steady:
        g = ramp_at(gr, ramp_n, 0)
        d = float(duck[a]) if b > a else 1.0
        cl = np.float32(g * ramp_at(lr, ramp_n, 0) * d)
        cr = np.float32(g * ramp_at(rr, ramp_n, 0) * d)
        if cl == 0.0 and cr == 0.0:
            return
        add_scaled(mix[0], src[0], cl, a, b)
        add_scaled(mix[1], src[1], cr, a, b)
        fl = float(abs(cl))
        fr = float(abs(cr))
        # |c * s| == |c| * |s| exactly, so the post-fader peak is the scaled source peak
        pl, sl = peak_sumsq(src[0], a, b)
        pr, sr = peak_sumsq(src[1], a, b)
        meter[0] = max(meter[0], pl * fl, pr * fr)
        meter[1] += sl * fl * fl + sr * fr * fr
        return
    for i in range(a, b):
        k = i - a
        g = ramp_at(gr, ramp_n, k)
        d = float(duck[i])
        gbuf[0, i] = np.float32(g * ramp_at(lr, ramp_n, k) * d) * src[0, i]
        gbuf[1, i] = np.float32(g * ramp_at(rr, ramp_n, k) * d) * src[1, i]
    one = np.float32(1.0)
    for c in range(2):
        add_scaled(mix[c], gbuf[c], one, a, b)
        pk, ss = peak_sumsq(gbuf[c], a, b)
        meter[0] = max(meter[0], pk)
        meter[1] += ss
    ramp_advance(gr, ramp_n, b - a)
    ramp_advance(lr, ramp_n, b - a)
    ramp_advance(rr, ramp_n, b - a)


@rt_kernel
def gain_stage(bus, a, b, ramp, ramp_n):
    """bus[:, a:b] *= the smoothed gain of ``ramp``; advance it."""
    if ramp_steady(ramp, ramp_n):
        g = np.float32(ramp_at(ramp, ramp_n, 0))
        if g != 1.0:
            scale(bus[0], a, b, g)
            scale(bus[1], a, b, g)
        return
    for i in range(a, b):
        g = np.float32(ramp_at(ramp, ramp_n, i - a))
        bus[0, i] = bus[0, i] * g
        bus[1, i] = bus[1, i] * g
    ramp_advance(ramp, ramp_n, b - a)
