"""The virtual device: no sound card, a native clock thread in the audio child.

Chosen when PortAudio lists no output device (or with ``--backend virtual``).
It runs where the PortAudio stream would run, in the supervised audio child
process (``engine.backends.child``), on the same shared state: a thread that
asks for real-time scheduling (SCHED_FIFO, as JACK's and PortAudio's audio
threads do), then enters ``engine.rt.virtual_clock.run_clock``, machine code
that releases the GIL and paces ``engine_cycle`` with ``clock_nanosleep``
until told to stop. The output is discarded. The device models a
``BUFFER_PERIODS``-period output buffer: its latency is that many periods,
and an xrun means a block finished after the buffer ran out (see
``engine.rt.virtual_clock``).
"""
from __future__ import annotations

import os
import threading

import numpy as np

from ..dsp.layout import IO_OUTCH
from ..rt.virtual_clock import BUFFER_PERIODS, N_VC, VC_LATE_MAX_NS, VC_STOP, run_clock

RT_PRIORITY = 60      # SCHED_FIFO priority of the clock thread (JACK's default is 10..70)


def _realtime(priority: int) -> str | None:
    """Ask for SCHED_FIFO on the calling thread; None when granted, else why not."""
    try:
        # Linux: pid 0 is the calling thread, not the whole process
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return None
    except (OSError, AttributeError) as e:
        return getattr(e, "strerror", None) or str(e)


def _name_thread(name: bytes) -> None:
    """The calling thread's name as top, ps and /proc show it (PR_SET_NAME)."""
    import ctypes
    import ctypes.util
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or None).prctl(15, name, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class VirtualClock:
    """The clock thread over one process's view of the state. Audio child."""

    def __init__(self, st, io, blocksize: int, samplerate: int,
                 buffer_periods: int = BUFFER_PERIODS):
        self.st, self.io = st, io
        self.blocksize = blocksize
        self.buffer_periods = buffer_periods
        self.samplerate = samplerate
        self.ctl = np.zeros(N_VC, np.int64)
        self.out = np.zeros((blocksize, int(io.io_cfg[IO_OUTCH])), np.float32)
        self.rt_refused: str | None = None
        self._thread = None
        self._started = threading.Event()

    def warm(self) -> None:
        """Load (or compile) the clock loop now: with the stop flag up it runs no block."""
        self.ctl[VC_STOP] = 1
        run_clock(self.st, self.io, self.out, self.blocksize, self.buffer_periods, self.ctl)
        self.ctl[VC_STOP] = 0

    def start(self) -> "VirtualClock":
        self._thread = threading.Thread(target=self._run, name="livemix-clock", daemon=True)
        self._thread.start()
        self._started.wait(5.0)
        return self

    def _run(self) -> None:
        _name_thread(b"livemix-clock")
        self.rt_refused = _realtime(RT_PRIORITY)
        self._started.set()
        run_clock(self.st, self.io, self.out, self.blocksize, self.buffer_periods, self.ctl)

    @property
    def info(self) -> dict:
        period = self.blocksize / self.samplerate
        return {"device": "virtual", "latency_s": self.buffer_periods * period,
                "hostapi": f"virtual clock ({self.buffer_periods}-period buffer, "
                           + ("real-time" if self.rt_refused is None else
                              "no real-time scheduling") + ")",
                "samplerate": self.samplerate, "blocksize": self.blocksize,
                "buffer_periods": self.buffer_periods,
                "realtime": self.rt_refused is None, "realtime_refused": self.rt_refused}

    @property
    def late_max_s(self) -> float:
        return int(self.ctl[VC_LATE_MAX_NS]) / 1e9

    def stop(self) -> None:
        self.ctl[VC_STOP] = 1
        if self._thread is not None:
            self._thread.join(timeout=2.0)
