"""MIDI learn: move a control for each parameter in turn, get a mapping file.

``learn(session, port, out_path)`` walks through the session's parameters in
this order: for each track gain, pan, mute, solo (with ``strip``, `--strip`, then
its channel strip's stage switches and main values); then the master gain; then
each ducking rule's duck_depth. For each it prompts ``move the control for
<target> <param> (Enter to skip)`` and binds the next control moved:

- a CC: 7-bit, ``absolute`` or ``relative``. A CC whose values are all small
  tick counts in the Mackie V-Pot encoding (1..15 clockwise, 65..79
  counter-clockwise) and that repeats a value or changes direction (1, 1, 65,
  ...), or a single 1 or 65, is an endless encoder: ``relative``. A fader or
  knob never sends the same value twice in a row, so even a slow move through
  1, 2, 3 stays ``absolute``;
- a 14-bit CC: a CC 0-31 followed within ``PAIR_S`` by its +32 partner is a
  ``cc14`` (an LSB alone, without its MSB, is an ordinary CC);
- a pitch bend (a Mackie-style fader), absolute; a note 104-112 held, or
  pressed within ``TOUCH_S``, just before it is its touch note (then
  ``feedback = true``: a fader with a touch sensor has a motor);
- a note, or a CC that sends only one value and 0 (127 press, 0 release): a
  button, ``toggle`` for mute and solo. A button cannot set gain, pan or a
  depth: that is said, and the next control is awaited. A continuous control
  (fader, knob, 14-bit, pitch bend) bound to mute or solo is ``absolute``
  (on in its upper half).

One move binds once: a control's messages form one gesture, which ends when the
control has been quiet for ``settle_s`` (0.3 s) or after ``MAX_GESTURE_S``;
further messages of a control just bound, or of one refused, are ignored while it
keeps moving. A control already bound is not bound again: that is said, and
the next control is awaited. Controls other than the one being learned that move
during a gesture are ignored.

Skipping and finishing early come from the caller (``skip`` and ``done``: a
``threading.Event``-like object, consumed when set, or a callable returning
true), so the core never reads stdin; ``stdin_keys()`` gives the pair the CLI
wants (Enter = skip, ``q`` Enter = finish and write what was learned).

The file written (inline tables, one binding per line; targets by track name)
is checked with ``load_mapping`` before it is put in place, so what is written
always loads and maps exactly what was learned. An existing file is never
overwritten unless ``force``. Nothing learned: nothing written (a mapping
needs at least one binding), ``LearnResult.path`` is None.

Control thread; ``learn`` blocks until every parameter is bound or skipped.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from engine.errors import LivemixError

from .mapping import load_mapping
from .messages import MidiParser

SETTLE_S = 0.3          # a gesture ends when its control has been quiet this long
PAIR_S = 0.010          # an MSB's +32 LSB within this: a 14-bit CC
TOUCH_S = 1.0           # a touch note this soon before a pitch bend is its touch note
MAX_GESTURE_S = 1.5     # a control moving for longer is classified from what came so far
POLL_S = 0.002          # port polling period
TOUCH_NOTES = range(104, 113)   # Mackie fader touch notes: strips 1-8 and the master
RELATIVE_TICKS = frozenset(range(1, 16)) | frozenset(range(65, 80))

SWITCH_PARAMS = ("mute", "solo", "denoise", "hpf", "gate", "eq", "comp")   # buttons


class LearnError(LivemixError):
    """MIDI learn cannot go on (an existing output file, a file that cannot be written)."""


@dataclass(frozen=True)
class Step:
    """One parameter to learn. ``target`` is what the mapping file holds (track name,
    "master", or the 1-based ducking rule number); ``label`` is what the user reads,
    ``hint`` an optional explanation shown with the prompt."""
    target: object
    param: str
    label: str
    hint: str = ""


def strip_steps(strip) -> list[str]:
    """The strip parameters worth a control on a track with ``strip``: each stage it has,
    its switch (bypass) and the values people ride (not its time constants)."""
    params = []
    if strip.denoise:
        params.append("denoise")
    if strip.hpf:
        params += ["hpf", "hpf_freq"]
    if strip.gate:
        params += ["gate", "gate_threshold", "gate_range"]
    if strip.eq:
        params.append("eq")
        for k, band in enumerate(strip.eq, start=1):
            params += [f"eq{k}_freq"] + ([] if band.type.endswith("-cut") else [f"eq{k}_gain"])
    if strip.comp:
        params += ["comp", "comp_threshold", "comp_ratio", "comp_makeup"]
    return params


def steps_for(session, strip: bool = False) -> list[Step]:
    """The parameters to learn, in order: each track's gain, pan, mute, solo (and with
    ``strip``, its strip's switches and main values: ``strip_steps``); the master gain;
    each ducking rule's duck_depth."""
    steps = []
    for t in session.tracks:
        for param in ("gain", "pan", "mute", "solo") + (tuple(strip_steps(t.strip))
                                                         if strip else ()):
            steps.append(Step(t.name, param, t.name))
    steps.append(Step("master", "gain", "master"))
    for i, rule in enumerate(session.ducking):
        steps.append(Step(i + 1, "duck_depth", f"ducking[{i + 1}]",
                          f"{', '.join(rule.key)} ducks {', '.join(rule.targets)}"))
    return steps


