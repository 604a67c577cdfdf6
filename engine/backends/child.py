"""The audio child: the device in a small, supervised process, whichever device it is.

Why a child: when a JACK server dies, PortAudio's stream goes silent without
telling anyone, ``stop()``/``abort()`` block for minutes, and PortAudio cannot
be initialised again in the same process. So the parent owns everything that
must outlive a device (state in shared memory, sources, recorder, controls,
UI) and a child owns only the device: a PortAudio stream whose callback is
the ``@cfunc`` (``engine.backends.portaudio``), or the virtual device's
native clock thread (``engine.backends.virtual``). Both run the same
``engine_cycle`` on the same shared state, with no Python and no GIL on the
audio thread, under the same supervision: the parent watches the callback
counter; when it stalls for ``STALL_S`` it reports the loss, kills the child
(never waits on the dead stream), and keeps spawning new children until one
plays again. Session time pauses with the device (one clock: sources, take,
automation and events stay in step; the events say how long it was away).

Threads: ``start``/``stop``/``poll`` are for the control thread; the watchdog
runs in its own thread; the child process runs ``_child_main``.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import threading
import time
from dataclasses import dataclass

from ..dsp.layout import ST_CALLBACKS, ST_FREEWHEEL, ST_LAST_NOW
from ..errors import LivemixError
from ..procs import start_child
from .portaudio import NoOutputDevice

STALL_S = 0.4            # no callback for this long: the device is gone
FREEWHEEL_STALL_S = 5.0  # ... while the server freewheels
RESPAWN_EVERY_S = 0.05   # pause between attempts while the device is gone (each
                         # attempt's child is already warm: it only starts PortAudio)
COMPILE_NOTICE_S = 3.0   # a child not warm by then is compiling: say so
COMPILE_TIMEOUT_S = 600.0
START_TIMEOUT_S = 10.0   # first callback after spawning (includes loading the numba cache)


@dataclass(frozen=True)
class StreamOptions:
    backend: str                # "portaudio" or "virtual"
    samplerate: int
    blocksize: int              # 0 = whatever the host API gives (no added latency on JACK)
    channels: int
    input_channels: int
    device: str | None          # substring of the device name
    client_name: str
    maxblock: int               # frames per block (the virtual clock's period)


def _child_main(layout, opts: StreamOptions, conn) -> None:
    """Audio child process: attach the state, warm up, run the device until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent decides when we stop
    try:
        from ..dsp.layout import EngineState, IoState
        from ..rt.shm import attach, prefault

        arena, g = attach(layout, {"st": EngineState, "io": IoState})
        memory = prefault(arena)
        from ..rt.state import start_denoisers
        start_denoisers(g["st"])      # RNNoise states are this process's own
        if opts.backend == "virtual":
            from .virtual import VirtualClock
            device = VirtualClock(g["st"], g["io"], opts.maxblock, opts.samplerate)
            device.warm()
        else:
            from ..rt.callback import CallbackTable
            table = CallbackTable(g["st"], g["io"])
        # Warm: everything slow is done. The device starts only on "go", so the parent
        # can keep a warm child waiting while the audio server is away.
        conn.send(("warm", None))
        try:
            if conn.recv() != "go":
                return
        except (EOFError, OSError):
            return
        if opts.backend == "virtual":
            device.start()
        else:
            from .portaudio import open_stream
            device = open_stream(opts, table)
        conn.send(("ready", {**device.info, "memory": memory}))
    except NoOutputDevice as e:
        conn.send(("nodevice", str(e)))
        return
    except LivemixError as e:
        conn.send(("error", str(e)))
        return
    except Exception as e:   # PortAudio's own words, one line
        conn.send(("error", f"audio device: {e}".splitlines()[0]))
        return
    while True:
        try:
            if not conn.poll(0.05):
                continue
            msg = conn.recv()
        except (EOFError, OSError):      # the parent is gone: do not outlive it
            os._exit(0)
        if msg == "stop":
            device.stop()
            conn.send(("stopped", None))
            return


