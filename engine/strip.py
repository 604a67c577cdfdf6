"""The channel strip: its session schema, validation, and live parameters.

Per track, in this order, each stage optional and off unless present:
denoise -> hpf -> gate -> eq -> comp -> fader / mute / solo -> pan -> ducking.
A track's strip is written as sub-tables of the track (``[tracks.hpf]``,
``[tracks.gate]``, ``[[tracks.eq]]`` up to four, ``[tracks.comp]``) or inline
tables, plus ``denoise = true``. Units: Hz, dB, ms; ranges as the desks give them.

``PARAMS`` names every parameter a running engine can change (the command API's
``set(track, "hpf_freq", 120.0)``): the stages' switches (1 = in, 0 = bypassed)
and their continuous values. What a stage *is* (the filter slope, a band's type,
the compressor's detector and key) is fixed by the session. The kernels live in
``engine.dsp.strip``; this module is the control side. Control threads.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

HPF_SLOPES = (12, 18, 24)
EQ_TYPES = ("peak", "low-shelf", "high-shelf", "low-cut", "high-cut")
EQ_BANDS = 4
DETECTORS = ("peak", "rms")


@dataclass(frozen=True)
class Hpf:
    freq_hz: float = 80.0      # -3 dB point, 20 .. 400 Hz
    slope: int = 12            # 12 | 18 | 24 dB/octave (Butterworth)


@dataclass(frozen=True)
class Gate:
    threshold_db: float = -45.0   # opens above this, dBFS, -80 .. 0
    hysteresis_db: float = 6.0    # closes at threshold - hysteresis, 0 .. 20
    range_db: float = 40.0        # attenuation when closed, 0 .. 80 (inf: mute)
    ratio: float = 0.0            # 0: a gate; 1.5 .. 10: a downward expander below threshold
    attack_ms: float = 1.0        # 0.1 .. 120: opening
    hold_ms: float = 100.0        # 0 .. 2000: open this long after the level falls
    release_ms: float = 150.0     # 5 .. 4000: closing


@dataclass(frozen=True)
class EqBand:
    type: str = "peak"            # peak | low-shelf | high-shelf | low-cut | high-cut
    freq_hz: float = 1000.0       # 20 .. 20000 (and below Nyquist)
    gain_db: float = 0.0          # -15 .. +15 (cuts ignore it)
    q: float = 1.0                # 0.3 .. 10


@dataclass(frozen=True)
class Comp:
    threshold_db: float = -18.0   # -60 .. 0 dBFS
    ratio: float = 3.0            # 1 .. 20, inf: a limiter
    knee_db: float = 6.0          # 0 .. 24, soft knee width
    attack_ms: float = 5.0        # 0.1 .. 500
    release_ms: float = 80.0      # 1 .. 4000
    makeup_db: float = 0.0        # 0 .. 24
    detector: str = "peak"        # peak | rms (10 ms)
    key: str = "self"             # or another track's name: keyed by it (sidechain)


@dataclass(frozen=True)
class Strip:
    denoise: bool = False
    hpf: Hpf | None = None
    gate: Gate | None = None
    eq: tuple[EqBand, ...] = ()
    comp: Comp | None = None

    @property
    def empty(self) -> bool:
        return not (self.denoise or self.hpf or self.gate or self.eq or self.comp)


# --- the live parameters: (name, stage, field, lo, hi, unit) ---------------------------------
# The index of each in PARAMS is its slot in the engine's per-track strip parameter arrays.

@dataclass(frozen=True)
class StripParam:
    name: str
    lo: float
    hi: float
    unit: str                     # "0/1", "Hz", "dB", "ms", ":1", "Q"

    @property
    def switch(self) -> bool:
        return self.unit == "0/1"


def _params() -> tuple:
    p = [StripParam("denoise", 0, 1, "0/1"),
         StripParam("hpf", 0, 1, "0/1"), StripParam("hpf_freq", 20, 400, "Hz"),
         StripParam("gate", 0, 1, "0/1"), StripParam("gate_threshold", -80, 0, "dB"),
         StripParam("gate_hysteresis", 0, 20, "dB"), StripParam("gate_range", 0, math.inf, "dB"),
         StripParam("gate_ratio", 0, 10, ":1"), StripParam("gate_attack", 0.1, 120, "ms"),
         StripParam("gate_hold", 0, 2000, "ms"), StripParam("gate_release", 5, 4000, "ms"),
         StripParam("eq", 0, 1, "0/1")]
    for k in range(1, EQ_BANDS + 1):
        p += [StripParam(f"eq{k}_freq", 20, 20000, "Hz"), StripParam(f"eq{k}_gain", -15, 15, "dB"),
              StripParam(f"eq{k}_q", 0.3, 10, "Q")]
    p += [StripParam("comp", 0, 1, "0/1"), StripParam("comp_threshold", -60, 0, "dB"),
          StripParam("comp_ratio", 1, math.inf, ":1"), StripParam("comp_knee", 0, 24, "dB"),
          StripParam("comp_attack", 0.1, 500, "ms"), StripParam("comp_release", 1, 4000, "ms"),
          StripParam("comp_makeup", 0, 24, "dB")]
    return tuple(p)


PARAMS = _params()
INDEX = {p.name: i for i, p in enumerate(PARAMS)}

# What a control's travel (0 .. 1) means for a value: frequencies and times on a log
# scale, everything else linear; an unbounded end (ratio inf, range inf) at the top.
_CONTROL_HI = {"gate_range": 80.0, "comp_ratio": 20.0}


def _scale(p: StripParam):
    hi = _CONTROL_HI.get(p.name, p.hi)
    log = p.unit in ("Hz", "ms") and p.lo > 0
    return p.lo, hi, log


def strip_value(p: StripParam, pos: float) -> float:
    """A control at ``pos`` (0 .. 1) as the value of ``p`` (a fader or a knob)."""
    lo, hi, log = _scale(p)
    if pos >= 1.0 and p.hi == math.inf:
        return math.inf
    if log:
        return lo * (hi / lo) ** pos
    return lo + (hi - lo) * pos


def strip_position(p: StripParam, value: float) -> float:
    """Where a control stands for ``value`` (0 .. 1): strip_value's inverse."""
    lo, hi, log = _scale(p)
    if value == math.inf:
        return 1.0
    v = min(max(value, lo), hi)
    if log:
        return math.log(v / lo) / math.log(hi / lo)
    return (v - lo) / (hi - lo)