def describe(control: str, channel: int, number: int = 0) -> str:
    """A control for people: "CC 7 on channel 1", "pitch bend on channel 9"..."""
    if control == "cc":
        return f"CC {number} on channel {channel}"
    if control == "cc14":
        return f"14-bit CC {number}/{number + 32} on channel {channel}"
    if control == "pitchbend":
        return f"pitch bend on channel {channel}"
    return f"note {number} on channel {channel}"


def _raw_key(ev):
    """Event -> the raw control it comes from: (kind, channel, number)."""
    if ev.kind == "cc":
        return ("cc", ev.channel, ev.number)
    if ev.kind == "pitchbend":
        return ("pitchbend", ev.channel, 0)
    if ev.kind in ("note_on", "note_off"):
        return ("note", ev.channel, ev.number)
    return None


def _describe_key(key) -> str:
    return describe(*key)


def is_relative(values) -> bool:
    """True when CC values look like an endless encoder in the Mackie encoding: all
    small tick counts around 0 (1..15) or 64 (65..79), with a repeat or a change of
    direction, or a single 1 or 65. See the module docstring."""
    values = list(values)
    if not values or not all(v in RELATIVE_TICKS for v in values):
        return False
    if len(values) == 1:
        return values[0] in (1, 65)
    repeats = any(a == b for a, b in zip(values, values[1:]))
    both_ways = any(v < 64 for v in values) and any(v > 64 for v in values)
    return repeats or both_ways


def is_button(values) -> bool:
    """True when CC values look like a button: one value when pressed, maybe 0 on
    release (127/0, 1/0, 127 alone)."""
    values = set(values)
    return bool(values) and len(values - {0}) <= 1 and len(values) <= 2


class _Gesture:
    """The messages of one control being moved."""

    def __init__(self, key, t):
        self.key = key
        self.start = t
        self.last = t
        self.events: list = []          # (t, Event) of this control (and its partner)
        self.touch = None               # (channel, note) when it began on a touch note

    def keys(self) -> set:
        keys = {self.key}
        if self.touch is not None:
            keys.add(("note", *self.touch))
        if self.key[0] == "cc" and self.key[2] < 64:
            n = self.key[2] % 32
            keys |= {("cc", self.key[1], n), ("cc", self.key[1], n + 32)}
        return keys


