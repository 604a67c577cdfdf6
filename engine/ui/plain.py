"""`--ui plain` and `--stats-json`: a status line per second, a JSON object per second.

Both read the dict `LiveEngine.snapshot()` returns (see `engine/ui/__init__.py` for
its keys); neither imports rich. All of this runs on the control thread (the one
running `run_live`), never on the audio thread. The formatting helpers here are
shared with the meter bridge.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

from ..errors import LivemixError

NONE = "-"      # how an unknown value (None, NaN) is shown


# -- formatting helpers --------------------------------------------------------------
def fmt(value, spec: str = ".1f") -> str:
    """A number, "-inf"/"+inf" for infinities, "-" for None or NaN; a width in
    ``spec`` ("6.1f") pads those too, so columns stay put."""
    width = int(spec.split(".")[0] or 0) if spec[:1].isdigit() else 0
    if value is None or math.isnan(float(value)):
        return NONE.rjust(width)
    value = float(value)
    if math.isinf(value):
        return ("-inf" if value < 0 else "+inf").rjust(width)
    return format(value, spec)


def pan_text(pan) -> str:
    """Pan -1..1 as "L100" .. "C" .. "R100" (percent, rounded)."""
    if pan is None or math.isnan(float(pan)):
        return NONE
    n = round(abs(float(pan)) * 100)
    if n == 0:
        return "C"
    return f"{'L' if pan < 0 else 'R'}{n}"


def human_size(n) -> str:
    """A byte count in decimal units: "512 B", "14.2 MB", "1.3 GB"."""
    if n is None:
        return NONE
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def clock_time(seconds) -> str:
    """Seconds as "m:ss" or "h:mm:ss"."""
    if seconds is None:
        return NONE
    s = int(max(0.0, float(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def controller_info(surface) -> dict | None:
    """The snapshot's "controller" entry for a `controllers.surface.Surface`
    (or None): {"port", "connected", "last"}. Reads plain attributes only."""
    if surface is None:
        return None
    st = surface.stats
    return {"port": getattr(surface.port, "port_name", None) or "MIDI",
            "connected": bool(st.connected), "last": st.last_message or None}


def with_controller(snapshot: dict, surface) -> dict:
    """The snapshot with its "controller" entry filled from ``surface`` when the
    engine left it None (the engine does not know the surface). Modifies and
    returns ``snapshot``."""
    if surface is not None and not snapshot.get("controller"):
        snapshot["controller"] = controller_info(surface)
    return snapshot


def controller_text(ctl: dict | None) -> str:
    """"  midi B0 07 64" / "  MIDI GONE" / "" (no controller), as `--ui plain` shows it."""
    if not ctl:
        return ""
    if not ctl.get("connected", True):
        return "  MIDI GONE"
    return f"  midi {ctl.get('last') or NONE}"


# -- --ui plain -----------------------------------------------------------------------
def plain_line(snapshot: dict) -> str:
    """One status line (the caller prints one per second): time s, load max %,
    xruns, dropped frames, underruns, master sample peak dBFS (since the previous
    snapshot), true peak dBTP (max since start), momentary / short-term /
    integrated LUFS, then REC, DEVICE LOST and the controller when they apply."""
    e = snapshot.get("engine") or {}
    m = snapshot.get("master") or {}
    load_max = e.get("load_max")
    return (f"{fmt(snapshot.get('time_s'), '7.1f')} s  "
            f"load max {fmt(None if load_max is None else load_max * 100, '5.1f')} %  "
            f"xruns {e.get('xruns', 0)}  dropped {e.get('dropped_frames', 0)}  "
            f"underruns {e.get('underruns', 0)}  "
            f"peak {fmt(m.get('peak_dbfs'), '6.1f')} dBFS  "
            f"TP {fmt(m.get('true_peak_dbtp'), '5.1f')} dBTP  "
            f"M {fmt(m.get('momentary_lufs'))} S {fmt(m.get('short_term_lufs'))} "
            f"I {fmt(m.get('integrated_lufs'))} LUFS"
            + ("  REC" if e.get("recording") else "")
            + ("  DEVICE LOST" if e.get("device_lost") else "")
            + controller_text(snapshot.get("controller")))


# -- --stats-json FILE ----------------------------------------------------------------
def json_safe(value):
    """A copy of ``value`` that `json.dumps(allow_nan=False)` accepts: infinities and
    NaN become None, numpy scalars plain numbers, tuples lists, paths strings."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and not isinstance(value, (int, float)):
        value = value.item()                # numpy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (int, bool, str)) or value is None:
        return value                        # after .item()
    return str(value)


class StatsJson:
    """Appends one JSON object per `write` to ``path`` (one line each, flushed), for
    external monitoring. The object is the snapshot plus "wall_time" (Unix seconds);
    -inf/NaN are written as null. Opening or writing failing raises a one-line
    LivemixError. Control thread."""

    def __init__(self, path):
        self.path = Path(path)
        try:
            self._f = open(self.path, "a", encoding="utf-8")
        except OSError as e:
            raise LivemixError(f"--stats-json {self.path}: cannot open for appending "
                               f"({e.strerror or e})") from None
        self.lines = 0

    def write(self, snapshot: dict) -> None:
        obj = json_safe(snapshot)
        obj["wall_time"] = round(time.time(), 3)
        line = json.dumps(obj, allow_nan=False, separators=(",", ":"))
        try:
            self._f.write(line + "\n")
            self._f.flush()
        except (OSError, ValueError) as e:
            raise LivemixError(f"--stats-json {self.path}: cannot write "
                               f"({getattr(e, 'strerror', None) or e})") from None
        self.lines += 1

    def close(self) -> None:
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