def initial_values(strip: Strip) -> list[float]:
    """The strip's parameters as the session sets them (PARAMS order); a stage the
    session does not have is switched out with its defaults."""
    h, g, c = strip.hpf or Hpf(), strip.gate or Gate(), strip.comp or Comp()
    v = [float(strip.denoise), float(strip.hpf is not None), h.freq_hz,
         float(strip.gate is not None), g.threshold_db, g.hysteresis_db, g.range_db, g.ratio,
         g.attack_ms, g.hold_ms, g.release_ms, float(bool(strip.eq))]
    bands = list(strip.eq) + [EqBand()] * (EQ_BANDS - len(strip.eq))
    for b in bands:
        v += [b.freq_hz, b.gain_db, b.q]
    v += [float(strip.comp is not None), c.threshold_db, c.ratio, c.knee_db, c.attack_ms,
          c.release_ms, c.makeup_db]
    assert len(v) == len(PARAMS)
    return v


# --- parsing ----------------------------------------------------------------------------------

_HPF = ("freq_hz", "slope")
_GATE = ("threshold_db", "hysteresis_db", "range_db", "ratio", "attack_ms", "hold_ms",
         "release_ms")
_EQ = ("type", "freq_hz", "gain_db", "q")
_COMP = ("threshold_db", "ratio", "knee_db", "attack_ms", "release_ms", "makeup_db", "detector",
         "key")
KEYS = ("denoise", "hpf", "gate", "eq", "comp")     # a track's strip keys


