"""The virtual backend: no audio device, a thread paced by the clock.

Every ``blocksize / samplerate`` seconds it calls ``engine_cycle`` (the same
function the PortAudio callback calls) on the shared state and discards the
output, so sessions run, meter and record in real time on a machine with no
sound card. A cycle that starts more than one block late counts as an xrun.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from ..dsp.layout import IO_OUTCH, ST_XRUNS
from ..rt.cycle import engine_cycle


class VirtualBackend:
    name = "virtual"
    hostapi = "virtual (clock-paced)"

    def __init__(self, st, io, samplerate: int, blocksize: int):
        self.st = st
        self.io = io
        self.samplerate = samplerate
        self.blocksize = blocksize
        self.latency_s = blocksize / samplerate
        self.device = "virtual"
        self._stop = threading.Event()
        self._thread = None
        outch = int(io.io_cfg[IO_OUTCH])
        self._out = np.zeros((blocksize, outch), np.float32)

    def start(self) -> None:
        """Start the clock thread. Control thread."""
        self._thread = threading.Thread(target=self._run, name="livemix-virtual", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        period = self.blocksize / self.samplerate
        st, io, out, n = self.st, self.io, self._out, self.blocksize
        start = time.monotonic()
        k = 0
        while not self._stop.is_set():
            due = start + k * period
            now = time.monotonic()
            if now < due:
                time.sleep(due - now)
            elif now - due > period:
                io.stats[ST_XRUNS] += 1
                start = now - k * period      # do not try to catch up a stall
            engine_cycle(st, io, out, out, n, 0)
            k += 1

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        """Stop the thread and wait for it. Control thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
