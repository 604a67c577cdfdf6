"""Parameter ids, units and laws shared by the control side and the kernels.

Everything here is a pure function or a constant; the ``@rt_kernel`` functions are
callable from Python and from nopython code alike (any thread).

Units: gains in dB (``-inf`` allowed) on the control side, linear amplitude
inside the kernels; pan in [-1, +1]; times in samples inside the kernels.
"""
import math

from .dsp.jit import rt_kernel
from .strip import PARAMS as STRIP_PARAMS

# --- command protocol (control thread -> audio thread) ----------------------
# A command is four float64: (frame, param, target, value).
#   frame   absolute session frame at which it takes effect; -1 = as soon as possible
#   param   one of the P_* ids below
#   target  track index (0-based), ducking rule index for P_DUCK_DEPTH, ignored for master
#   value   dB for gains and depths (-inf allowed), -1..1 for pan, 0/1 for mute/solo;
#           the strip's parameters in their units (engine.strip.PARAMS)
P_GAIN = 0
P_PAN = 1
P_MUTE = 2
P_SOLO = 3
P_DUCK_DEPTH = 4
P_MASTER_GAIN = 5
P_STRIP = 6              # P_STRIP + k: the channel strip's parameter k (engine.strip.PARAMS)
N_STRIP = len(STRIP_PARAMS)
PARAM_NAMES = ("gain", "pan", "mute", "solo", "duck_depth", "master_gain") + tuple(
    p.name for p in STRIP_PARAMS)
PARAM_IDS = {name: i for i, name in enumerate(PARAM_NAMES)}

# Maximum fader / master gain, dB.
MAX_GAIN_DB = 24.0

_QUARTER_PI = math.pi / 4.0
_COS_QUARTER_PI = math.cos(_QUARTER_PI)


@rt_kernel
def db_to_lin(db):
    """dB -> linear amplitude; -inf dB gives exactly 0.0 and 0 dB exactly 1.0."""
    if db == -math.inf:
        return 0.0
    if db == 0.0:
        return 1.0
    return math.pow(10.0, db / 20.0)


@rt_kernel
def lin_to_db(x):
    """Linear amplitude -> dB; 0 gives -inf."""
    if x <= 0.0:
        return -math.inf
    return 20.0 * math.log10(x)


@rt_kernel
def pan_gains(pan):
    """Constant-power pan law, normalised to unity at the centre.

    Returns (left, right) linear gains for pan in [-1, +1]. The power sum
    left**2 + right**2 is 2 at every position, so a centred track sits 3 dB
    below a hard-panned one (the "-3 dB centre" of a constant-power law); the
    reference is the centre, which passes at exactly 1.0 so a centred track
    plays at its fader level (Logic's "compensated" -3 dB law). Hard left is
    (sqrt 2, 0): +3 dB in one channel, exactly silence in the other.
    """
    if pan == 0.0:
        return 1.0, 1.0
    left = math.cos((1.0 + pan) * _QUARTER_PI) / _COS_QUARTER_PI
    right = math.cos((1.0 - pan) * _QUARTER_PI) / _COS_QUARTER_PI
    if pan >= 1.0:
        left = 0.0
    if pan <= -1.0:
        right = 0.0
    return left, right
