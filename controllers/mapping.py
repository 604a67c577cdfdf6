"""Controller mapping files (TOML): which control moves which parameter.

A mapping is a TOML file with an optional ``name`` (default: the file's stem),
an optional ``description`` and an array of ``bindings``, written either as
``[[bindings]]`` tables or as ``bindings = [ {...}, ... ]`` with one inline
table per line::

    name = "Korg nanoKONTROL2"
    [[bindings]]
    control = "cc"          # cc | cc14 | pitchbend | note                  (required)
    channel = 1             # MIDI channel 1-16                            (default 1)
    number = 0              # CC 0-127 (cc14: the MSB, 0-31) or note 0-127;
                            # leave it out for pitchbend                   (required otherwise)
    target = 1              # track number (1-based), track name or "master";
                            # for duck_depth the ducking rule number (1-based)  (required)
    param = "gain"          # gain | pan | mute | solo | duck_depth | record   (required)
    mode = "absolute"       # absolute | relative | toggle | momentary
                            # (default: absolute, toggle for notes)
    feedback = false        # send the value back: LEDs, motor faders      (default false)
    touch = 104             # optional: touch-sensitive fader's touch note (Mackie)
    touch_channel = 1       # optional: the touch note's channel (default: channel)
    name = "fader 1"        # optional: a label for this binding

What the combinations mean:

- ``absolute`` (cc, cc14, pitchbend): the control's position is the value. For
  gain it goes through the fader law (``controllers.taper``); pan maps 0..max to
  -1..+1 (a 7-bit knob: 64 is the centre); for mute/solo on a cc, >= 64 is on.
  (The scales are applied by whoever dispatches the events, not here.)
- ``relative`` (cc only, gain/pan/duck_depth): an endless encoder in the Mackie
  V-Pot encoding: the low 6 bits are ticks, bit 6 set means counter-clockwise
  (``relative_ticks``).
- ``toggle`` (cc, note; mute/solo/record): each press (value/velocity > 0) flips
  the state, releases are ignored.
- ``momentary`` (cc, note; mute/solo/record): on while held.
- ``record`` starts and stops recording the take: its target must be "master".
- ``feedback`` is not allowed on relative bindings (an encoder has no position;
  LED rings use other numbers).

Errors are ``MappingError`` (a ``LivemixError``), one line naming the file, the
line, the binding and the key, like the session's::

    show-map.toml:12: bindings[3].param: unknown param 'gian' (did you mean 'gain'?)

Built-in maps (``generic``, ``nanokontrol2``, ``midimix``, ``mackie``; files in
``controllers/maps/``) are written for 8 or 16 strips: bindings for track
numbers the session does not have are skipped silently (counted in
``Mapping.skipped``). In a user's file they are errors.

Loading happens on a control thread; ``Mapping`` is immutable afterwards and its
lookups may be called from any thread.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from engine.errors import LivemixError
from engine.strip import PARAMS as STRIP_PARAMS

BUILTIN_MAPS = ("generic", "nanokontrol2", "midimix", "mackie")
CONTROLS = ("cc", "cc14", "pitchbend", "note")
# the channel strip's parameters (engine.strip.PARAMS): switches and values
STRIP = tuple(p.name for p in STRIP_PARAMS)
PARAMS = ("gain", "pan", "mute", "solo", "duck_depth", "record") + STRIP
MODES = ("absolute", "relative", "toggle", "momentary")

_CONTROL_MODES = {
    "cc": MODES,
    "cc14": ("absolute",),
    "pitchbend": ("absolute",),
    "note": ("toggle", "momentary"),
}
_PARAM_MODES = {
    "gain": ("absolute", "relative"),
    "pan": ("absolute", "relative"),
    "duck_depth": ("absolute", "relative"),
    "mute": ("absolute", "toggle", "momentary"),
    "solo": ("absolute", "toggle", "momentary"),
    "record": ("toggle", "momentary"),
    **{p.name: ("absolute", "toggle", "momentary") if p.switch else ("absolute", "relative")
       for p in STRIP_PARAMS},
}
_TOP_KEYS = ("name", "description", "bindings")
_KEYS = ("control", "channel", "number", "target", "param", "mode", "feedback",
         "touch", "touch_channel", "name")
# event kind -> binding control
_EVENT_CONTROL = {"cc": "cc", "cc14": "cc14", "pitchbend": "pitchbend",
                  "note_on": "note", "note_off": "note"}


class MappingError(LivemixError):
    """A controller mapping file that cannot be used."""


@dataclass(frozen=True)
class Binding:
    """One control -> one parameter. ``target`` is resolved: a 0-based track index,
    "master", or for duck_depth a 0-based ducking rule index."""
    control: str                    # cc | cc14 | pitchbend | note
    channel: int                    # 1..16
    number: int                     # CC / note number; 0 for pitchbend
    target: int | str
    param: str                      # gain | pan | mute | solo | duck_depth | record
    mode: str                       # absolute | relative | toggle | momentary
    feedback: bool = False
    touch: int | None = None        # touch note of a touch-sensitive fader
    touch_channel: int | None = None
    name: str = ""
    index: int = 0                  # 1-based position in the file's bindings


def relative_ticks(value: int) -> int:
    """A relative encoder's CC value -> signed ticks (Mackie V-Pot encoding: low 6
    bits are the count, bit 6 set means counter-clockwise): 1 -> +1, 65 -> -1."""
    n = value & 0x3F
    return -n if value & 0x40 else n


class Mapping:
    """A loaded mapping: ``name``, ``path``, ``bindings`` (kept ones, file order),
    ``skipped`` (built-in bindings for tracks the session lacks), ``builtin``,
    ``cc14_pairs`` (the (channel, MSB) pairs to build a ``Cc14`` with: raw "cc"
    events never match cc14 bindings, the ``Cc14`` output does), ``touch_notes``
    (the (channel, note) pairs that are fader touch notes)."""

    def __init__(self, name: str, path: str, bindings: list[Binding], builtin: bool,
                 skipped: int = 0):
        self.name = name
        self.path = path
        self.bindings = list(bindings)
        self.builtin = builtin
        self.skipped = skipped
        index: dict[tuple, list] = {}
        touch: dict[tuple, list] = {}
        by_target: dict[tuple, list] = {}
        for b in self.bindings:
            index.setdefault((b.control, b.channel, b.number), []).append(b)
            if b.touch is not None:
                touch.setdefault((b.touch_channel, b.touch), []).append(b)
            by_target.setdefault((b.param, b.target), []).append(b)
        self._index = {k: tuple(v) for k, v in index.items()}
        self._touch = {k: tuple(v) for k, v in touch.items()}
        self._by_target = {k: tuple(v) for k, v in by_target.items()}
        self.cc14_pairs = frozenset((b.channel, b.number) for b in self.bindings
                                    if b.control == "cc14")
        self.touch_notes = frozenset(self._touch)

    def lookup(self, event) -> list[Binding]:
        """The bindings an event drives: by (kind, channel, number); note_on and
        note_off both match "note" bindings; "cc14" events come from ``Cc14``."""
        control = _EVENT_CONTROL.get(event.kind)
        if control is None:
            return []
        number = 0 if control == "pitchbend" else event.number
        return list(self._index.get((control, event.channel, number), ()))

    def lookup_touch(self, event) -> list[Binding]:
        """The fader bindings whose touch note this note_on/note_off event is
        (velocity > 0: touched, note_off or 0: released)."""
        if event.kind not in ("note_on", "note_off"):
            return []
        return list(self._touch.get((event.channel, event.number), ()))

    def for_target(self, param: str, target) -> list[Binding]:
        """The bindings of ``param`` on ``target`` (0-based index or "master"), e.g. to
        send feedback or re-arm soft takeover when it changes from elsewhere."""
        return list(self._by_target.get((param, target), ()))

    def __repr__(self):
        return f"Mapping({self.name!r}, {len(self.bindings)} bindings)"


# --- loading --------------------------------------------------------------------

class _Where:
    """Finds the line of a binding's key in the TOML text, for error messages."""

    def __init__(self, path: str, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line(self, index: int | None, key: str | None) -> int | None:
        if index is None:
            if key is None:
                return None
            pat = re.compile(r"^\s*\"?%s\"?\s*=" % re.escape(key))
            for n, text in enumerate(self.lines):
                if re.match(r"^\s*\[", text):
                    break
                if pat.match(text):
                    return n + 1
            return None
        headers = [n for n, t in enumerate(self.lines) if re.match(r"^\s*\[\[\s*bindings\s*\]\]", t)]
        if index < len(headers):
            start = headers[index]
            if key is not None:
                pat = re.compile(r"^\s*\"?%s\"?\s*=" % re.escape(key))
                for n in range(start + 1, len(self.lines)):
                    if re.match(r"^\s*\[", self.lines[n]):
                        break
                    if pat.match(self.lines[n]):
                        return n + 1
            return start + 1
        # inline tables, one per line, after "bindings = ["
        begin = next((n for n, t in enumerate(self.lines)
                      if re.match(r"^\s*bindings\s*=\s*\[", t)), None)
        if begin is None:
            return None
        rows = [n for n in range(begin, len(self.lines))
                if re.match(r"^\s*(bindings\s*=\s*\[\s*)?\{", self.lines[n])]
        return rows[index] + 1 if index < len(rows) else None

    def error(self, index: int | None, key: str | None, problem: str) -> MappingError:
        line = self.line(index, key)
        loc = f"{self.path}:{line}" if line else self.path
        name = f"bindings[{index + 1}]" if index is not None else ""
        if key is not None:
            name = f"{name}.{key}" if name else key
        problem = " ".join(str(problem).split())      # one line
        return MappingError(f"{loc}: {name}: {problem}" if name else f"{loc}: {problem}")


def _choice(where, i, key, value, allowed, what):
    if not isinstance(value, str) or value not in allowed:
        close = difflib.get_close_matches(value, allowed, n=1) if isinstance(value, str) else []
        hint = f"did you mean {close[0]!r}?" if close else f"use one of {', '.join(allowed)}"
        raise where.error(i, key, f"unknown {what} {value!r} ({hint})")
    return value


def _int(where, i, key, value, lo, hi, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise where.error(i, key, f"{value!r} is not an integer")
    if not lo <= value <= hi:
        raise where.error(i, key, f"{what} {value} is outside {lo}-{hi}")
    return value


def _read(name_or_path) -> tuple[str, str, bool, str]:
    """-> (display path, text, builtin, default name)."""
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_MAPS:
        res = resources.files(__package__).joinpath("maps", f"{name_or_path}.toml")
        return str(res), res.read_text(encoding="utf-8"), True, name_or_path
    path = Path(name_or_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MappingError(f"{path}: mapping file not found (built-in maps: "
                           f"{', '.join(BUILTIN_MAPS)})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MappingError(f"{path}: cannot read mapping file: "
                           f"{' '.join(str(e).split())}") from None
    return str(path), text, False, path.stem


def load_mapping(name_or_path, track_names, *, duck_rules: int | None = None) -> Mapping:
    """Load a built-in map by name or a mapping file by path, resolving targets
    against the session's ``track_names`` (in session order). ``duck_rules``, when
    given, is the number of ducking rules, to check duck_depth targets. Raises
    ``MappingError`` (one line: file, line, binding, key). Control thread."""
    path, text, builtin, stem = _read(name_or_path)
    where = _Where(path, text)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise MappingError(f"{path}: not valid TOML: {' '.join(str(e).split())}") from None
    for key in data:
        if key not in _TOP_KEYS:
            close = difflib.get_close_matches(key, _TOP_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(_TOP_KEYS)}"
            raise where.error(None, key, f"unknown key ({hint})")
    name = data.get("name", stem)
    if not isinstance(name, str) or not name.strip():
        raise where.error(None, "name", f"{name!r} is not a non-empty string")
    if "description" in data and not isinstance(data["description"], str):
        raise where.error(None, "description", f"{data['description']!r} is not a string")
    raw = data.get("bindings")
    if not isinstance(raw, list) or not raw or not all(isinstance(b, dict) for b in raw):
        raise where.error(None, "bindings", "a mapping needs at least one binding "
                          "([[bindings]] tables or bindings = [{...}, ...])")
    tracks = list(track_names)

    kept: list[Binding] = []
    skipped = 0
    seen: dict[tuple, int] = {}        # (control, channel, number, param) -> binding index
    controls: dict[tuple, int] = {}    # (control, channel, number) -> first binding index
    touches: dict[tuple, tuple] = {}   # (channel, note) -> ((control, channel, number), index)
    for i, b in enumerate(raw):
        for key in b:
            if key not in _KEYS:
                close = difflib.get_close_matches(key, _KEYS, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(_KEYS)}"
                raise where.error(i, key, f"unknown key ({hint})")
        for key in ("control", "target", "param"):
            if key not in b:
                raise where.error(i, key, "missing")
        control = _choice(where, i, "control", b["control"], CONTROLS, "control")
        channel = _int(where, i, "channel", b.get("channel", 1), 1, 16, "channel")
        if control == "pitchbend":
            number = b.get("number", 0)
            if number != 0 or isinstance(number, bool):
                raise where.error(i, "number", "pitchbend has no number (each channel has "
                                  "one pitch bend): leave the key out")
        else:
            if "number" not in b:
                raise where.error(i, "number", "missing")
            hi = 31 if control == "cc14" else 127
            what = "14-bit CC (the MSB)" if control == "cc14" else \
                ("note" if control == "note" else "CC")
            number = _int(where, i, "number", b["number"], 0, hi, what)
        param = _choice(where, i, "param", b["param"], PARAMS, "param")
        mode = _choice(where, i, "mode", b.get("mode", "toggle" if control == "note" else
                                                  "absolute"), MODES, "mode")
        if mode not in _CONTROL_MODES[control]:
            raise where.error(i, "mode", f"{mode} is not possible for a {control} control "
                              f"(use {' or '.join(_CONTROL_MODES[control])})")
        if mode not in _PARAM_MODES[param]:
            raise where.error(i, "mode", f"{mode} is not possible for {param} "
                              f"(use {' or '.join(_PARAM_MODES[param])})")
        feedback = b.get("feedback", False)
        if not isinstance(feedback, bool):
            raise where.error(i, "feedback", f"{feedback!r} is not true or false")
        if feedback and mode == "relative":
            raise where.error(i, "feedback", "a relative encoder has no position to send back")
        touch = touch_channel = None
        if "touch" in b:
            touch = _int(where, i, "touch", b["touch"], 0, 127, "touch note")
            if mode != "absolute":
                raise where.error(i, "touch", "only an absolute control (a fader) can have "
                                  "a touch note")
            touch_channel = _int(where, i, "touch_channel", b.get("touch_channel", channel),
                                 1, 16, "channel")
        elif "touch_channel" in b:
            raise where.error(i, "touch_channel", "given without touch")
        label = b.get("name", "")
        if not isinstance(label, str):
            raise where.error(i, "name", f"{label!r} is not a string")

        # target
        t = b["target"]
        skip = False
        if param == "record":
            if t != "master":
                raise where.error(i, "target", f"{t!r}: record starts and stops the take: "
                                  'use target = "master"')
            target = "master"
        elif param == "duck_depth":
            if isinstance(t, bool) or not isinstance(t, int) or t < 1:
                raise where.error(i, "target", f"{t!r}: duck_depth needs a ducking rule "
                                  "number (1 is the first [[ducking]] rule)")
            if duck_rules is not None and t > duck_rules:
                if builtin:
                    skip = True
                else:
                    raise where.error(i, "target", f"unknown ducking rule {t} (the session "
                                      f"has {duck_rules})")
            target = t - 1
        elif t == "master":
            if param != "gain":
                raise where.error(i, "target", f"the master has no {param} (only gain)")
            target = "master"
        elif isinstance(t, str):
            if t not in tracks:
                close = difflib.get_close_matches(t, tracks, n=1)
                hint = f"did you mean {close[0]!r}?" if close else \
                    f"tracks: {', '.join(tracks) or 'none'}"
                raise where.error(i, "target", f"unknown track {t!r} ({hint})")
            target = tracks.index(t)
        elif isinstance(t, int) and not isinstance(t, bool):
            if t < 1:
                raise where.error(i, "target", f"track {t}: tracks are numbered from 1")
            if t > len(tracks):
                if not builtin:
                    raise where.error(i, "target", f"unknown track {t} (the session has "
                                      f"{len(tracks)}: {', '.join(tracks) or 'none'})")
                skip = True
            target = t - 1
        else:
            raise where.error(i, "target", f"{t!r} is not a track number, a track name "
                              'or "master"')

        # conflicts (checked for skipped built-in bindings too)
        ctl = (control, channel, number)
        dup = seen.get((*ctl, param))
        if dup is not None:
            what = f"pitch bend on channel {channel}" if control == "pitchbend" else \
                f"{control} {number} on channel {channel}"
            raise where.error(i, "channel" if control == "pitchbend" else "number",
                              f"duplicate binding: {what} already controls {param} "
                              f"in bindings[{dup + 1}]")
        seen[(*ctl, param)] = i
        controls.setdefault(ctl, i)
        if control == "cc14":
            for n in (number, number + 32):
                other = controls.get(("cc", channel, n))
                if other is not None:
                    raise where.error(i, "number", f"14-bit CC {number} uses CC {number} and "
                                      f"{number + 32}, but bindings[{other + 1}] binds CC {n} "
                                      f"on channel {channel}")
        elif control == "cc" and number < 64:
            other = controls.get(("cc14", channel, number % 32))
            if other is not None:
                raise where.error(i, "number", f"CC {number} on channel {channel} is part of "
                                  f"the 14-bit CC {number % 32} of bindings[{other + 1}]")
        if control == "note":
            claim = touches.get((channel, number))
            if claim is not None:
                raise where.error(i, "number", f"note {number} on channel {channel} is the "
                                  f"touch note of bindings[{claim[1] + 1}]")
        if touch is not None:
            other = controls.get(("note", touch_channel, touch))
            if other is not None:
                raise where.error(i, "touch", f"touch note {touch} on channel {touch_channel} "
                                  f"is already bound by bindings[{other + 1}]")
            claim = touches.get((touch_channel, touch))
            if claim is not None and claim[0] != ctl:
                raise where.error(i, "touch", f"touch note {touch} on channel {touch_channel} "
                                  f"already belongs to bindings[{claim[1] + 1}]")
            touches.setdefault((touch_channel, touch), (ctl, i))

        if skip:
            skipped += 1
            continue
        kept.append(Binding(control=control, channel=channel, number=number, target=target,
                            param=param, mode=mode, feedback=feedback, touch=touch,
                            touch_channel=touch_channel, name=label, index=i + 1))
    return Mapping(name, path, kept, builtin, skipped)