class Learner:
    """The learning logic without ports or prompts: ``feed(t, event)`` with the parsed
    events and their arrival times (s), ``check(t, step)`` -> a binding dict once a
    gesture has ended on a usable control, else None. Messages for the user go to
    ``say``. One thread."""

    def __init__(self, say=print, settle_s: float = SETTLE_S, pair_s: float = PAIR_S,
                 touch_s: float = TOUCH_S, max_gesture_s: float = MAX_GESTURE_S):
        self.say = say
        self.settle_s = settle_s
        self.pair_s = pair_s
        self.touch_s = touch_s
        self.max_gesture_s = max_gesture_s
        self.bindings: list[dict] = []
        self._owner: dict = {}          # raw key -> (binding dict, label of its target)
        self._busy: dict = {}           # raw key -> last message time (ignored while moving)
        self._touch_on: dict = {}       # (channel, note) -> time of its last note_on
        self._touch_off: dict = {}      # (channel, note) -> time of its last note_off
        self.gesture: _Gesture | None = None

    # -- bookkeeping --------------------------------------------------------------
    def owner(self, key):
        return self._owner.get(key)

    def _keys_of(self, b: dict) -> list:
        ch = b["channel"]
        if b["control"] == "cc14":
            keys = [("cc", ch, b["number"]), ("cc", ch, b["number"] + 32)]
        elif b["control"] == "pitchbend":
            keys = [("pitchbend", ch, 0)]
        else:
            keys = [(b["control"], ch, b["number"])]
        if "touch" in b:
            keys.append(("note", b["touch_channel"], b["touch"]))
        return keys

    def bind(self, b: dict, label: str) -> None:
        """Record a binding (its raw controls are now taken)."""
        self.bindings.append(b)
        for k in self._keys_of(b):
            self._owner[k] = (b, label)

    def _set_busy(self, keys, t) -> None:
        for k in keys:
            self._busy[k] = max(t, self._busy.get(k, t))

    def reset_gesture(self, t) -> None:
        """Forget the gesture in progress (a skip); its control stays ignored while it moves."""
        if self.gesture is not None:
            self._set_busy(self.gesture.keys(), self.gesture.last)
            self.gesture = None

    # -- input ----------------------------------------------------------------------
    def feed(self, t: float, ev) -> None:
        key = _raw_key(ev)
        if key is None:
            return                          # program, pressure, SysEx...: not controls
        if key[0] == "note" and key[2] in TOUCH_NOTES:
            if ev.kind == "note_on":
                self._touch_on[key[1:]] = t
            else:
                self._touch_off[key[1:]] = t
        last = self._busy.get(key)
        if last is not None:
            if t - last <= self.settle_s:
                self._busy[key] = t         # still moving: ignored
                return
            del self._busy[key]
        g = self.gesture
        if g is not None:
            if self._belongs(g, key, ev):
                g.events.append((t, ev))
                g.last = t
            return                          # another control during a gesture: ignored
        if ev.kind == "note_off":
            return                          # a release never starts a gesture
        owned = self._owner.get(key)
        if owned is not None:
            b, label = owned
            touch_key = ("note", b.get("touch_channel"), b.get("touch"))
            releasing = ev.kind == "cc" and ev.value == 0 and b.get("mode") == "toggle"
            if key != touch_key and not releasing:
                self.say(f"  {_describe_key(key)} is already bound to {label}: "
                         "move another control (Enter to skip)")
            self._set_busy(self._keys_of(b), t)
            return
        self.gesture = _Gesture(key, t)
        self.gesture.events.append((t, ev))

    def _belongs(self, g: _Gesture, key, ev) -> bool:
        if key == g.key:
            return True
        kind, ch, n = g.key
        if kind == "cc" and key[0] == "cc" and key[1] == ch and n < 64 and \
                key[2] == (n + 32 if n < 32 else n - 32):
            return True                     # the other half of a 14-bit pair
        if kind == "note" and n in TOUCH_NOTES and key[0] == "pitchbend" and \
                self._owner.get(key) is None and g.touch is None:
            g.touch = (ch, n)               # a touch note, then its fader moves
            g.key = key
            return True
        if g.touch is not None and key == ("note", *g.touch):
            return True                     # the touch released (or touched again)
        return False

    # -- gestures -> bindings ---------------------------------------------------------
    def check(self, t: float, step: Step):
        """The binding for ``step`` once the gesture in progress has ended on a usable
        control (it is recorded), else None."""
        g = self.gesture
        if g is None:
            return None
        quiet = self.settle_s
        if g.key[0] == "note" and g.key[2] in TOUCH_NOTES:
            quiet = max(quiet, self.touch_s)     # maybe a fader's touch: wait for it to move
        if t - g.last < quiet and t - g.start < self.max_gesture_s:
            return None
        self.gesture = None
        self._set_busy(g.keys(), g.last)
        b = self._classify(g, step)
        if b is None:
            return None
        clash = next((self._owner[k] for k in self._keys_of(b) if k in self._owner), None)
        if clash is not None:
            self.say(f"  {describe(b['control'], b['channel'], b.get('number', 0))} uses a "
                     f"control already bound to {clash[1]}: move another control "
                     "(Enter to skip)")
            return None
        label = f"{step.label} {step.param}"
        b["target"] = step.target
        b["param"] = step.param
        self.bind(b, label)
        return b

    def _touch_for(self, ch: int, start: float):
        """A free touch note pressed just before a pitch bend began (prefer the Mackie
        note of that strip, then the most recent)."""
        best = None
        for (tch, note), on in self._touch_on.items():
            off = self._touch_off.get((tch, note))
            held = off is None or off < on or off >= start     # not released before it
            if on > start or not (held or on >= start - self.touch_s):
                continue
            if self._owner.get(("note", tch, note)) is not None:
                continue
            rank = (note == 103 + ch, on)
            if best is None or rank > best[0]:
                best = (rank, (tch, note))
        return best[1] if best else None

    def _classify(self, g: _Gesture, step: Step):
        kind, ch, n = g.key
        switch = step.param in SWITCH_PARAMS
        if kind == "note":
            if not switch:
                self.say(f"  {describe('note', ch, n)} is a button: it cannot set "
                         f"{step.param}; move a fader or knob (Enter to skip)")
                return None
            return {"control": "note", "channel": ch, "number": n, "mode": "toggle",
                    "name": f"note {n} ch {ch}"}
        if kind == "pitchbend":
            b = {"control": "pitchbend", "channel": ch, "mode": "absolute",
                 "name": f"pitch bend ch {ch}"}
            touch = g.touch or self._touch_for(ch, g.start)
            if touch is not None and self._owner.get(("note", *touch)) is None:
                b["touch"] = touch[1]
                b["touch_channel"] = touch[0]
                b["feedback"] = True        # a touch-sensitive fader is a motor fader
            return b
        ccs = [(t, e) for t, e in g.events if e.kind == "cc"]
        if n < 64:
            msb = n % 32
            last_msb = None
            for t, e in ccs:
                if e.number == msb:
                    last_msb = t
                elif last_msb is not None and 0 <= t - last_msb <= self.pair_s:
                    return {"control": "cc14", "channel": ch, "number": msb,
                            "mode": "absolute", "name": f"CC {msb}/{msb + 32} ch {ch}"}
        values = [e.value for _, e in ccs if e.number == n]
        b = {"control": "cc", "channel": ch, "number": n, "name": f"CC {n} ch {ch}"}
        if switch:
            if is_button(values):
                b["mode"] = "toggle"
            elif is_relative(values):
                self.say(f"  {describe('cc', ch, n)} is an endless encoder: it cannot set "
                         f"{step.param}; press a button (Enter to skip)")
                return None
            else:
                b["mode"] = "absolute"
            return b
        if is_relative(values):
            b["mode"] = "relative"
        elif is_button(values):
            self.say(f"  {describe('cc', ch, n)} is a button (it sends only "
                     f"{' and '.join(map(str, sorted(set(values), reverse=True)))}): it "
                     f"cannot set {step.param}; move a fader or knob (Enter to skip)")
            return None
        else:
            b["mode"] = "absolute"
        return b


