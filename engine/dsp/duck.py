"""Sidechain ducking: key detector, hold, and depth-independent ramps.

Definitions (these are what the tests check):
- key level: the sample peak of the key signal, max(|L|, |R|), per sample.
  The key signal is the sum of the key tracks after their faders, mute and
  solo (so a muted key never ducks) and before panning and ducking.
- engaged: the key level exceeded the threshold within the last ``hold``
  samples. The hold is at least ``min_hold`` samples (20 ms) so the gate
  does not chatter at the zero crossings of a low voice.
- amount: 0 (no ducking) .. 1 (full depth). While engaged it rises by
  1 / attack_samples per sample, otherwise it falls by 1 / release_samples.
  So attack is the time from unity to full depth and release the time from
  full depth back to unity, linear in dB and independent of the depth.
- gain = 10 ** (depth_db * amount / 20). A depth change from the control
  side is itself ramped over the smoothing time.
"""
import math

import numpy as np
from .jit import rt_kernel

from .layout import (D_ATTACK_INC, D_HOLD, D_RELEASE_INC, D_THRESHOLD, DS_AMOUNT,
                     DS_DEPTH, DS_GAIN, DS_HOLD_LEFT, DS_STEADY)
from .smoothing import ramp_advance, ramp_at, ramp_steady
from .vec import fill, peak

_DB_TO_NEPER = math.log(10.0) / 20.0


@rt_kernel
def duck_segment(key, a, b, cfg, st, gain_out, min_hold, ramp_n):
    """Run one rule's envelope over samples [a, b) of ``key`` (2, N) float32.

    Writes the per-sample linear gain to ``gain_out[a:b]`` (float32) and sets
    ``st[DS_STEADY]`` to 1.0 when the gain did not move within the segment.
    Audio thread only.
    """
    thr = cfg[D_THRESHOLD]
    ainc = cfg[D_ATTACK_INC]
    rinc = cfg[D_RELEASE_INC]
    hold = max(int(cfg[D_HOLD]), min_hold)
    left = int(st[DS_HOLD_LEFT])
    amount = st[DS_AMOUNT]
    depth_ramp = st[DS_DEPTH:DS_DEPTH + 3]
    depth_moving = not ramp_steady(depth_ramp, ramp_n)
    g32 = np.float32(st[DS_GAIN])
    n = b - a
    if not depth_moving and (amount == 0.0 or amount == 1.0):
        # Fast paths: the exact outcome of the per-sample loop when the gain cannot move.
        if amount == 0.0 and left == 0 and max(peak(key[0], a, b), peak(key[1], a, b)) <= thr:
            fill(gain_out, a, b, g32)                   # idle, key quiet throughout
            st[DS_STEADY] = 1.0
            return
        if amount == 1.0 and left > n and hold >= n:
            last = b - 1                                # fully ducked, hold cannot run out
            while last >= a and max(abs(key[0, last]), abs(key[1, last])) <= thr:
                last -= 1
            st[DS_HOLD_LEFT] = hold - (b - 1 - last) if last >= a else left - n
            fill(gain_out, a, b, g32)
            st[DS_STEADY] = 1.0
            return
    steady = True
    for i in range(a, b):
        lvl = max(abs(key[0, i]), abs(key[1, i]))
        if lvl > thr:
            left = hold
        elif left > 0:
            left -= 1
        moved = depth_moving
        if left > 0:
            if amount < 1.0:
                amount = min(1.0, amount + ainc)
                moved = True
        elif amount > 0.0:
            amount = max(0.0, amount - rinc)
            moved = True
        if moved:
            if amount == 0.0:
                g32 = np.float32(1.0)
            else:
                depth = ramp_at(depth_ramp, ramp_n, i - a)
                g32 = np.float32(math.exp(_DB_TO_NEPER * depth * amount))
            steady = False
        gain_out[i] = g32
    if depth_moving:
        ramp_advance(depth_ramp, ramp_n, b - a)
    st[DS_HOLD_LEFT] = left
    st[DS_AMOUNT] = amount
    st[DS_GAIN] = g32
    st[DS_STEADY] = 1.0 if steady else 0.0
