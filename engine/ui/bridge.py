"""The live meter bridge (`--ui tui`): a rich display of `LiveEngine.snapshot()`.

Threads: everything here runs on one control thread (the one calling
`MeterBridge.run`, normally the main thread). It reads the engine only through
`engine.snapshot()` (a copy the audio thread published; cheap, never blocks the
audio thread) and changes it only through `engine.set()` and
`engine.toggle_record()`, the same calls a MIDI controller makes.

Meters: bars span -60..0 dBFS (sub-cell resolution with eighth blocks; green
below -18, yellow below -6, red above). The snapshot's peaks cover only the time
since the previous snapshot, so the UI keeps its own ballistics (`PeakHolds`): the
bar falls at 12 dB/s, the hold marker stays 1.5 s then falls at 20 dB/s, and CLIP
lights for 2 s after any peak >= -0.1 dBFS.
"""
from __future__ import annotations

import math
import os
import select
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from ..errors import LivemixError
from .plain import NONE, clock_time, fmt, human_size, pan_text, with_controller

NEG_INF = float("-inf")
BAR_LO_DB, BAR_HI_DB = -60.0, 0.0
EIGHTHS = " ▏▎▍▌▋▊▉"
FIXED_LINES = 17         # lines of the bridge besides the tracks (fits the terminal)
MESSAGE_S = 5.0          # how long an info line stays; errors stay twice as long


def _db(value) -> float:
    """A dB value from the snapshot as a float (None/NaN -> -inf)."""
    if value is None:
        return NEG_INF
    value = float(value)
    return NEG_INF if math.isnan(value) else value


# -- meter ballistics -----------------------------------------------------------------
@dataclass
class Meter:
    level: float = NEG_INF       # the bar, dB: the peak, released at release_db_per_s
    hold: float = NEG_INF        # the hold marker, dB
    held_at: float = 0.0         # when the hold was last set (clock seconds)
    clip_until: float = NEG_INF  # CLIP shows until then (clock seconds)