def parse_strip(t: dict, err, number, track_names, samplerate: int) -> Strip:
    """A track table's strip. ``err(key, problem)`` builds the one-line SessionError
    naming file, line and key (``key`` dotted: "hpf.freq_hz", "eq[2].q");
    ``number(key, value, lo, hi)`` checks a number the session's way."""
    def table(name, allowed):
        v = t.get(name)
        if v is None:
            return None
        if not isinstance(v, dict):
            raise err(name, f"{v!r} is not a table (write [tracks.{name}] or "
                            f"{name} = {{...}})")
        unknown = [k for k in v if k not in allowed]
        if unknown:
            raise err(f"{name}.{unknown[0]}", f"unknown key (use {', '.join(allowed)})")
        return v

    def choice(key, value, options):
        if value not in options:
            raise err(key, f"{value!r}: use one of {', '.join(map(str, options))}")
        return value

    def inf_or(key, value, lo, hi):
        if isinstance(value, str) and value.strip().lower() == "inf":
            return math.inf
        if isinstance(value, float) and math.isinf(value) and value > 0:
            return math.inf
        return float(number(key, value, lo, hi))

    denoise = t.get("denoise", False)
    if not isinstance(denoise, bool):
        raise err("denoise", f"{denoise!r} is not true or false")
    if denoise and samplerate != 48000:
        raise err("denoise", f"the RNNoise denoiser works at 48 kHz only (the session runs at "
                             f"{samplerate} Hz)")
    if denoise:
        from .dsp.denoise import library_problem
        why = library_problem()
        if why:
            raise err("denoise", f"the denoiser is not available here: {why} "
                                 "(pip install 'livemix[denoise]')")
    hpf = None
    v = table("hpf", _HPF)
    if v is not None:
        hpf = Hpf(freq_hz=float(number("hpf.freq_hz", v.get("freq_hz", 80.0), 20.0, 400.0)),
                  slope=choice("hpf.slope", v.get("slope", 12), HPF_SLOPES))
    gate = None
    v = table("gate", _GATE)
    if v is not None:
        ratio = float(number("gate.ratio", v.get("ratio", 0.0), 0.0, 10.0))
        if 0.0 < ratio < 1.5:
            raise err("gate.ratio", f"{ratio}: 0 for a gate, or 1.5 .. 10 for an expander")
        gate = Gate(threshold_db=float(number("gate.threshold_db", v.get("threshold_db", -45.0),
                                              -80.0, 0.0)),
                    hysteresis_db=float(number("gate.hysteresis_db",
                                               v.get("hysteresis_db", 6.0), 0.0, 20.0)),
                    range_db=inf_or("gate.range_db", v.get("range_db", 40.0), 0.0, 80.0),
                    ratio=ratio,
                    attack_ms=float(number("gate.attack_ms", v.get("attack_ms", 1.0), 0.1, 120.0)),
                    hold_ms=float(number("gate.hold_ms", v.get("hold_ms", 100.0), 0.0, 2000.0)),
                    release_ms=float(number("gate.release_ms", v.get("release_ms", 150.0),
                                            5.0, 4000.0)))
    eq = []
    raw = t.get("eq")
    if raw is not None:
        if isinstance(raw, dict):
            raw = [raw]
        if not isinstance(raw, list) or not all(isinstance(b, dict) for b in raw):
            raise err("eq", f"{raw!r}: write [[tracks.eq]] tables (up to {EQ_BANDS} bands)")
        if len(raw) > EQ_BANDS:
            raise err("eq", f"{len(raw)} bands: at most {EQ_BANDS}")
        nyquist = samplerate / 2
        for k, b in enumerate(raw):
            name = f"eq[{k + 1}]"
            unknown = [x for x in b if x not in _EQ]
            if unknown:
                raise err(f"{name}.{unknown[0]}", f"unknown key (use {', '.join(_EQ)})")
            kind = choice(f"{name}.type", b.get("type", "peak"), EQ_TYPES)
            f = float(number(f"{name}.freq_hz", b.get("freq_hz", 1000.0), 20.0, 20000.0))
            if f >= 0.95 * nyquist:
                raise err(f"{name}.freq_hz", f"{f} Hz is too close to the session's Nyquist "
                                             f"frequency ({nyquist:.0f} Hz)")
            eq.append(EqBand(type=kind, freq_hz=f,
                             gain_db=float(number(f"{name}.gain_db", b.get("gain_db", 0.0),
                                                  -15.0, 15.0)),
                             q=float(number(f"{name}.q", b.get("q", 1.0), 0.3, 10.0))))
    comp = None
    v = table("comp", _COMP)
    if v is not None:
        key = v.get("key", "self")
        if not isinstance(key, str) or (key != "self" and key not in track_names):
            raise err("comp.key", f"{key!r}: \"self\" or a track's name "
                                  f"({', '.join(track_names)})")
        if key == t.get("name"):
            key = "self"
        comp = Comp(threshold_db=float(number("comp.threshold_db", v.get("threshold_db", -18.0),
                                              -60.0, 0.0)),
                    ratio=inf_or("comp.ratio", v.get("ratio", 3.0), 1.0, 20.0),
                    knee_db=float(number("comp.knee_db", v.get("knee_db", 6.0), 0.0, 24.0)),
                    attack_ms=float(number("comp.attack_ms", v.get("attack_ms", 5.0), 0.1, 500.0)),
                    release_ms=float(number("comp.release_ms", v.get("release_ms", 80.0),
                                            1.0, 4000.0)),
                    makeup_db=float(number("comp.makeup_db", v.get("makeup_db", 0.0), 0.0, 24.0)),
                    detector=choice("comp.detector", v.get("detector", "peak"), DETECTORS),
                    key=key)
    return Strip(denoise=denoise, hpf=hpf, gate=gate, eq=tuple(eq), comp=comp)