class AudioChild:
    """Runs and supervises the audio child. ``events`` receives (kind, detail) tuples."""

    def __init__(self, layout, io, opts: StreamOptions, on_event=None):
        self.name = opts.backend
        self.layout = layout
        self.io = io
        self.opts = opts
        self.on_event = on_event or (lambda kind, detail: None)
        self.info: dict = {}
        self.device_lost = False
        self.stall_s = None      # how long callbacks had stopped when the loss was declared
        self.attempts: list = []  # monotonic times at which each restart attempt began
        self._went = None
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None
        self._watch = None
        self._stop = threading.Event()

    # -- child lifecycle ------------------------------------------------------
    def _spawn(self):
        """A new child, warming up (imports, state, callback) until told "go"."""
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_child_main, args=(self.layout, self.opts, child),
                                 name="livemix-audio", daemon=True)
        start_child(proc)
        child.close()
        return proc, parent

    def _go(self, proc, conn, timeout):
        """Wait for a child to be warm, let it open the stream; (kind, detail).

        Warming up loads the compiled callback from numba's cache; after an
        install or an update it compiles it first, which can take a minute:
        that wait has its own, long, limit and is announced."""
        kind, detail = self._wait_ready(proc, conn, min(timeout, COMPILE_NOTICE_S))
        if kind == "timeout":
            self.on_event("compiling", "compiling the audio callback (once after an install "
                          "or update; up to a minute or two)")
            kind, detail = self._wait_ready(proc, conn, COMPILE_TIMEOUT_S)
        if kind != "warm":
            return kind, detail
        self._went = time.monotonic()
        conn.send("go")
        return self._wait_ready(proc, conn, timeout)

    def _wait_ready(self, proc, conn, timeout):
        """(kind, detail) from a fresh child, or ("timeout", None)."""
        if conn.poll(timeout):
            try:
                return conn.recv()
            except EOFError:
                return ("error", f"audio process exited ({proc.exitcode})")
        return ("timeout", None)

    @staticmethod
    def _kill(proc):
        if proc is not None and proc.is_alive():
            os.kill(proc.pid, signal.SIGKILL)
        if proc is not None:
            proc.join(timeout=1.0)

    def start(self) -> None:
        """Spawn the child and wait for its stream. Raises NoOutputDevice / LivemixError."""
        proc, conn = self._spawn()
        kind, detail = self._go(proc, conn, START_TIMEOUT_S)
        if kind != "ready":
            self._kill(proc)
            if kind == "nodevice":
                raise NoOutputDevice(detail)
            if kind == "timeout":
                raise LivemixError("the audio device did not start within "
                                   f"{START_TIMEOUT_S:.0f} s")
            raise LivemixError(detail)
        self._proc, self._conn = proc, conn
        self.info = detail
        self._watch = threading.Thread(target=self._watchdog, name="livemix-watchdog",
                                       daemon=True)
        self._watch.start()

    # -- supervision ----------------------------------------------------------
    def _watchdog(self) -> None:
        stats = self.io.stats
        last_count = int(stats[ST_CALLBACKS])
        last_change = time.monotonic()
        while not self._stop.wait(0.05):
            count = int(stats[ST_CALLBACKS])
            now = time.monotonic()
            if count != last_count:
                last_count, last_change = count, now
                continue
            # freewheeling, a callback may wait for the disk (FREEWHEEL_WAIT_NS at a time)
            # and the server may pause the graph while it switches modes
            freewheel = int(stats[ST_FREEWHEEL]) != 0
            if now - last_change < (FREEWHEEL_STALL_S if freewheel else STALL_S):
                continue
            # the device is gone
            self.stall_s = now - last_change
            lost_at_ns = int(stats[ST_LAST_NOW])
            self.device_lost = True
            self.on_event("device_lost", f"no audio callback for {STALL_S:.1f} s")
            self._kill(self._proc)
            self._proc = None
            pending = self._spawn()
            while not self._stop.is_set():
                proc, conn = pending
                pending = self._spawn()          # the next attempt warms up meanwhile
                kind, detail = self._go(proc, conn, START_TIMEOUT_S)
                self.attempts.append(self._went)
                if kind == "ready":
                    # wait for its first callback, then say how long the device was away
                    t_end = time.monotonic() + 2.0
                    while int(stats[ST_CALLBACKS]) == count and time.monotonic() < t_end:
                        time.sleep(0.002)
                    if int(stats[ST_CALLBACKS]) == count:
                        self._kill(proc)
                        continue
                    away_s = max(0, int(stats[ST_LAST_NOW]) - lost_at_ns) * 1e-9
                    self._proc, self._conn = proc, conn
                    self.info = detail
                    self.device_lost = False
                    self.on_event("device_back", f"audio resumed after {away_s:.2f} s: the "
                                  "session paused meanwhile (nothing played or recorded)")
                    break
                self._kill(proc)
                self._stop.wait(RESPAWN_EVERY_S)
            self._kill(pending[0])
            last_count = int(stats[ST_CALLBACKS])
            last_change = time.monotonic()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def stop(self) -> None:
        """Stop the stream; never blocks for long on a dead device. Control thread."""
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=3.0)
        proc, conn = self._proc, self._conn
        if proc is None:
            return
        try:
            conn.send("stop")
            if conn.poll(1.0):
                conn.recv()
        except (OSError, EOFError):
            pass
        proc.join(timeout=1.0)
        self._kill(proc)
        self._proc = None
