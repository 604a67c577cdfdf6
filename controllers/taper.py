"""The fader law: controller position <-> gain in dB, for faders bound to gain.

One law for every fader (7-bit CC, 14-bit CC pairs, Mackie pitch-bend faders).
It is the Behringer X32 / X-Air law with its breakpoints moved onto the 7-bit
grid, so that 0 dB sits exactly on a value a 7-bit fader can send (96 of 127)
and every 7-bit value is also an exact 14-bit value (16383 = 127 * 129).

With ``u = 127 * p`` (p = position, 0 bottom .. 1 top; u is "7-bit units",
u = v for a 7-bit value v and u = v / 129 for a 14-bit value v), the gain is
linear in dB between these checkpoints:

    ========  ==========  ==============  ===========  ==========
    7-bit v   position p  14-bit v        dB           dB per 7-bit step
    ========  ==========  ==============  ===========  ==========
    0         0           0               -inf
    0+        0+          0+              -90 (limit)  3.75
    8         0.0630      1032            -60          1.25
    32        0.2520      4128            -30          0.625
    64        0.5039      8256            -10          0.3125
    96        0.7559      12384           0            0.3226
    127       1           16383           +10
    ========  ==========  ==============  ===========  ==========

so value 1 is -86.25 dB, 127 is +10 dB, and the law is strictly increasing.
(The X32 puts -60/-30/-10/0 dB at p = 0.0625/0.25/0.5/0.75: within 0.01 of
travel of these.) ``db_to_*`` go the other way, clamping: anything above
+10 dB is the top, anything at or below -90 dB (and -inf) the bottom; the
integer versions round to the nearest position. value -> dB -> value is the
identity for all 128 7-bit and all 16384 14-bit values (tested exhaustively),
so echoing a fader's own value back as feedback never makes it crawl.

Pure functions of floats and ints: any thread (used on the control thread).
"""
from __future__ import annotations

import math

#: Checkpoints of the law: (u in 7-bit units, dB). Between them, linear in dB.
CHECKPOINTS = ((0, -90.0), (8, -60.0), (32, -30.0), (64, -10.0), (96, 0.0), (127, 10.0))
#: Gain at the top of the travel, dB.
TOP_DB = 10.0
#: Limit of the gain as the position goes to 0 (the bottom itself is -inf), dB.
BOTTOM_DB = -90.0
#: The 7-bit value and the 14-bit value that give exactly 0 dB.
UNITY_VALUE7 = 96
UNITY_VALUE14 = 96 * 129

_MAX7 = 127
_MAX14 = 16383
_PER7 = 129  # 14-bit steps per 7-bit step: 16383 / 127


def _u_to_db(u: float) -> float:
    """7-bit units (0..127, clamped) -> dB; 0 -> -inf; exact at the checkpoints."""
    if not u > 0.0:           # also NaN -> -inf
        return -math.inf
    if u >= _MAX7:
        return TOP_DB
    for (u0, d0), (u1, d1) in zip(CHECKPOINTS, CHECKPOINTS[1:]):
        if u < u1:
            # multiply before dividing: exact at both ends of a segment
            return d0 + ((u - u0) * (d1 - d0)) / (u1 - u0)
    return TOP_DB  # not reached


def _db_to_u(db: float) -> float:
    """dB -> 7-bit units (0..127); -inf and anything <= -90 dB -> 0, >= +10 dB -> 127."""
    db = float(db)
    if math.isnan(db):
        raise ValueError("gain is NaN: no fader position for it")
    if db <= BOTTOM_DB:
        return 0.0
    if db >= TOP_DB:
        return float(_MAX7)
    for (u0, d0), (u1, d1) in zip(CHECKPOINTS, CHECKPOINTS[1:]):
        if db < d1:
            return u0 + ((db - d0) * (u1 - u0)) / (d1 - d0)
    return float(_MAX7)  # not reached


def position_to_db(p: float) -> float:
    """Fader position (0 bottom .. 1 top, clamped) -> gain in dB; 0 gives -inf."""
    return _u_to_db(float(p) * _MAX7)


def db_to_position(db: float) -> float:
    """Gain in dB (-inf allowed) -> fader position 0..1 (clamped to the law's range)."""
    return _db_to_u(db) / _MAX7


def value7_to_db(v: int) -> float:
    """7-bit controller value (0..127, clamped) -> dB: 0 is -inf, 96 is 0 dB, 127 is +10 dB."""
    return _u_to_db(float(min(max(int(v), 0), _MAX7)))


def db_to_value7(db: float) -> int:
    """Gain in dB -> the nearest 7-bit fader value (0..127)."""
    return int(math.floor(_db_to_u(db) + 0.5))


def value14_to_db(v: int) -> float:
    """14-bit controller value (0..16383, clamped) -> dB: 0 is -inf, 12384 is 0 dB, 16383 +10 dB."""
    return _u_to_db(min(max(int(v), 0), _MAX14) / _PER7)


def db_to_value14(db: float) -> int:
    """Gain in dB -> the nearest 14-bit fader value (0..16383)."""
    return min(int(math.floor(_db_to_u(db) * _PER7 + 0.5)), _MAX14)
