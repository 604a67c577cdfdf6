"""A control surface: MIDI events through a mapping into engine parameter changes.

``Surface`` runs one control thread that polls its input port every
``POLL_S``, parses the bytes itself (``controllers.messages``), looks each
event up in the mapping, converts it (fader taper, pan, toggles, relative
encoders), applies soft takeover to absolute controls, and sends the engine
only the latest value per parameter of each poll (a flood of 10,000
messages a second becomes at most one change per parameter per poll, and the
last value sent always wins). It also sends feedback (LEDs, motor faders),
rate-limited and never to a fader being touched, and watches the port for
unplug and replug.

The engine is anything with ``set(target, param, value)`` and
``get(target, param)`` (``engine.live.LiveEngine``): the controllers package
talks to the engine only through that API.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from engine import control
from engine.control import step_db
from engine.strip import INDEX as STRIP_INDEX
from engine.strip import PARAMS as STRIP_PARAMS
from engine.strip import strip_position, strip_value

from .mapping import relative_ticks
from .messages import Cc14, MidiParser
from .takeover import SoftTakeover
from .taper import db_to_value7, db_to_value14, value7_to_db, value14_to_db

POLL_S = 0.0005          # input polling period
CHECK_S = 0.5            # hot-plug check period
FEEDBACK_MIN_S = 0.03    # at most ~33 feedback messages a second per control
PAN_STEP = 1.0 / 64      # one encoder tick of pan
DB_STEP = 0.5            # one encoder tick of a gain or a ducking depth, dB
DEPTH_RANGE_DB = 30.0    # duck_depth knobs: 0 .. -30 dB
APPLY_GRACE_S = 0.1      # our own change reaches the engine within this (a block or two)


@dataclass
class SurfaceStats:
    messages: int = 0
    events: int = 0
    applied: int = 0
    ignored_takeover: int = 0
    handler_errors: int = 0
    last_error: str = ""
    last_message: str = ""
    connected: bool = True
    reconnects: int = 0
    feedback_sent: int = 0
    history: list = field(default_factory=list)


def _key(b):
    return (b.target, b.param)


class Surface:
    """Mapping + ports + engine. ``start()``, ``stop()``, ``stats``. Control thread."""

    def __init__(self, engine, mapping, port, feedback_port=None, clock=time.monotonic,
                 handler_delay_s: float = 0.0):
        self.engine = engine
        self.mapping = mapping
        self.port = port
        self.out = feedback_port
        self.clock = clock
        self.parser = MidiParser()
        self.cc14 = Cc14(mapping.cc14_pairs)
        self.stats = SurfaceStats()
        self.handler_delay_s = handler_delay_s    # tests: a deliberately slow handler
        self._takeover: dict = {}
        self._toggle_state: dict = {}
        self._touched: set = set()
        self._last_sent: dict = {}        # (target, param) -> value we last set
        self._feedback_at: dict = {}
        self._modes: dict = {}
        self._stop = threading.Event()
        self._thread = None

    # -- conversions --------------------------------------------------------------
    def _absolute(self, b, raw: int) -> tuple[float, float]:
        """(engine value, normalised position 0..1) for an absolute control."""
        fourteen = b.control in ("cc14", "pitchbend")
        top = 16383 if fourteen else 127
        pos = raw / top
        if b.param in ("gain",):
            db = value14_to_db(raw) if fourteen else value7_to_db(raw)
            return db, pos
        if b.param == "pan":
            centre = top / 2
            return max(-1.0, min(1.0, (raw - centre) / centre)), pos
        if b.param == "duck_depth":
            return -DEPTH_RANGE_DB * (1.0 - pos), pos
        sp = STRIP_INDEX.get(b.param)
        if sp is not None and not STRIP_PARAMS[sp].switch:
            return strip_value(STRIP_PARAMS[sp], pos), pos
        return (1.0 if raw >= top / 2 else 0.0), pos

    def _position(self, b, value: float) -> float:
        """Normalised controller position of an engine value (for takeover and feedback)."""
        fourteen = b.control in ("cc14", "pitchbend")
        top = 16383 if fourteen else 127
        if b.param == "gain":
            raw = db_to_value14(value) if fourteen else db_to_value7(value)
            return raw / top
        if b.param == "pan":
            return (value + 1.0) / 2.0
        if b.param == "duck_depth":
            return 1.0 + value / DEPTH_RANGE_DB
        sp = STRIP_INDEX.get(b.param)
        if sp is not None and not STRIP_PARAMS[sp].switch:
            return strip_position(STRIP_PARAMS[sp], value)
        return value

    # -- handling -----------------------------------------------------------------
    def _heading(self, b, pending) -> float:
        """Where a parameter is going: this poll's pending value, else the latest value
        the engine has queued (``target``: a change not yet applied by the audio thread,
        which lags ``set`` by a block, longer during an outage), else the applied one."""
        if _key(b) in pending:
            return pending[_key(b)]
        target = b.target if b.target == "master" else int(b.target)
        heading = getattr(self.engine, "target", None)
        if heading is None:
            return self._engine_value(b)
        return heading(target, b.param)

    def _param(self, b):
        """The engine.control parameter a binding moves (for its range)."""
        if b.param == "duck_depth":
            return control.RULE["duck_depth"]
        return (control.MASTER if b.target == "master" else control.TRACK)[b.param]

    def _engine_value(self, b) -> float:
        target = b.target if b.target == "master" else int(b.target)
        if b.param == "duck_depth":
            target = int(b.target)
        return self.engine.get(target, b.param)

    def handle(self, ev, pending: dict) -> None:
        """One parsed event -> pending[(target, param)] = value (latest wins)."""
        ev = self.cc14.feed(ev)
        if ev is None:
            return
        touch = self.mapping.lookup_touch(ev)
        if touch:
            for b in touch:                       # a hand on (or off) a motor fader
                if ev.kind == "note_on" and ev.value > 0:
                    self._touched.add(_key(b))
                else:
                    self._touched.discard(_key(b))
            return
        for b in self.mapping.lookup(ev):
            if self.handler_delay_s:
                time.sleep(self.handler_delay_s)
            raw = ev.value
            if b.param == "record":
                if raw > 0 and ev.kind != "note_off":
                    # never wait here for a take to finish: the takes thread does it
                    toggle = getattr(self.engine, "toggle_record_soon", None) or \
                        getattr(self.engine, "toggle_record", None)
                    if toggle is not None:
                        toggle()
                continue
            if b.mode == "absolute":
                value, pos = self._absolute(b, raw)
                tk = self._takeover.setdefault(_key(b), SoftTakeover())
                current = self._engine_value(b)
                sent = self._last_sent.get(_key(b))
                if sent is not None and sent[0] != current and \
                        self.clock() - sent[1] > APPLY_GRACE_S:
                    tk.arm("external_change")     # changed from elsewhere: pick up again
                    del self._last_sent[_key(b)]
                if not tk.accept(pos, self._position(b, current), self.clock()):
                    self.stats.ignored_takeover += 1
                    continue
            elif b.mode == "toggle":
                if raw == 0 or ev.kind == "note_off":
                    continue                      # act on press only
                value = 0.0 if self._heading(b, pending) >= 0.5 else 1.0
            elif b.mode == "momentary":
                value = 1.0 if raw > 0 and ev.kind != "note_off" else 0.0
            elif b.mode == "relative":
                ticks = relative_ticks(raw)
                base = self._heading(b, pending)
                if b.param == "pan":
                    value = max(-1.0, min(1.0, base + ticks * PAN_STEP))
                elif b.param in STRIP_INDEX:     # a strip value: 1/64 of its range a tick
                    p = STRIP_PARAMS[STRIP_INDEX[b.param]]
                    value = strip_value(p, min(1.0, max(0.0, strip_position(p, base)
                                                         + ticks * PAN_STEP / 2)))
                else:                             # dB per tick for gains and depths
                    value = step_db(self._param(b), base, ticks * DB_STEP)
            else:
                continue
            pending[_key(b)] = value

    def _coalescable(self, ev) -> bool:
        """True when only the latest value of this control matters (absolute bindings,
        or none at all); 14-bit halves stay apart because their keys differ."""
        modes = self._modes.get((ev.kind, ev.channel, ev.number))
        if modes is None:
            modes = {b.mode for b in self.mapping.lookup(ev)}
            self._modes[(ev.kind, ev.channel, ev.number)] = modes
        return modes <= {"absolute"}

    def poll_once(self) -> int:
        """Drain the port, apply the latest value per parameter. Returns messages read."""
        msgs = self.port.poll()
        if not msgs:
            return 0
        pending: dict = {}
        events: dict = {}
        for m in msgs:
            self.stats.messages += 1
            try:
                for ev in self.parser.feed(m):
                    self.stats.events += 1
                    # Absolute controls keep only their latest value per poll (a flood
                    # costs one handler call per control); presses and encoder ticks
                    # all count, in order.
                    if ev.kind in ("cc", "pitchbend") and self._coalescable(ev):
                        events.pop((ev.kind, ev.channel, ev.number), None)
                        events[(ev.kind, ev.channel, ev.number)] = ev
                    else:
                        events[len(events), id(ev)] = ev
            except Exception as e:      # counted and shown, never lost silently
                self.stats.handler_errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
        for ev in events.values():
            try:
                self.handle(ev, pending)
            except Exception as e:
                self.stats.handler_errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
        self.stats.last_message = " ".join(f"{b:02X}" for b in msgs[-1][:8])
        for (target, param), value in pending.items():
            t = target if target == "master" else (str(target) if param == "duck_depth"
                                                   else int(target))
            try:
                self.engine.set(t, param, value)
                self._last_sent[(target, param)] = (value, self.clock())
                self.stats.applied += 1
            except Exception as e:
                self.stats.handler_errors += 1
                self.stats.last_error = f"{type(e).__name__}: {e}"
        return len(msgs)

    # -- feedback -------------------------------------------------------------------
    def send_feedback(self) -> None:
        """Send engine values back to controls that want them (rate-limited)."""
        if self.out is None or not self.out.available:
            return
        now = self.clock()
        for b in self.mapping.bindings:
            if not b.feedback or b.param == "record":
                continue
            if _key(b) in self._touched:
                continue                          # never fight a hand on a motor fader
            value = self._engine_value(b)
            key = (b.control, b.channel, b.number)
            sent = self._feedback_at.get(key)
            if sent is not None and (sent[0] == value or now - sent[1] < FEEDBACK_MIN_S):
                continue
            msg = self._feedback_message(b, value)
            if msg and self.out.send(msg):
                self._feedback_at[key] = (value, now)
                self.stats.feedback_sent += 1

    def _feedback_message(self, b, value):
        ch = b.channel - 1
        if b.param in ("mute", "solo"):
            on = value >= 0.5
            if b.control == "note":
                return [0x90 | ch, b.number, 127 if on else 0]
            return [0xB0 | ch, b.number, 127 if on else 0]
        pos = self._position(b, value)
        if b.control == "pitchbend":
            raw = max(0, min(16383, round(pos * 16383)))
            return [0xE0 | ch, raw & 0x7F, raw >> 7]
        if b.control == "cc":
            return [0xB0 | ch, b.number, max(0, min(127, round(pos * 127)))]
        return None

    # -- the thread -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="livemix-midi", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_check = self.clock() + CHECK_S
        while not self._stop.is_set():
            if self.port.connected:
                self.poll_once()
                self.send_feedback()
            now = self.clock()
            if now >= next_check:
                next_check = now + CHECK_S
                change = self.port.check()
                if change == "gone":
                    self.stats.connected = False
                elif change == "back":
                    self.stats.connected = True
                    self.stats.reconnects += 1
                    self.parser.reset()
                    self.cc14.reset()
                    for tk in self._takeover.values():
                        tk.arm("reconnect")       # the controller may have moved meanwhile
            time.sleep(POLL_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self.port.close()
        if self.out is not None:
            self.out.close()
