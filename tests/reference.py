"""Plain numpy float64 reference implementations of livemix's DSP.

Written from the definitions in the kernels' docstrings, as simply as
possible (Python loops where a recursion makes vectorising unclear). The
tests compare the numba kernels against these within TOL.
"""
import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# Tolerances, in one place.
TOL_SAMPLE = 2e-6        # |engine - reference| per sample, linear, for signals <= 1 (float32 mixing)
TOL_GAIN = 1e-6          # per-sample gains (float32 of a float64 value)
TOL_LEVEL_DB = 0.05      # measured levels in known-answer tests
TOL_DUCK_DB = 0.5        # ducking depth
TOL_FREQ = 1e-3          # relative frequency error after resampling
TOL_TP_DB = 0.1          # true peak against the 32x reconstruction (issue 12, item 9)


def db_to_lin(db):
    return 0.0 if db == -math.inf else 10.0 ** (db / 20.0)


def pan_gains(pan):
    """Constant power, unity at the centre: L**2 + R**2 == 2."""
    theta = (pan + 1.0) * math.pi / 4.0
    return math.sqrt(2.0) * math.cos(theta), math.sqrt(2.0) * math.sin(theta)


def ramp(n, initial, changes, ramp_len):
    """Per-sample values of a smoothed parameter.

    changes: [(frame, target)]; from each change the value moves linearly from
    where it was (the previous sample's value) to the target over ramp_len
    samples: the sample at the change frame moves by 1/ramp_len, the
    ramp_len-th sample is the target.
    """
    out = np.empty(n)
    start = target = float(initial)
    since = ramp_len
    ci = 0
    changes = sorted(changes)
    for i in range(n):
        while ci < len(changes) and changes[ci][0] <= i:
            cur = start + (target - start) * min(1.0, since / ramp_len)
            start, target, since = cur, float(changes[ci][1]), 0
            ci += 1
        out[i] = start + (target - start) * min(1.0, (since + 1) / ramp_len)
        since += 1
    return out


def duck_gain(key, sr, threshold_db, depth_db, attack_ms, hold_ms, release_ms, min_hold_s=0.020):
    """Ducking gain per sample for a key signal (n, 2), per engine/dsp/duck.py's definition."""
    thr = db_to_lin(threshold_db)
    ainc = 1.0 / max(1.0, attack_ms * 1e-3 * sr)
    rinc = 1.0 / max(1.0, release_ms * 1e-3 * sr)
    hold = max(round(hold_ms * 1e-3 * sr), round(min_hold_s * sr))
    level = np.abs(key).max(axis=1)
    out = np.empty(len(key))
    left = 0
    amount = 0.0
    for i, lvl in enumerate(level):
        if lvl > thr:
            left = hold
        elif left > 0:
            left -= 1
        if left > 0:
            amount = min(1.0, amount + ainc)
        else:
            amount = max(0.0, amount - rinc)
        out[i] = 10.0 ** (depth_db * amount / 20.0)
    return out


def limiter(x, ceiling, window, release):
    """The ceiling limiter of engine/dsp/limiter.py on x (n, 2), float64."""
    n = len(x)
    q = np.minimum(1.0, ceiling / np.maximum(np.abs(x).max(axis=1), 1e-300))
    env = np.empty(n)
    e = 1.0
    for i in range(n):
        if e < 1.0:
            e = e + (1.0 - e) * release
            if e >= 1.0 - 1e-4:
                e = 1.0
        e = min(e, q[i])
        env[i] = e
    padded = np.concatenate([np.ones(window - 1), env])
    m = sliding_window_view(padded, window).min(axis=1)
    padded = np.concatenate([np.ones(window - 1), m])
    s = sliding_window_view(padded, window).mean(axis=1)
    delayed = np.concatenate([np.zeros((window - 1, 2)), x])[:n]
    return np.clip(delayed * s[:, None], -ceiling, ceiling)


def mix(tracks, sr, ramp_len, rules=(), master_gain_db=0.0, ceiling_db=None, window=96,
        release_s=0.1):
    """Reference mixer.

    tracks: list of dicts with 'signal' (n, 2) float64 and 'gain' (n,) linear
    per-sample smoothed gain (fader x mute x solo), 'pan' (left (n,), right (n,)).
    rules: list of dicts with 'key' [track idx], 'targets' [idx] and the rule times.
    Returns (out (n, 2), duck gains per rule).
    """
    n = len(tracks[0]["signal"])
    ducks = []
    for r in rules:
        key = sum(tracks[k]["gain"][:, None] * tracks[k]["signal"] for k in r["key"])
        ducks.append(duck_gain(key, sr, r["threshold_db"], r["depth_db"], r["attack_ms"],
                               r["hold_ms"], r["release_ms"]))
    bus = np.zeros((n, 2))
    for t, tr in enumerate(tracks):
        d = np.ones(n)
        for r, rule in zip(ducks, rules):
            if t in rule["targets"]:
                d = np.minimum(d, r)
        left, right = tr["pan"]
        bus[:, 0] += tr["signal"][:, 0] * tr["gain"] * left * d
        bus[:, 1] += tr["signal"][:, 1] * tr["gain"] * right * d
    bus *= db_to_lin(master_gain_db)
    if ceiling_db is not None:
        rel = 1.0 - math.exp(-1.0 / (release_s * sr))
        bus = limiter(bus, db_to_lin(ceiling_db), window, rel)
    return bus, ducks


