"""A plain-numpy mixer that follows the livemix engine's definitions, for benchmarks.

The block loop runs in Python; inside a block every stage is vectorised numpy.
The stages and their definitions are the engine's (see engine/dsp/*.py):

- fader gains: linear de-zipper ramps of ``RAMP_S``, timed commands applied at
  their exact frame (only ``P_GAIN`` is supported here);
- pan: the engine's constant-power law (unity at the centre), constant;
- ducking: key = sum of the key tracks after their faders; engaged while the
  key's sample peak max(|L|, |R|) exceeded the threshold within the hold;
  amount rises 1/attack per sample while engaged, falls 1/release otherwise
  (computed in closed form per run of engaged / not engaged samples);
  gain = 10 ** (depth_db * amount / 20); several rules on one target: the
  deepest wins;
- master gain (constant), non-finite samples scrubbed;
- limiter: the engine's lookahead limiter, vectorised: instant attack with a
  one-pole release (as a running maximum of decaying reductions), a sliding
  minimum and a moving average over the lookahead window, output delayed by
  window - 1 samples, clamped to the ceiling;
- meters: per-track post-fader peak and RMS, master peak and RMS per block.

All signals are (2, frames) float32; gains are float64 until they are cast to
float32 for the multiply, as in the engine. Units: dB for gains on the
control side, linear inside; times in samples.
"""
from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from engine.params import P_GAIN
from engine.rt.state import LOOKAHEAD_S, MIN_HOLD_S, RAMP_S, RELEASE_S, float32_ceiling

_DB_TO_NEPER = math.log(10.0) / 20.0
_QUARTER_PI = math.pi / 4.0