class PeakHolds:
    """Peak meters with hold and clip, kept by the UI across snapshots.

    Keys: ("track", name) for tracks, "master", "master_l", "master_r".
    ``update(snapshot)`` folds one snapshot's peaks (dBFS since the previous
    snapshot) in; `render` calls it once per snapshot.
    """

    def __init__(self, hold_s: float = 1.5, fall_db_per_s: float = 20.0,
                 release_db_per_s: float = 12.0, clip_dbfs: float = -0.1,
                 clip_hold_s: float = 2.0, clock=time.monotonic):
        self.hold_s = hold_s
        self.fall_db_per_s = fall_db_per_s
        self.release_db_per_s = release_db_per_s
        self.clip_dbfs = clip_dbfs
        self.clip_hold_s = clip_hold_s
        self.clock = clock
        self.meters: dict = {}
        self.now: float | None = None     # the time of the last update

    def update(self, snapshot: dict, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        dt = 0.0 if self.now is None else max(0.0, now - self.now)
        for t in snapshot.get("tracks") or []:
            self._feed(("track", t.get("name")), t.get("peak_dbfs"), now, dt)
        m = snapshot.get("master") or {}
        for key, field in (("master", "peak_dbfs"), ("master_l", "peak_l_dbfs"),
                           ("master_r", "peak_r_dbfs")):
            self._feed(key, m.get(field), now, dt)
        self.now = now

    def _feed(self, key, peak, now: float, dt: float) -> None:
        m = self.meters.get(key)
        if m is None:
            m = self.meters[key] = Meter()
        p = _db(peak)
        m.level = max(p, m.level - self.release_db_per_s * dt)
        if p >= m.hold:
            m.hold, m.held_at = p, now
        elif now - m.held_at > self.hold_s:
            m.hold = max(m.level, m.hold - self.fall_db_per_s * dt)
        if p >= self.clip_dbfs:
            m.clip_until = now + self.clip_hold_s

    def get(self, key) -> Meter:
        return self.meters.get(key) or Meter()

    def clipping(self, key) -> bool:
        return self.now is not None and self.get(key).clip_until > self.now


# -- drawing --------------------------------------------------------------------------
def _cells(db: float, width: int) -> float:
    db = min(max(db, BAR_LO_DB), BAR_HI_DB)
    return (db - BAR_LO_DB) / (BAR_HI_DB - BAR_LO_DB) * width


def _zone(db: float) -> str:
    return "green" if db < -18 else "yellow" if db < -6 else "red"


def bar(level_db: float, hold_db: float, width: int) -> Text:
    """A horizontal meter of ``width`` cells over -60..0 dB with a hold marker."""
    c = _cells(_db(level_db), width)
    full, part = int(c), int((c - int(c)) * 8)
    hold_db = _db(hold_db)
    hold_i = min(width - 1, int(_cells(hold_db, width))) if hold_db > BAR_LO_DB else -1
    text = Text(no_wrap=True, overflow="crop")
    run, run_style = "", None                # consecutive cells of one style: one span
    for i in range(width):
        style = _zone(BAR_LO_DB + (i + 0.5) / width * (BAR_HI_DB - BAR_LO_DB))
        if i == hold_i and i >= full:
            ch, style = "▌", f"bold {style}"
        elif i < full:
            ch = "█"
        elif i == full and part:
            ch = EIGHTHS[part]
        else:
            ch, style = "·", "grey35"
        if style != run_style and run:
            text.append(run, style=run_style)
            run = ""
        run, run_style = run + ch, style
    text.append(run, style=run_style)
    return text


def scale(width: int) -> str:
    """The dB scale above the bars: "-60   -48 ... 0"."""
    chars = [" "] * width
    end = -1
    for db in (-60, -48, -36, -24, -12):
        label = str(db)
        pos = int(_cells(db, width))
        if pos > end and pos + len(label) < width - 1:
            chars[pos:pos + len(label)] = label
            end = pos + len(label)
    chars[width - 1] = "0"
    return "".join(chars)


def _lufs_distance(m: dict) -> Text:
    """"(-1.2 LU from web -14)" when the session has a target, else empty."""
    target = m.get("target")
    if not target:
        return Text()
    name, lufs = target.get("name", "target"), target.get("lufs")
    i = _db(m.get("integrated_lufs"))
    if lufs is None:
        return Text(f" (target {name})", style="dim")
    if math.isinf(i):
        return Text(f" (not measured yet; {name} {fmt(lufs, 'g')})", style="dim")
    d = i - float(lufs)
    style = "green" if abs(d) <= 1.0 else "yellow" if abs(d) <= 3.0 else "red"
    return Text(f" ({d:+.1f} LU from {name} {fmt(lufs, 'g')})", style=style)


def _header(snap: dict) -> Text:
    e = snap.get("engine") or {}
    t = Text.assemble(("livemix", "bold"), f"  {fmt(snap.get('time_s'), '.1f')} s  ",
                      (f"{e.get('backend') or NONE} · {e.get('device') or NONE}", "cyan"), "  ")
    if e.get("recording"):
        take = e.get("take")
        t.append("● REC", style="bold red")
        t.append(f" {clock_time(e.get('take_s'))}  {human_size(e.get('take_bytes'))}"
                 + (f"  {Path(take).name}" if take else ""))
    else:
        t.append("not recording", style="dim")
    return t


NAME_W = 14
CLIP = ("CLIP", "bold white on red")


def _row(sel: str, name, fader: str, pan: str, mute, solo, meter: Text, peak: str, flag,
         tp, duck, gate=("", ""), comp=("", ""), style: str | None = None) -> Text:
    """One fixed-width meter line. Plain Text lines, not a rich Table: a Table's
    layout costs ~2 ms a track, too slow for 32 tracks at 20 frames a second."""
    if not isinstance(name, tuple):
        name = (name, "")
    label = name[0] if len(name[0]) <= NAME_W else name[0][:NAME_W - 1] + "…"
    flag = flag or ("", "")
    tp = tp if isinstance(tp, tuple) else (tp, "")
    duck = duck if isinstance(duck, tuple) else (duck, "")
    line = Text.assemble(
        f"{sel:1} ", (f"{label:<{NAME_W}}", name[1]), f" {fader:>8} {pan:>4} ",
        mute, " ", solo, " ", meter, f" {peak:>6} ", (f"{flag[0]:4}", flag[1]), " ",
        (f"{tp[0]:>6}", tp[1]), " ", (f"{duck[0]:>8}", duck[1]), " ",
        (f"{gate[0]:>9}", gate[1]), " ", (f"{comp[0]:>8}", comp[1]),
        no_wrap=True, overflow="crop")
    if style:
        line.stylize(style)
    return line


def _gr_cell(gr, style: str) -> tuple[str, str]:
    """Gain reduction (dB, <= 0): the figure when it reduces, a dot when idle, blank when
    the track has no such stage (None)."""
    if gr is None:
        return "", ""
    return (f"{fmt(gr)} dB", style) if _db(gr) < -0.05 else (NONE, "dim")


def _gate_cell(t: dict) -> tuple[str, str]:
    """The gate: "open" (green) or its attenuation when closed; blank without a gate."""
    if t.get("gate_open") is None:
        return "", ""
    if t["gate_open"] and _db(t.get("gate_gr_db")) > -0.05:
        return "open", "green"
    return _gr_cell(t.get("gate_gr_db"), "red" if not t["gate_open"] else "green")


def _meters(snap: dict, selected: int, holds: PeakHolds, bar_width: int,
            max_tracks: int | None) -> list[Text]:
    """The header, a line per track (at most ``max_tracks``: a window around the
    selected one), then master L/R (or one master line) and the master true peak."""
    head = _row("", ("track", "bold"), "fader", "pan", ("M", "bold"), ("S", "bold"),
                Text(scale(bar_width), style="bold"), "peak", None, "TP", "duck",
                ("gate", ""), ("comp", ""), style="bold")
    lines = [head, Text("─" * head.cell_len, style="dim", no_wrap=True, overflow="crop")]
    off = ("·", "dim")
    tracks = snap.get("tracks") or []
    any_solo = any(t.get("solo") for t in tracks)
    first, last = 0, len(tracks)
    if max_tracks is not None and len(tracks) > max(1, max_tracks):
        shown = max(1, max_tracks)
        first = min(max(selected - shown // 2, 0), len(tracks) - shown)
        last = first + shown
    for i, t in enumerate(tracks[first:last], start=first):
        key = ("track", t.get("name"))
        meter = holds.get(key)
        silent = t.get("mute") or (any_solo and not t.get("solo"))
        tp, gr = t.get("tp_dbtp"), t.get("duck_gr_db")
        lines.append(_row(
            "▶" if i == selected else "", (str(t.get("name")), "dim" if silent else ""),
            f"{fmt(t.get('gain_db'))} dB", pan_text(t.get("pan")),
            ("M", "bold black on yellow") if t.get("mute") else off,
            ("S", "bold black on green") if t.get("solo") else off,
            bar(meter.level, meter.hold, bar_width), fmt(meter.hold),
            CLIP if holds.clipping(key) else None,
            (fmt(tp), "red" if _db(tp) > 0 else ""),
            (f"{fmt(gr)} dB", "cyan") if gr is not None and _db(gr) < -0.05 else (NONE, "dim"),
            _gate_cell(t), _gr_cell(t.get("comp_gr_db"), "yellow"),
            style="on grey19" if i == selected else None))

    m = snap.get("master") or {}
    lines.append(Text(f"  tracks {first + 1}-{last} of {len(tracks)} (arrows scroll)"
                      if last - first < len(tracks) else "", style="dim"))
    gain = f"{fmt(m.get('gain_db'))} dB"
    rows = ([("master L", "master_l"), ("master R", "master_r")]
            if m.get("peak_l_dbfs") is not None or m.get("peak_r_dbfs") is not None
            else [("master", "master")])
    for k, (label, key) in enumerate(rows):
        meter = holds.get(key)
        lines.append(_row("", (label, "bold"), gain if k == 0 else "", "", " ", " ",
                          bar(meter.level, meter.hold, bar_width), fmt(meter.hold),
                          CLIP if holds.clipping(key) else None, "", ""))
    tp = _db(m.get("true_peak_dbtp"))
    target = m.get("target") or {}
    limit = target.get("true_peak_dbtp") if target else None
    over = tp > (0.0 if limit is None else float(limit))
    lines.append(_row("", ("true peak", "bold"), "", "", " ", " ", bar(tp, tp, bar_width), "",
                      ("OVER", "bold white on red") if over else None,
                      (fmt(m.get("true_peak_dbtp")), "red" if over else ""), ""))
    return lines


def _loudness(m: dict) -> Text:
    t = Text.assemble(("loudness  ", "bold"),
                      f"M {fmt(m.get('momentary_lufs'))}  S {fmt(m.get('short_term_lufs'))}  "
                      f"I {fmt(m.get('integrated_lufs'))} LUFS")
    t.append_text(_lufs_distance(m))
    t.append(f"  LRA {fmt(m.get('lra_lu'))} LU  max M {fmt(m.get('momentary_max_lufs'))} "
             f"S {fmt(m.get('short_term_max_lufs'))} LUFS")
    return t


def _ceiling(m: dict) -> Text:
    mode = m.get("ceiling_mode") or "sample-peak"
    unit = "dBTP" if mode == "true-peak" else "dBFS"
    hits = int(m.get("ceiling_hits") or 0)
    t = Text.assemble(("ceiling   ", "bold"), f"{fmt(m.get('ceiling_db'))} {unit} ({mode})  ",
                      (f"hits {hits}", "yellow" if hits else ""),
                      f"  sample peak max {fmt(m.get('sample_peak_max_dbfs'))} dBFS"
                      f"  true peak max {fmt(m.get('true_peak_dbtp'))} dBTP")
    target = m.get("target")
    if target and target.get("true_peak_dbtp") is not None:
        limit = float(target["true_peak_dbtp"])
        over = _db(m.get("true_peak_dbtp")) > limit
        t.append(f" ({'over' if over else 'within'} {target.get('name')} {fmt(limit, 'g')} dBTP)",
                 style="bold red" if over else "green")
    return t


def _engine_line(e: dict) -> Text:
    load, load_max = e.get("load"), e.get("load_max")
    lm = load_max or 0.0
    xruns, dropped, under = (int(e.get(k) or 0) for k in ("xruns", "dropped_frames", "underruns"))
    lat = e.get("latency_ms")
    return Text.assemble(
        ("engine    ", "bold"),
        (f"load {fmt(None if load is None else load * 100, '.0f')} % / "
         f"max {fmt(None if load_max is None else lm * 100, '.0f')} %",
         "red" if lm >= 0.9 else "yellow" if lm >= 0.7 else ""),
        "  ", (f"xruns {xruns}", "bold red" if xruns else ""),
        "  ", (f"dropped {dropped}", "bold red" if dropped else ""),
        "  ", (f"underruns {under}", "yellow" if under else ""),
        f"  latency {NONE if lat is None else fmt(lat) + ' ms'}")


def _controller_line(ctl: dict | None) -> Text:
    if not ctl:
        return Text("controller: none", style="dim")
    t = Text.assemble(("controller ", "bold"), f"{ctl.get('port') or 'MIDI'}  ")
    if not ctl.get("connected", True):
        t.append("MIDI GONE", style="bold red")
    else:
        t.append(f"last {ctl.get('last') or NONE}")
    return t


HELP = "keys: q quit · r take on/off · m mute · s solo · ↑/↓ or k/j select track"


def render(snapshot: dict, selected: int, holds: PeakHolds, *, message=None,
           keys: bool = True, bar_width: int = 30, max_tracks: int | None = None,
           now: float | None = None):
    """The meter bridge for one snapshot, as a rich renderable.

    selected   index of the highlighted track (keys m/s act on it)
    holds      the UI's peak meters; this call feeds it the snapshot's peaks, so
               call it once per snapshot (``now``: clock seconds, default now)
    message    a str or rich Text shown above the key help (errors, confirmations)
    keys       False: say that keys are off (stdin is not a terminal)
    bar_width  meter width in cells (-60..0 dBFS)
    max_tracks show at most this many track lines, around the selected one
    """
    holds.update(snapshot, now)
    e = snapshot.get("engine") or {}
    m = snapshot.get("master") or {}
    parts = [_header(snapshot)]
    if e.get("device_lost"):
        parts.append(Text("DEVICE LOST: the audio device is gone; the take so far is kept",
                          style="bold white on red"))
    parts += _meters(snapshot, selected, holds, bar_width, max_tracks)
    parts += [_loudness(m), _ceiling(m),
              _engine_line(e), _controller_line(snapshot.get("controller"))]
    if message:
        parts.append(message if isinstance(message, Text) else Text(str(message)))
    parts.append(Text(HELP if keys else "keys off: stdin is not a terminal (Ctrl-C stops)",
                      style="dim"))
    return Group(*parts)


# -- keys -----------------------------------------------------------------------------
_SEQUENCES = {b"\x1b[A": "up", b"\x1b[B": "down", b"\x1bOA": "up", b"\x1bOB": "down"}
_LETTERS = {"k": "up", "j": "down"}


def parse_keys(data: bytes) -> list[str]:
    """Key names from bytes read off a cbreak terminal: letters lower-cased ("q",
    "r", "m", "s", ...), arrows and k/j as "up"/"down"; other escape sequences
    are dropped."""
    keys, i = [], 0
    while i < len(data):
        if data[i] == 0x1B:
            seq = data[i:i + 3]
            if seq in _SEQUENCES:
                keys.append(_SEQUENCES[seq])
                i += 3
                continue
            j = i + 1                       # skip ESC [ params final (or a lone ESC)
            if j < len(data) and data[j] in b"[O":
                j += 1
                while j < len(data) and not 0x40 <= data[j] <= 0x7E:
                    j += 1
                j += 1
            i = j
            continue
        ch = chr(data[i]).lower()
        keys.append(_LETTERS.get(ch, ch))
        i += 1
    return keys


class _TerminalKeys:
    """stdin in cbreak mode (no echo, no line buffering; Ctrl-C still signals) for
    the duration of a `with`, restored on exit. ``active`` is False, and ``read``
    unused, when stdin is not the foreground terminal."""

    def __init__(self, stream=None):
        self.stream = stream
        self.fd = None
        self._saved = None

    @property
    def active(self) -> bool:
        return self.fd is not None

    def __enter__(self):
        try:
            import termios
            import tty
        except ImportError:                  # not a POSIX terminal
            return self
        stream = self.stream if self.stream is not None else sys.stdin
        try:
            fd = stream.fileno()
            if not os.isatty(fd):
                return self                  # a pipe or a file
            try:
                if os.tcgetpgrp(fd) != os.getpgrp():
                    return self              # in the background: tcsetattr would stop us
            except OSError:
                pass                         # a terminal that is not ours to control
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd, termios.TCSANOW)
        except (AttributeError, OSError, ValueError, termios.error):
            return self
        self.fd = fd
        return self

    def read(self, timeout: float) -> bytes:
        """The bytes typed within ``timeout`` seconds (b"" if none)."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return b""
        data = os.read(self.fd, 64)
        if not data:                         # EOF: no more keys
            self.__exit__()
        return data

    def __exit__(self, *exc):
        if self._saved is not None:
            import termios
            try:
                termios.tcsetattr(self.fd, termios.TCSADRAIN, self._saved)
            except termios.error:
                pass
            self._saved = None
        self.fd = None


# -- the display loop -----------------------------------------------------------------
class MeterBridge:
    """The `--ui tui` loop: a rich Live display of ``engine.snapshot()`` refreshed
    ``refresh_hz`` times a second, with keys from the terminal.

    engine        anything with snapshot(), set(track, param, value), toggle_record()
    surface       a controllers Surface, shown when the snapshot has no "controller"
    console       a rich Console (default: stdout)
    every_second  optional callable(snapshot), called on this thread with one
                  snapshot a second (e.g. `StatsJson.write`, so there is a single
                  snapshot reader); a LivemixError from it shows in the message line
    stdin         where keys come from (default sys.stdin); keys are off when it
                  is not the foreground terminal
    All methods run on the thread calling `run` (the main thread in `run_live`).
    """

    def __init__(self, engine, surface=None, refresh_hz: float = 20, console=None, *,
                 every_second=None, stdin=None):
        self.engine = engine
        self.surface = surface
        self.refresh_hz = max(1.0, float(refresh_hz))
        self.console = console if console is not None else Console()
        self.every_second = every_second
        self.stdin = stdin
        self.holds = PeakHolds()
        self.selected = 0
        self.snapshot: dict | None = None     # the last one shown
        self.refreshes = 0
        self.keys_active = False
        self.stop_event = threading.Event()   # run() replaces it with its ``stop``
        self._message: tuple[Text, float] | None = None
        self._next_second: float | None = None

    # -- messages ---------------------------------------------------------------------
    def say(self, text: str, style: str = "green", seconds: float = MESSAGE_S) -> None:
        self._message = (Text(text, style=style), time.monotonic() + seconds)

    def error(self, text: str) -> None:
        self.say(text, style="bold red", seconds=2 * MESSAGE_S)

    @property
    def message(self) -> Text | None:
        if self._message is None or time.monotonic() > self._message[1]:
            return None
        return self._message[0]

    def _call(self, fn, *args):
        """(True, result) or (False, None) with the error in the message line."""
        try:
            return True, fn(*args)
        except LivemixError as e:
            self.error(str(e))
        except Exception as e:               # a live show keeps going; say what failed
            self.error(f"{type(e).__name__}: {e}")
        return False, None

    # -- one refresh --------------------------------------------------------------------
    def frame(self):
        """Take a snapshot and render it (one refresh)."""
        ok, snap = self._call(self.engine.snapshot)
        if not ok or snap is None:
            snap = self.snapshot
            if snap is None:
                return Text("livemix: waiting for the engine ...")
        with_controller(snap, self.surface)
        self.snapshot = snap
        n = len(snap.get("tracks") or [])
        self.selected = min(max(self.selected, 0), max(n - 1, 0))
        now = time.monotonic()
        if self.every_second is not None and ok and (
                self._next_second is None or now >= self._next_second):
            nxt = (self._next_second or now) + 1.0
            self._next_second = nxt if nxt > now else now + 1.0
            self._call(self.every_second, snap)
        width, height = self.console.size
        return render(snap, self.selected, self.holds, message=self.message,
                      keys=self.keys_active, bar_width=max(10, min(40, width - 80)),
                      max_tracks=max(1, height - FIXED_LINES), now=now)

    # -- keys ---------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[str]:
        """Act on the bytes read from the terminal; returns the keys seen."""
        keys = parse_keys(data)
        for key in keys:
            self.on_key(key)
        return keys

    def on_key(self, key: str) -> None:
        """q quit (sets the stop event), r toggle a take, m/s toggle mute/solo of the
        selected track, up/down select. Other keys are ignored."""
        if key == "q":
            self.stop_event.set()
            self.say("stopping ...")
        elif key == "r":
            soon = getattr(self.engine, "toggle_record_soon", None)
            if soon is None:                     # an engine that toggles at once
                ok, on = self._call(self.engine.toggle_record)
                done = "take finished"
            else:                                # the UI never waits for a take to finish
                ok, snap = self._call(self.engine.snapshot)
                on = ok and not ((snap or {}).get("engine") or {}).get("recording")
                ok, _ = self._call(soon)
                done = "finishing the take"
            if ok:
                self.say("recording a new take" if on else done,
                         style="bold red" if on else "green")
        elif key in ("up", "down"):
            n = len((self.snapshot or {}).get("tracks") or [])
            step = -1 if key == "up" else 1
            self.selected = min(max(self.selected + step, 0), max(n - 1, 0))
        elif key in ("m", "s"):
            tracks = (self.snapshot or {}).get("tracks") or []
            if not tracks:
                self.error("no track to mute or solo yet")
                return
            t = tracks[min(self.selected, len(tracks) - 1)]
            param = "mute" if key == "m" else "solo"
            new = not t.get(param)
            ok, _ = self._call(self.engine.set, t["name"], param, 1.0 if new else 0.0)
            if ok:
                t[param] = new       # until the next snapshot: a quick second press undoes
                self.say(f"{t['name']}: {param} {'on' if new else 'off'}")

    # -- the loop -----------------------------------------------------------------------
    def run(self, stop: threading.Event, duration: float | None = None) -> None:
        """Show the bridge until ``stop`` is set (by q, a signal handler, ...) or
        ``duration`` seconds pass. The terminal is restored on any exit."""
        self.stop_event = stop
        period = 1.0 / self.refresh_hz
        t0 = time.monotonic()
        end = None if duration is None else t0 + duration
        with _TerminalKeys(self.stdin) as keys, \
                Live(Text(""), console=self.console, auto_refresh=False,
                     transient=False) as live:
            next_tick = t0
            dirty = False
            while not stop.is_set():
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                if now >= next_tick or dirty:
                    self.keys_active = keys.active
                    live.update(self.frame(), refresh=True)
                    self.refreshes += 1
                    dirty = False
                    if now >= next_tick:
                        next_tick += period
                        if next_tick <= now:      # fell behind: do not catch up in a burst
                            next_tick = now + period
                wait = next_tick - time.monotonic()
                if end is not None:
                    wait = min(wait, end - time.monotonic())
                wait = max(0.0, wait)
                if keys.active:
                    data = keys.read(wait)
                    if data:
                        self.feed(data)
                        dirty = True
                else:
                    stop.wait(wait)