def sine(freq, seconds, sr, amp=1.0, phase=0.0):
    t = np.arange(int(round(seconds * sr))) / sr
    return amp * np.sin(2 * np.pi * freq * t + phase)


def level_db(x):
    """Peak amplitude of a steady sine estimated from its RMS, in dB."""
    return 20 * np.log10(np.sqrt(np.mean(np.square(x))) * np.sqrt(2))


def true_peak_db(x, up=32, pad=4096):
    """Reference true peak, dBTP, of x (frames,) or (channels, frames), over channels.

    The band-limited reconstruction of the samples in float64: the FFT of the
    signal with ``pad`` or more zeros either side (so the FFT's periodic
    extension adds nothing), zero-padded to ``up`` times the rate and
    transformed back; the largest |value|. Between its points 32x can miss
    a peak by at most 1 - cos(pi f / (32 fs)): 0.001 dB at 20 kHz and 44.1 kHz."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    best = 0.0
    for ch in x:
        y = np.concatenate([np.zeros(pad), ch, np.zeros(pad)])
        n = 1 << (len(y) - 1).bit_length()      # a power of two: a fast FFT, and even
        spec = np.fft.rfft(y, n)
        spec[-1] *= 0.5                      # the Nyquist bin stands for +fs/2 and -fs/2
        wide = np.zeros(n * up // 2 + 1, complex)
        wide[:len(spec)] = spec
        best = max(best, float(np.abs(np.fft.irfft(wide, n * up)).max()) * up)
    return 20 * math.log10(best) if best > 0 else -math.inf


# --- the channel strip ------------------------------------------------------------------

def rbj_sos(kind, f, gain_db, q, sr):
    """One RBJ cookbook section as scipy's sos row [b0, b1, b2, 1, a1, a2] (float64)."""
    w0 = 2 * np.pi * f / sr
    cw, alpha, a = np.cos(w0), np.sin(w0) / (2 * q), 10 ** (gain_db / 40)
    if kind == "peak":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    elif kind in ("low-shelf", "high-shelf"):
        s = 2 * np.sqrt(a) * alpha
        sg = 1 if kind == "low-shelf" else -1
        b = [a * ((a + 1) - sg * (a - 1) * cw + s), sg * 2 * a * ((a - 1) - sg * (a + 1) * cw),
             a * ((a + 1) - sg * (a - 1) * cw - s)]
        den = [(a + 1) + sg * (a - 1) * cw + s, -sg * 2 * ((a - 1) + sg * (a + 1) * cw),
               (a + 1) + sg * (a - 1) * cw - s]
    elif kind == "low-cut":
        b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
        den = [1 + alpha, -2 * cw, 1 - alpha]
    else:
        b = [(1 - cw) / 2, 1 - cw, (1 - cw) / 2]
        den = [1 + alpha, -2 * cw, 1 - alpha]
    return np.array(b + den) / den[0]


def comp_static_db(level_db, thr, ratio, knee):
    """Gain reduction (dB, >= 0) of the soft-knee curve (Giannoulis et al. 2012)."""
    slope = 1 - 1 / ratio
    over = level_db - thr
    if 2 * over < -knee:
        return 0.0
    if knee > 0 and 2 * abs(over) <= knee:
        return slope * (over + knee / 2) ** 2 / (2 * knee)
    return slope * over


def compressor(x, sr, thr, ratio, knee, attack_ms, release_ms, makeup_db=0.0, key=None):
    """Feed-forward peak compressor, float64, per sample: the static curve on the key's
    peak level in dB, then a one-pole smooth branching detector on the reduction."""
    key = x if key is None else key
    aa = math.exp(-1 / (attack_ms * 1e-3 * sr))
    ar = math.exp(-1 / (release_ms * 1e-3 * sr))
    lvl = 20 * np.log10(np.maximum(np.abs(key).max(axis=1), 1e-6))
    out = np.empty_like(x)
    y = 0.0
    for i in range(len(x)):
        xl = comp_static_db(lvl[i], thr, ratio, knee)
        y = aa * y + (1 - aa) * xl if xl > y else ar * y + (1 - ar) * xl
        out[i] = x[i] * 10 ** ((makeup_db - y) / 20)
    return out