# --- the mapping file -------------------------------------------------------------

def _toml_str(s: str) -> str:
    out = ['"']
    for c in s:
        o = ord(c)
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif o < 0x20 or o == 0x7F:
            out.append(f"\\u{o:04X}")
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return _toml_str(str(v))


_ORDER = ("control", "channel", "number", "target", "param", "mode", "feedback", "touch",
          "touch_channel", "name")


def mapping_text(name: str, description: str, bindings: list[dict]) -> str:
    """A mapping file's text: inline tables, one binding per line."""
    lines = ["# Written by `livemix learn`. Edit freely: the format is described in",
             "# controllers/mapping.py.",
             f"name = {_toml_str(name)}",
             f"description = {_toml_str(description)}",
             "",
             "bindings = ["]
    for b in bindings:
        items = ", ".join(f"{k} = {_toml_value(b[k])}" for k in _ORDER if k in b)
        lines.append(f"  {{ {items} }},")
    lines.append("]")
    return "\n".join(lines) + "\n"


def write_mapping(out_path, text: str, track_names, duck_rules: int, force: bool = False):
    """Check ``text`` loads with ``load_mapping``, then write it to ``out_path``
    (never over an existing file unless ``force``). Returns the loaded Mapping."""
    out = Path(out_path)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        mapping = load_mapping(tmp, track_names, duck_rules=duck_rules)
        if force:
            os.replace(tmp, out)
        else:
            try:
                with open(out, "x", encoding="utf-8") as f:
                    f.write(text)
            except FileExistsError:
                raise LearnError(f"{out}: already exists; not overwritten "
                                 "(use --force to replace it)") from None
    except OSError as e:
        raise LearnError(f"{out}: cannot write the mapping: {' '.join(str(e).split())}") \
            from None
    finally:
        tmp.unlink(missing_ok=True)
    mapping.path = str(out)
    return mapping


# --- the session ---------------------------------------------------------------------

@dataclass
class LearnResult:
    """What was learned. ``path`` is None when nothing was (no file written);
    ``bindings`` are the dicts written (file order); ``skipped`` the "target param"
    labels skipped; ``mapping`` the file loaded back with ``load_mapping``."""
    path: str | None
    port: str
    bindings: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    mapping: object = None

    def __len__(self):
        return len(self.bindings)

    def lines(self) -> list[str]:
        if self.path is None:
            return ["nothing learned: no mapping written"]
        out = [f"wrote {len(self.bindings)} binding{'s' * (len(self.bindings) != 1)} "
               f"to {self.path}"]
        if self.skipped:
            out.append(f"skipped: {', '.join(self.skipped)}")
        return out


