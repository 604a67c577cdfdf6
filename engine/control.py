"""The command API's parameters: which ones each target has, their units and ranges.

One table for every way to change a running engine (``LiveEngine.set``, MIDI
surfaces, the terminal's keys): a change names a target (a track by name or
index, ``"master"``, or a ducking rule by index) and a parameter; ``resolve``
checks both and ``clamp`` puts the value in the parameter's range, so no
surface can send the audio thread what the session file would refuse.
Control threads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .errors import LivemixError
from .params import (MAX_GAIN_DB, P_DUCK_DEPTH, P_GAIN, P_MASTER_GAIN, P_MUTE, P_PAN, P_SOLO,
                     P_STRIP)
from .strip import PARAMS as STRIP_PARAMS

MIN_DEPTH_DB = -120.0     # deepest ducking, dB (the session file's limit too)
FADER_FLOOR_DB = -80.0    # a relative control stepping below this goes to -inf, and
                          # stepping up from -inf starts here


@dataclass(frozen=True)
class Param:
    """One parameter: its command id, range and unit ("dB", "" for pan, "0/1")."""
    name: str
    pid: int
    lo: float
    hi: float
    unit: str

    @property
    def switch(self) -> bool:
        return self.unit == "0/1"


TRACK = {p.name: p for p in (
    Param("gain", P_GAIN, -math.inf, MAX_GAIN_DB, "dB"),
    Param("pan", P_PAN, -1.0, 1.0, ""),
    Param("mute", P_MUTE, 0.0, 1.0, "0/1"),
    Param("solo", P_SOLO, 0.0, 1.0, "0/1"),
    # the channel strip: switches (1 = in) and values, engine.strip.PARAMS
    *(Param(sp.name, P_STRIP + k, sp.lo, sp.hi, sp.unit) for k, sp in enumerate(STRIP_PARAMS)))}
MASTER = {"gain": Param("gain", P_MASTER_GAIN, -math.inf, MAX_GAIN_DB, "dB")}
RULE = {"duck_depth": Param("duck_depth", P_DUCK_DEPTH, MIN_DEPTH_DB, 0.0, "dB")}


def resolve(session, target, param: str) -> tuple[Param, int]:
    """(parameter, target index) for ``target`` and ``param``: a track name or 0-based
    index with gain/pan/mute/solo, "master" with gain, a 0-based ducking rule index
    with duck_depth. LivemixError naming what is wrong otherwise."""
    if param == "duck_depth":
        n = len(session.ducking)
        try:
            r = int(target)
        except (TypeError, ValueError):
            r = -1
        if isinstance(target, bool) or not 0 <= r < n or str(r) != str(target).strip():
            raise LivemixError(f"duck_depth: no ducking rule {target!r} "
                               f"(the session has {n}: 0 .. {n - 1})" if n else
                               "duck_depth: the session has no ducking rules")
        return RULE[param], r
    if target == "master":
        table, index = MASTER, 0
    else:
        table, index = TRACK, _track(session, target)
    p = table.get(param)
    if p is None:
        owner = "the master" if target == "master" else f"track {target!r}"
        raise LivemixError(f"{owner} has no parameter {param!r} "
                           f"(it has {', '.join(table)})")
    return p, index


def _track(session, target) -> int:
    names = [t.name for t in session.tracks]
    if isinstance(target, int) and not isinstance(target, bool):
        if 0 <= target < len(names):
            return target
        raise LivemixError(f"no track {target} (the session has {len(names)}: "
                           f"0 .. {len(names) - 1})")
    if isinstance(target, str) and target in names:
        return names.index(target)
    raise LivemixError(f"no track named {target!r} (tracks: {', '.join(names)})")


def clamp(p: Param, value) -> float:
    """``value`` as this parameter takes it: in its range (a control pushed past an end
    stops there), 0 or 1 for switches, -inf allowed for gains. LivemixError for what
    is not a number (NaN, text, +inf)."""
    if isinstance(value, bool):
        value = float(value)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise LivemixError(f"{p.name}: {value!r} is not a number") from None
    if math.isnan(v) or (v == math.inf and p.hi != math.inf):
        raise LivemixError(f"{p.name}: {value!r} is not a finite number")
    if p.switch:
        return 1.0 if v >= 0.5 else 0.0
    return min(max(v, p.lo), p.hi)


def step_db(p: Param, base: float, delta_db: float) -> float:
    """A relative control's move: ``base`` dB moved by ``delta_db``, in range. From -inf
    a step up starts at FADER_FLOOR_DB; a gain stepped under it goes to -inf."""
    if base == -math.inf:
        v = FADER_FLOOR_DB if delta_db > 0 else -math.inf
    else:
        v = base + delta_db
        if p.lo == -math.inf and v < FADER_FLOOR_DB:
            v = -math.inf
    return clamp(p, v)