def db_to_lin(db: float) -> float:
    """dB -> linear amplitude (-inf -> 0)."""
    return 0.0 if db == -math.inf else 10.0 ** (db / 20.0)


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power pan law normalised to (1, 1) at the centre (the engine's law)."""
    if pan == 0.0:
        return 1.0, 1.0
    norm = math.cos(_QUARTER_PI)
    left = 0.0 if pan >= 1.0 else math.cos((1.0 + pan) * _QUARTER_PI) / norm
    right = 0.0 if pan <= -1.0 else math.cos((1.0 - pan) * _QUARTER_PI) / norm
    return left, right


class Ramp:
    """A linear ramp over ``n`` samples: sample ``pos`` is start + (target - start) * (pos+1)/n."""

    def __init__(self, n: int, value: float):
        self.n = n
        self.start = value
        self.target = value
        self.pos = n              # samples since the ramp began (n = steady)

    @property
    def steady(self) -> bool:
        return self.pos >= self.n

    def current(self) -> float:
        """Value of the last sample produced."""
        if self.pos >= self.n:
            return self.target
        return self.start + (self.target - self.start) * (self.pos / self.n)

    def retarget(self, target: float) -> None:
        if target == self.target:
            return
        self.start = self.current()
        self.target = target
        self.pos = 0

    def take(self, k: int, steps: np.ndarray) -> float | np.ndarray:
        """The next ``k`` values (float64 array, or a float when constant); advances.

        ``steps`` is a preallocated arange(1, maxblock + 1).
        """
        if self.pos >= self.n:
            return self.target
        p = steps[:k] + self.pos
        v = np.where(p >= self.n, self.target,
                     self.start + (self.target - self.start) * (p / self.n))
        self.pos = min(self.n, self.pos + k)
        return v


class Ducker:
    """One ducking rule's envelope, vectorised per block."""

    def __init__(self, rule, sr: int, ramp_n: int):
        self.threshold = np.float64(db_to_lin(rule.threshold_db))
        self.attack_inc = 1.0 / max(1.0, rule.attack_ms * 1e-3 * sr)
        self.release_inc = 1.0 / max(1.0, rule.release_ms * 1e-3 * sr)
        self.hold = max(round(rule.hold_ms * 1e-3 * sr), round(MIN_HOLD_S * sr))
        self.depth_db = rule.depth_db
        self.last_above = -(1 << 40)   # block-relative index of the last key peak above threshold
        self.amount = 0.0              # 0 = no ducking .. 1 = full depth

    def gain(self, key: np.ndarray, idx: np.ndarray, steps: np.ndarray):
        """Per-sample ducking gain (float32 array, or a float when constant) for key (2, n)."""
        n = key.shape[1]
        lvl = np.maximum(np.abs(key[0]), np.abs(key[1]))
        above = lvl > self.threshold
        if above.any():
            last = np.maximum.accumulate(np.where(above, idx[:n], -1))
            last = np.where(last >= 0, last, self.last_above)
            engaged = (idx[:n] - last) < self.hold
            self.last_above = int(last[-1]) - n
        else:
            k = min(n, max(0, self.last_above + self.hold))   # engaged for the first k samples
            engaged = idx[:n] < k
            self.last_above -= n
        a0 = self.amount
        if (a0 >= 1.0 and engaged.all()) or (a0 <= 0.0 and not engaged.any()):
            return self._gain_of(a0)
        amount = np.empty(n)
        edges = np.flatnonzero(engaged[1:] != engaged[:-1]) + 1
        start = 0
        for end in (*edges.tolist(), n):
            s = steps[:end - start]
            if engaged[start]:
                run = np.minimum(1.0, a0 + self.attack_inc * s)
            else:
                run = np.maximum(0.0, a0 - self.release_inc * s)
            amount[start:end] = run
            a0 = float(run[-1])
            start = end
        self.amount = a0
        g = np.exp((_DB_TO_NEPER * self.depth_db) * amount).astype(np.float32)
        g[amount == 0.0] = 1.0
        return g

    def _gain_of(self, amount: float) -> float:
        if amount == 0.0:
            return 1.0
        return float(np.float32(math.exp(_DB_TO_NEPER * self.depth_db * amount)))


class Limiter:
    """The engine's lookahead ceiling limiter (engine/dsp/limiter.py), vectorised per block."""

    def __init__(self, ceiling: float, sr: int, maxblock: int):
        self.c = float(ceiling)
        self.c32 = np.float32(ceiling)
        self.L = max(2, round(LOOKAHEAD_S * sr))
        release = 1.0 - math.exp(-1.0 / (RELEASE_S * sr))
        self.decay_pow = (1.0 - release) ** np.arange(maxblock + 1)
        self.u = 0.0                                    # 1 - envelope after the last sample
        self.env_hist = np.ones(self.L - 1)             # envelope of the last L-1 samples
        self.m_hist = np.ones(self.L - 1)               # sliding minima of the last L-1 samples
        self.delay = np.zeros((2, self.L - 1), np.float32)
        self.idle = True
        self.reduced = 0                                # samples where a new reduction started
        self.active = 0                                 # samples with gain below 1
        self.audible = 0                                # samples with gain below 0.99 (-0.09 dB)
        self.slow = 0                                   # samples not on the idle fast path

    def process(self, x: np.ndarray) -> None:
        """Limit x (2, n) float32 in place (the output is delayed by L-1 samples)."""
        n = x.shape[1]
        p = np.maximum(np.abs(x[0]), np.abs(x[1]))
        ext = np.concatenate((self.delay, x), axis=1)
        self.delay = ext[:, n:]
        if self.idle and float(p.max()) <= self.c:
            x[:] = ext[:, :n]
            return
        self.slow += n
        p64 = p.astype(np.float64)
        over = p64 > self.c
        need = np.zeros(n)
        need[over] = 1.0 - self.c / p64[over]           # required reduction 1 - q
        pw = self.decay_pow
        # u[i] = max(u_prev * d^(i+1), max_k<=i need[k] * d^(i-k)): instant attack, one-pole release
        u = np.maximum(self.u * pw[1:n + 1],
                       np.maximum.accumulate(need / pw[:n]) * pw[:n])
        u[u <= 1e-9] = 0.0                              # the engine snaps to 1.0 there
        self.reduced += int(np.count_nonzero(over & (need >= u)))
        env = np.concatenate((self.env_hist, 1.0 - u))
        m = np.concatenate((self.m_hist, sliding_window_view(env, self.L).min(axis=1)))
        csum = np.concatenate(([0.0], np.cumsum(m)))
        s = (csum[self.L:] - csum[:-self.L]) / self.L
        s[s > 1.0 - 1e-12] = 1.0
        self.active += int(np.count_nonzero(s < 1.0))
        self.audible += int(np.count_nonzero(s < 0.99))
        y = ext[:, :n] * s.astype(np.float32)
        np.clip(y, -self.c32, self.c32, out=x)
        self.u = float(u[-1])
        self.env_hist = env[n:]
        self.m_hist = m[n:]
        self.idle = self.u == 0.0 and self.env_hist.min() == 1.0 and self.m_hist.min() == 1.0


class NumpyMixer:
    """Mix a session from in-memory stems, block by block, with numpy.

    stems: one (2, frames) float32 array per track, at the session rate.
    commands: (frame, param, track, value) tuples; only P_GAIN (value in dB).
    """

    def __init__(self, session, stems, commands, maxblock: int):
        sr = session.engine.samplerate
        self.sr = sr
        self.stems = stems
        self.ntracks = len(session.tracks)
        ramp_n = max(1, round(RAMP_S * sr))
        any_solo = any(t.solo for t in session.tracks)
        self.gains = [Ramp(ramp_n, 0.0 if t.mute or (any_solo and not t.solo)
                           else db_to_lin(t.gain_db)) for t in session.tracks]
        self.pans = [pan_gains(t.pan) for t in session.tracks]
        self.rules = [Ducker(r, sr, ramp_n) for r in session.ducking]
        names = {t.name: i for i, t in enumerate(session.tracks)}
        self.rule_keys = [[names[k] for k in r.key] for r in session.ducking]
        self.track_rules = [[r for r, rule in enumerate(session.ducking)
                             if t.name in rule.targets] for t in session.tracks]
        self.master_gain = db_to_lin(session.master.gain_db)
        self.limiter = Limiter(float32_ceiling(session.master.ceiling_db), sr, maxblock)
        self.cmds = [[] for _ in session.tracks]        # per track: (frame, dB) in frame order
        for frame, param, track, value in sorted(commands, key=lambda c: c[0]):
            if param != P_GAIN:
                raise ValueError(f"numpy mixer: param {param} not supported (only P_GAIN)")
            self.cmds[int(track)].append((int(frame), float(value)))
        self.cmd_pos = [0] * self.ntracks
        self.idx = np.arange(maxblock)
        self.steps = np.arange(1, maxblock + 1, dtype=np.float64)
        self.mix = np.zeros((2, maxblock), np.float32)
        self.track_meter = np.zeros((self.ntracks, 2))
        self.master_meter = np.zeros((2, 2))
        self.peak_hold = np.zeros(2)
        self.nonfinite = 0

    def _gain_curve(self, t: int, f0: int, n: int):
        """Track t's fader gain for frames [f0, f0+n): float64 array, or a float when constant."""
        ramp = self.gains[t]
        cmds = self.cmds[t]
        i = self.cmd_pos[t]
        if i >= len(cmds) or cmds[i][0] >= f0 + n:
            return ramp.take(n, self.steps)
        curve = np.empty(n)
        a = 0
        while i < len(cmds) and cmds[i][0] < f0 + n:
            b = max(a, cmds[i][0] - f0)
            if b > a:
                curve[a:b] = ramp.take(b - a, self.steps)
            ramp.retarget(db_to_lin(cmds[i][1]))
            a = b
            i += 1
        self.cmd_pos[t] = i
        if a < n:
            curve[a:] = ramp.take(n - a, self.steps)
        return curve

    def _track_duck(self, t: int, ducks):
        rules = self.track_rules[t]
        if not rules:
            return 1.0
        d = ducks[rules[0]]
        for r in rules[1:]:
            d = np.minimum(d, ducks[r])
        return d

    def process(self, f0: int, n: int, out: np.ndarray) -> None:
        """Mix frames [f0, f0+n) into out (n, 2) float32."""
        srcs = [s[:, f0:f0 + n] for s in self.stems]
        gains = [self._gain_curve(t, f0, n) for t in range(self.ntracks)]
        # ducking: key after the key tracks' faders, before pan
        ducks = []
        for rule, keys in zip(self.rules, self.rule_keys):
            key = np.zeros((2, n), np.float32)
            for t in keys:
                key += np.asarray(gains[t], np.float32) * srcs[t]
            ducks.append(rule.gain(key, self.idx, self.steps))
        # tracks into the bus
        bus = self.mix[:, :n]
        bus.fill(0.0)
        for t in range(self.ntracks):
            g = gains[t]
            d = self._track_duck(t, ducks)
            pl, pr = self.pans[t]
            if np.ndim(g) == 0 and np.ndim(d) == 0:
                cg = np.array([[g * pl * d], [g * pr * d]], np.float32)
            else:
                cg = np.empty((2, n), np.float32)
                cg[0] = g * pl * d          # same order of float64 products as the engine
                cg[1] = g * pr * d
            y = cg * srcs[t]
            bus += y
            self.track_meter[t, 0] = np.abs(y).max()
            self.track_meter[t, 1] = math.sqrt(np.vdot(y, y) / (2 * n))
        # master fader, scrub, limiter
        if self.master_gain != 1.0:
            bus *= np.float32(self.master_gain)
        if not np.isfinite(bus).all():
            bad = ~np.isfinite(bus)
            self.nonfinite += int(bad.sum())
            bus[bad] = 0.0
        self.limiter.process(bus)
        # meters and output
        pk = np.abs(bus).max(axis=1)
        self.master_meter[:, 0] = pk
        self.master_meter[:, 1] = np.sqrt(np.einsum("ij,ij->i", bus, bus) / n)
        np.maximum(self.peak_hold, pk, out=self.peak_hold)
        out[:] = bus.T

    def run(self, out: np.ndarray, blocksize: int) -> None:
        """Mix len(out) frames into out (frames, 2) in blocks of ``blocksize``."""
        total = len(out)
        f0 = 0
        while f0 < total:
            n = min(blocksize, total - f0)
            self.process(f0, n, out[f0:f0 + n])
            f0 += n