def _triggered(flag) -> bool:
    """An Event-like (consumed when set) or a callable; None is never triggered."""
    if flag is None:
        return False
    if hasattr(flag, "is_set"):
        if flag.is_set():
            flag.clear()
            return True
        return False
    return bool(flag())


class StdinKeys:
    """Enter on stdin = skip, ``q`` (or ``quit``, ``done``) then Enter = finish early.
    Reads on a daemon thread; ``skip`` and ``done`` are Events for ``learn``."""

    def __init__(self, stream=None):
        self.stream = stream if stream is not None else sys.stdin
        self.skip = threading.Event()
        self.done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="livemix-learn-keys",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for line in self.stream:
            if line.strip().lower() in ("q", "quit", "done"):
                self.done.set()
                return
            self.skip.set()


def stdin_keys(stream=None) -> StdinKeys:
    return StdinKeys(stream)


def learn(session, port, out_path, *, say=print, skip=None, done=None,
          timeout_s: float | None = None, force: bool = False, api: str = "auto",
          name: str | None = None, settle_s: float = SETTLE_S,
          clock=time.monotonic, strip: bool = False) -> LearnResult:
    """Learn a mapping for ``session`` from a MIDI input and write it to ``out_path``.

    port       a port name (a substring, opened with ``InputPort``: a PortError
               listing the ports when none matches) or an open port (anything
               with ``poll()``, e.g. ``LoopbackPort``; left open)
    say        where prompts and messages go (one line each)
    skip       skip the current parameter: an Event (consumed) or a callable
    done       finish now, writing what was learned: the same kinds
    timeout_s  give up on a parameter (skip it) when no control was bound in
               this long; None waits until a control or a skip
    force      overwrite ``out_path`` if it exists (else LearnError, before
               anything is asked)
    strip      also each track's channel strip (``strip_steps``)
    Returns a ``LearnResult``. Control thread.
    """
    out = Path(out_path)
    if out.exists() and not force:
        raise LearnError(f"{out}: already exists; not overwritten (use --force to "
                         "replace it)")
    if not out.parent.is_dir():
        raise LearnError(f"{out}: no such directory {str(out.parent)!r}")
    opened = None
    if isinstance(port, str):
        from .ports import InputPort
        port = opened = InputPort(port, api=api, client_name="livemix-learn")
    port_name = getattr(port, "port_name", None) or "MIDI"
    try:
        learner = Learner(say=say, settle_s=settle_s)
        parser = MidiParser()
        steps = steps_for(session, strip=strip)
        skipped = []
        finished = False
        for k, step in enumerate(steps):
            if finished:
                skipped.append(f"{step.label} {step.param}")
                continue
            say(f"[{k + 1}/{len(steps)}] move the control for {step.label} {step.param} "
                + (f"({step.hint}; Enter to skip)" if step.hint else "(Enter to skip)"))
            started = clock()
            while True:
                if _triggered(done):
                    finished = True
                    learner.reset_gesture(clock())
                    skipped.append(f"{step.label} {step.param}")
                    say("  finished")
                    break
                if _triggered(skip):
                    learner.reset_gesture(clock())
                    skipped.append(f"{step.label} {step.param}")
                    say("  skipped")
                    break
                msgs = port.poll()
                now = clock()
                for m in msgs:
                    for ev in parser.feed(m):
                        learner.feed(now, ev)
                b = learner.check(now, step)
                if b is not None:
                    say(f"  {describe(b['control'], b['channel'], b.get('number', 0))} "
                        f"({b['mode']}"
                        + (f", touch note {b['touch']}" if "touch" in b else "")
                        + f") -> {step.label} {step.param}")
                    break
                if timeout_s is not None and now - started >= timeout_s and \
                        learner.gesture is None:
                    skipped.append(f"{step.label} {step.param}")
                    say(f"  nothing moved in {timeout_s:g} s: skipped")
                    break
                time.sleep(POLL_S)
    finally:
        if opened is not None:
            opened.close()
    bindings = learner.bindings
    if not bindings:
        say("nothing learned: no mapping written")
        return LearnResult(None, port_name, [], skipped)
    text = mapping_text(name or f"learned from {port_name}",
                        f"learned with `livemix learn` for {session.path.name} from "
                        f"{port_name}", bindings)
    mapping = write_mapping(out, text, [t.name for t in session.tracks],
                            len(session.ducking), force=force)
    result = LearnResult(str(out), port_name, list(bindings), skipped, mapping)
    for line in result.lines():
        say(line)
    return result
