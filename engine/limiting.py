"""The master ceiling limiter outside the engine: for ``normalize`` and tests.

``CeilingLimiter`` runs the engine's own limiter kernel (``dsp.limiter``)
over a signal fed in pieces, in sample-peak or true-peak mode, with the
same lookahead, release and guarantees as the live master bus. Any one
thread per instance.
"""
from __future__ import annotations

import math

import numpy as np

from .dsp.layout import L_BOXSUM, L_ENV, N_LIM, N_LIMI
from .dsp.limiter import TP_MARGIN_DB, limit_segment
from .dsp.meters import TP_HALF, new_meter, tp_scan_delay
from .dsp.vec import peak
from .rt.state import LOOKAHEAD_S, RELEASE_S, float32_ceiling


class LimiterState:
    """The arrays one limiter instance needs (sizes for blocks of up to ``maxblock``)."""

    def __init__(self, rate: int, maxblock: int):
        self.window = max(2, round(LOOKAHEAD_S * rate))
        self.release = 1.0 - math.exp(-1.0 / (RELEASE_S * rate))
        self.delay = np.zeros((2, self.window - 1 + 8 * maxblock), np.float32)
        self.dq_val = np.zeros(self.window, np.float64)
        self.dq_idx = np.zeros(self.window, np.int64)
        self.box = np.ones(self.window, np.float64)
        self.fst = np.zeros(N_LIM, np.float64)
        self.ist = np.zeros(N_LIMI, np.int64)
        self.fst[L_ENV] = 1.0
        self.fst[L_BOXSUM] = float(self.window)


class CeilingLimiter:
    """Hold a signal under ``ceiling_db`` (dBFS sample peak, or dBTP in true-peak mode).

    ``process(x)`` takes (frames, channels) float32 (1 or 2 channels) and
    returns as many frames, delayed by ``latency`` samples; ``flush()``
    returns the last ``latency`` frames. ``reduced`` counts the samples
    whose gain was reduced."""

    def __init__(self, rate: int, channels: int, ceiling_db: float, true_peak: bool = True,
                 maxblock: int = 65536):
        if channels not in (1, 2):
            raise ValueError("the limiter takes 1 or 2 channels")
        self.channels = channels
        self.maxblock = maxblock
        self.ceiling = float32_ceiling(ceiling_db)
        self.true_peak = true_peak
        self.detect = float32_ceiling(ceiling_db - TP_MARGIN_DB) if true_peak else self.ceiling
        self.state = LimiterState(rate, maxblock)
        self.meter = new_meter(rate, 2, maxblock) if true_peak else None
        self.latency = self.state.window - 1 + (TP_HALF if true_peak else 0)
        self.reduced = 0
        self._buf = np.zeros((2, maxblock), np.float32)

    def process(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        out = np.empty_like(x)
        for a in range(0, len(x), self.maxblock):
            b = min(len(x), a + self.maxblock)
            out[a:b] = self._block(x[a:b])
        return out

    def flush(self) -> np.ndarray:
        return self.process(np.zeros((self.latency, self.channels), np.float32))

    def _block(self, x: np.ndarray) -> np.ndarray:
        n = len(x)
        buf = self._buf
        buf[0, :n] = x[:, 0]
        buf[1, :n] = x[:, -1]
        s = self.state
        if self.true_peak:
            pk = tp_scan_delay(self.meter, buf, 0, n, self.detect)
            det = self.meter.tp_det
        else:
            pk = max(peak(buf[0], 0, n), peak(buf[1], 0, n))
            det = None
        self.reduced += limit_segment(buf, 0, n, pk, self.ceiling, s.release, s.window,
                                      s.delay, s.dq_val, s.dq_idx, s.box, s.fst, s.ist,
                                      det, self.detect)
        return buf[:self.channels, :n].T.copy()
