"""A scripted controller for demos and tests: it speaks real MIDI bytes.

``VirtualController`` plays a ride script, a list of ``(time_s, bytes)``,
either into a MIDI output port (python-rtmidi; JACK or ALSA), so the bytes
travel the same road as a hardware controller's, or into a ``LoopbackPort``
when the machine has no MIDI system (the virtual audio backend case), where
the surface polls them exactly as it polls a port.

``ride(...)`` builds a script of fader moves for the built-in ``generic`` map
(CC 7 on channel N = track N gain), using the same fader law as the surface.
"""
from __future__ import annotations

import threading
import time
from collections import deque

from .taper import db_to_value7


class LoopbackPort:
    """An input port in memory: ``send`` on one side, ``poll`` on the other (thread-safe
    through a deque, which appends and pops atomically)."""

    connected = True
    port_name = "loopback"

    def __init__(self, maxlen: int = 65536):
        self._q = deque(maxlen=maxlen)

    def send(self, msg) -> bool:
        self._q.append(list(msg))
        return True

    def poll(self, limit: int = 100000) -> list:
        out = []
        q = self._q
        while q and len(out) < limit:
            out.append(q.popleft())
        return out

    def check(self):
        return None

    def close(self) -> None:
        pass


def ride(moves) -> list:
    """Script from (time_s, track number 1-based, dB) fader moves on the generic map,
    each a short glide of ten messages over 200 ms, like a hand on a fader."""
    script = []
    level = {}
    for t, strip, db in moves:
        start = level.get(strip, 0.0)
        a, b = db_to_value7(start), db_to_value7(db)
        for k in range(1, 11):
            v = round(a + (b - a) * k / 10)
            script.append((t + 0.02 * k, [0xB0 | (strip - 1), 7, v]))
        level[strip] = db
    return sorted(script, key=lambda e: e[0])


DEMO_RIDE = ((0.3, 2, -9.0), (6.5, 2, -4.0), (7.6, 2, -9.0), (12.8, 2, -3.0),
             (14.2, 2, -9.0), (18.5, 2, -20.0), (0.5, 3, -6.0), (18.8, 3, -15.0))


class VirtualController:
    """Plays a script into a port (anything with ``send(bytes)``) on its own thread."""

    def __init__(self, port, script):
        self.port = port
        self.script = list(script)
        self.sent = 0
        self._stop = threading.Event()
        self._thread = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="livemix-virtual-midi",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        t0 = time.monotonic()
        for at, msg in self.script:
            delay = t0 + at - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            if self.port.send(msg):
                self.sent += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
