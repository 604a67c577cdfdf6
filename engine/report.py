"""Take reports: one PNG per take a person reads at a glance (``<take>.png``).

``write_report(sidecar)`` reads a take's sidecar (``engine.recorder``) and its
master audio and draws, 1600 x 1000 px, over a shared mm:ss time axis:

- a title: take name, duration, integrated loudness, loudness range, true
  peak, and xruns / dropped frames / underruns (red when any);
- lane 1, the waveform: min/max envelope per pixel column (and its RMS,
  darker), each channel of a stereo take on its own half;
- lane 2, loudness: momentary and short-term LUFS every 100 ms, the target
  line (the sidecar's ``target``, else EBU R128's -23 LUFS dotted, as a
  reference), limiter ceiling hits as ticks along the top;
- lane 3, ducking gain reduction per rule (the sidecar's ``lanes``), then a
  lane per compressed track (its compressor's gain reduction; the first 8, the
  figure growing by COMP_LANE_PX each);
- lane 4, faders: gain per track and master in dB, step lines from the
  automation log (from the session's initial values when the session file is
  still the one recorded, else from each target's first logged change);
- xruns, underruns and dropped frames: red vertical lines across all lanes.

Memory is bounded whatever the take's length: the audio is streamed in chunks
(every master part in order), reduced to one min/max/RMS per column and fed
to the loudness meter kernels (``engine.dsp.meters``), whose 100 ms series
is the only per-take list (36 000 rows an hour).

Every field of the sidecar beyond ``take``, ``samplerate`` and ``files`` is
optional, so older takes still get a report (what is missing says so).

matplotlib is imported only inside ``write_report`` (and drawn on an Agg
canvas, no pyplot, no display): the audio app runs ``python -m engine.report
TAKE.json`` in a subprocess, or imports this module for the CLI without
paying for matplotlib until a report is drawn.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from pathlib import Path

from .errors import LivemixError

WIDTH_PX, HEIGHT_PX, DPI = 1600, 1000, 100
COMP_LANE_PX = 110             # added height per compressed track's lane
MAX_COMP_LANES = 8             # more compressed tracks than this: the first 8 get lanes
COLUMNS = 1600                 # envelope columns (about one per pixel of the lanes)
CHUNK = 1 << 16                # frames read and measured at once
EBU_REFERENCE_LUFS = -23.0
FADER_FLOOR_DB = -60.0         # -inf (and anything lower) is drawn here
AUDIO_EXTS = (".wav", ".w64", ".rf64", ".flac")
RED = "#d62728"
FULL_SCALE = 1.0 - 2.0 ** -15  # |sample| at or above: full scale (PCM_16's largest is 1 - 2^-15)


# --- reading the sidecar ---------------------------------------------------------

def load_sidecar(path) -> dict:
    """The sidecar as a dict; LivemixError naming the file if it is not a take sidecar."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LivemixError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LivemixError(f"{p}: cannot read: {getattr(e, 'strerror', None) or e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise LivemixError(f"{p}: not a take sidecar (invalid JSON: {e})") from None
    if not isinstance(data, dict):
        raise LivemixError(f"{p}: not a take sidecar (not a JSON object)")
    missing = [k for k in ("take", "samplerate", "files") if k not in data]
    if missing:
        raise LivemixError(f"{p}: not a take sidecar (missing {', '.join(missing)})")
    try:
        rate = float(data["samplerate"])
    except (TypeError, ValueError):
        rate = 0.0
    if not rate > 0:
        raise LivemixError(f"{p}: not a take sidecar (samplerate {data['samplerate']!r})")
    files = data["files"]
    if not isinstance(files, list) or not all(isinstance(f, dict) and isinstance(f.get("path"), str)
                                              for f in files):
        raise LivemixError(f"{p}: not a take sidecar (files must be a list of {{path, kind, ...}})")
    if not any(f.get("kind", "master") == "master" for f in files):
        raise LivemixError(f"{p}: the take lists no master audio file")
    return data


def master_paths(sidecar_path, data: dict) -> list[tuple[Path, int | None]]:
    """(path, start_frame or None) of each master part, in order. Missing: LivemixError."""
    base = Path(sidecar_path).parent
    parts = [f for f in data["files"] if f.get("kind", "master") == "master"]
    parts.sort(key=lambda f: (_int(f.get("part"), 1), _int(f.get("start_frame"), 0)))
    out = []
    for f in parts:
        p = Path(f["path"])
        if not p.is_absolute():
            p = base / p
        if not p.is_file():
            raise LivemixError(f"{p}: audio file of take {data['take']} not found")
        start = f.get("start_frame")
        out.append((p, int(start) if isinstance(start, (int, float)) else None))
    return out


def find_sidecar(path) -> Path:
    """The sidecar of TAKE: the .json itself, or the sidecar listing an audio file."""
    p = Path(path)
    if p.suffix.lower() == ".json":
        if not p.is_file():
            raise LivemixError(f"{p}: no such file")
        return p
    if p.suffix.lower() in AUDIO_EXTS:
        if not p.exists():
            raise LivemixError(f"{p}: no such file")
        direct = p.with_suffix(".json")
        if direct.is_file():
            return direct
        # a part or stem file (<take>-part2.wav, <take>.<track>.wav): the sidecar lists it
        for js in sorted(p.parent.glob("*.json"), key=lambda j: -len(j.name)):
            if not p.name.startswith(js.stem):
                continue
            try:
                data = json.loads(js.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(data, dict) and any(isinstance(f, dict) and f.get("path") == p.name
                                              for f in data.get("files") or []):
                return js
        raise LivemixError(f"{p}: no take sidecar (.json) next to it lists this file")
    raise LivemixError(f"{p}: give a take's sidecar (.json) or its audio file "
                       f"({', '.join(AUDIO_EXTS)})")


def _int(v, default: int) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _num(v) -> float | None:
    """A sidecar number: None for null/missing, -inf for "-inf"."""
    if v is None:
        return None
    if v == "-inf":
        return -math.inf
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


# --- reading the audio: envelope and loudness series --------------------------------

class _Scan:
    """What the audio gives the report: per-column envelope, 100 ms loudness, totals."""

    def __init__(self):
        self.frames = 0
        self.channels = 0
        self.cols = 0
        self.env_min = self.env_max = self.env_rms = None   # (cols, channels)
        self.series = None          # (n, 3) [frame, momentary LUFS, short-term LUFS]
        self.loudness = {}          # measured figures (same keys as the sidecar's)


def scan_audio(paths, rate: int, columns: int = COLUMNS, progress=None) -> _Scan:
    """Stream the master parts once: min/max/RMS per column and the loudness meter.

    paths: [(path, start_frame or None)]; the parts are read back to back (the
    recorder writes them contiguous). progress(fraction) is called after each
    chunk."""
    import numpy as np
    import soundfile as sf

    from .dsp import meters as M

    infos = []
    for p, _ in paths:
        try:
            infos.append(sf.info(str(p)))
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LivemixError(f"{p}: not an audio file libsndfile can read ({msg})") from None
    total = sum(int(i.frames) for i in infos)
    nch = max((int(i.channels) for i in infos), default=1)
    scan = _Scan()
    scan.frames = total
    scan.channels = nch
    cols = max(1, min(columns, total))
    scan.cols = cols
    emin = np.zeros((cols, nch), np.float32)
    emax = np.zeros((cols, nch), np.float32)
    esq = np.zeros((cols, nch), np.float64)
    mch = min(nch, 2)
    step = max(1, round(rate / M.SERIES_HZ))
    cap = CHUNK // step + 8
    meter = M.new_meter(int(rate), mch, CHUNK, series=cap)
    xm = np.zeros((mch, CHUNK), np.float32)
    rows = []
    # first frame of each column: ceil(c * total / cols); every column holds >= 1 frame
    col_start = -((-np.arange(cols + 1, dtype=np.int64) * total) // cols)
    col_len = np.diff(col_start).astype(np.float64)

    def drain():
        w, r = int(meter.series_idx[0]), int(meter.series_idx[1])
        for k in range(r, w):
            rows.append(meter.series[k % cap].copy())
        meter.series_idx[1] = w

    done = 0
    for (p, _), info in zip(paths, infos):
        try:
            f = sf.SoundFile(str(p))
        except Exception as e:
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise LivemixError(f"{p}: cannot read ({msg})") from None
        with f:
            buf = np.zeros((CHUNK, f.channels), np.float32)
            while True:
                try:
                    n = f.read(CHUNK, dtype="float32", always_2d=True, out=buf).shape[0]
                except Exception as e:
                    msg = str(e).splitlines()[0] if str(e) else type(e).__name__
                    raise LivemixError(f"{p}: cannot read ({msg})") from None
                if n == 0:
                    break
                n = min(n, total - done)
                if n <= 0:
                    break
                x = buf[:n]
                # envelope: the columns this chunk touches
                c0 = int(np.searchsorted(col_start, done, side="right") - 1)
                c1 = int(np.searchsorted(col_start, done + n, side="left"))   # exclusive
                starts = np.maximum(col_start[c0:c1] - done, 0)
                ch = x.shape[1]
                emn = np.minimum.reduceat(x, starts, axis=0)
                emx = np.maximum.reduceat(x, starts, axis=0)
                sq = np.add.reduceat(np.square(x, dtype=np.float32), starts, axis=0,
                                     dtype=np.float64)
                first = done == col_start[c0]
                if first:
                    emin[c0:c1, :ch] = emn
                    emax[c0:c1, :ch] = emx
                else:                 # the first column began in the previous chunk
                    emin[c0, :ch] = np.minimum(emin[c0, :ch], emn[0])
                    emax[c0, :ch] = np.maximum(emax[c0, :ch], emx[0])
                    emin[c0 + 1:c1, :ch] = emn[1:]
                    emax[c0 + 1:c1, :ch] = emx[1:]
                esq[c0:c1, :ch] += sq
                if ch == 1 and nch > 1:   # a mono part in a stereo take
                    emin[c0:c1, 1:] = emin[c0:c1, :1]
                    emax[c0:c1, 1:] = emax[c0:c1, :1]
                    esq[c0:c1, 1:] = esq[c0:c1, :1]
                # loudness
                for c in range(mch):
                    np.copyto(xm[c, :n], x[:, min(c, ch - 1)])
                M.meter_feed(meter, xm, 0, n)
                drain()
                done += n
                if progress is not None:
                    progress(0.9 * done / max(total, 1))
    M.tp_flush(meter)
    drain()
    scan.env_min, scan.env_max = emin, emax
    scan.env_rms = np.sqrt(esq / np.maximum(col_len, 1.0)[:, None]).astype(np.float32)
    if rows:
        s = np.array(rows)
        with np.errstate(divide="ignore"):
            mom = -0.691 + 10.0 * np.log10(s[:, 1])
            sho = -0.691 + 10.0 * np.log10(s[:, 2])
        mom[s[:, 0] < M.MOMENTARY_S * rate] = np.nan     # windows not yet full
        sho[s[:, 0] < M.SHORT_TERM_S * rate] = np.nan
        scan.series = np.column_stack([s[:, 0], mom, sho])
    else:
        scan.series = np.zeros((0, 3))
    st = meter.state

    def none_inf(v):
        return None if v == -math.inf else round(float(v), 2)

    scan.loudness = {
        "integrated_lufs": none_inf(M.integrated_lufs(meter)),
        "lra_lu": round(M.lra_lu(meter), 2),
        "true_peak_dbtp": none_inf(M.db(st[M.MS_TP])),
        "sample_peak_dbfs": none_inf(M.db(st[M.MS_SP])),
        "momentary_max_lufs": none_inf(M.lufs(st[M.MS_M_MAX])),
        "short_term_max_lufs": none_inf(M.lufs(st[M.MS_S_MAX])),
    }
    return scan


# --- automation -----------------------------------------------------------------

def _initial_values(data: dict) -> dict | None:
    """{param: {target: value}} at the session's start (gain dB, mute 0/1,
    duck_depth dB), when its file is still the one recorded (same sha256); else None."""
    sp = data.get("session")
    if not isinstance(sp, str):
        return None
    p = Path(sp)
    try:
        raw = p.read_bytes()
    except OSError:
        return None
    sha = data.get("session_sha256")
    if sha and hashlib.sha256(raw).hexdigest() != sha:
        return None
    try:
        from .session import load_session
        s = load_session(p, check_files=False)
    except Exception:
        return None
    gain = {t.name: float(t.gain_db) for t in s.tracks}
    gain["master"] = float(s.master.gain_db)
    return {"gain": gain,
            "mute": {t.name: 1.0 if t.mute else 0.0 for t in s.tracks},
            "duck_depth": {f"ducking[{i + 1}]": float(r.depth_db)
                           for i, r in enumerate(s.ducking)}}


def fader_steps(data: dict, rate: float, initial: dict | None, param: str = "gain"):
    """{target: (times_s, values)} step functions over the take for ``param``.

    Automation frames are session frames; the take starts at ``start_frame``.
    A target starts from ``initial`` ({target: value}) when known (changes
    before the take are applied to it), else at its first logged change (or at
    0 s with the value it had then, for a change before the take). Only
    targets with a logged change, and the master's gain, get a line."""
    start = _int(data.get("start_frame"), 0)
    entries = []
    for e in data.get("automation") or []:
        if not isinstance(e, dict) or e.get("param") != param:
            continue
        t = e.get("target")
        v = _num(e.get("value"))
        try:
            fr = int(e["frame"])
        except (KeyError, TypeError, ValueError):
            continue
        if not isinstance(t, str) or v is None:
            continue
        entries.append((fr - start, t, v))
    entries.sort(key=lambda x: x[0])
    steps: dict = {}
    if initial:
        targets = {t for _, t, _ in entries}
        if param == "gain":
            targets.add("master")
        for t in targets:
            if t in initial:
                steps[t] = ([0.0], [initial[t]])
    for fr, t, v in entries:
        ts = max(fr, 0) / rate
        if t not in steps:
            steps[t] = ([ts], [v])
        elif fr <= 0:           # before the take: the value it starts with
            steps[t][0][-1] = 0.0
            steps[t][1][-1] = v
        elif ts == steps[t][0][-1]:
            steps[t][1][-1] = v
        else:
            steps[t][0].append(ts)
            steps[t][1].append(v)
    return steps


def _on_spans(step, end: float) -> list[tuple[float, float]]:
    """[(start, stop)] seconds where a 0/1 step function (times, values) is on."""
    if not step:
        return []
    tt, vv = step
    out = []
    on = None
    for t, v in zip(list(tt) + [end], list(vv) + [0.0]):
        if v >= 0.5 and on is None:
            on = t
        elif v < 0.5 and on is not None:
            if t > on:
                out.append((on, min(t, end)))
            on = None
    return out


def _step_segment(tt, vv, a: float, b: float):
    """The part [a, b] of a step function (times, values; last value held): times, values."""
    import numpy as np
    tt = np.asarray(tt, float)
    vv = np.asarray(vv, float)
    k = max(int(np.searchsorted(tt, a, side="right")) - 1, 0)
    inner = (tt > a) & (tt < b)
    seg_t = np.concatenate([[a], tt[inner], [b]])
    seg_v = np.concatenate([[vv[k]], vv[inner], [vv[inner][-1] if inner.any() else vv[k]]])
    return seg_t, seg_v


# --- events ---------------------------------------------------------------------

def take_markers(data: dict, rate: float) -> dict:
    """{"xrun": [s], "underrun": [(s, track)], "drop": [(s, dur_s)], "ceiling": [s],
    "gap": [(s, dur_s)]} from the sidecar's events (take-relative frames)."""
    out = {"xrun": [], "underrun": [], "drop": [], "ceiling": [], "gap": []}
    for e in data.get("events") or []:
        if not isinstance(e, dict):
            continue
        kind = e.get("kind")
        try:
            t = float(e["frame"]) / rate
        except (KeyError, TypeError, ValueError):
            continue
        if kind == "xrun":
            out["xrun"].append(t)
        elif kind == "underrun":
            out["underrun"].append((t, str(e.get("detail") or "")))
        elif kind == "ceiling":
            out["ceiling"].append(t)
        elif kind in ("drop", "gap"):
            dur = _num(e.get("frames"))
            out[kind].append((t, (dur or 0.0) / rate))
    return out


# --- drawing --------------------------------------------------------------------

def _gr_lane(ax, series, lanes_d: dict, rate: float, legend_kw: dict, empty_note: str):
    """Gain reduction lane: each series (dB, <= 0, at the lanes' rate_hz from frame0) as
    a filled step line; ``empty_note`` when there is nothing to draw."""
    import numpy as np
    drew, lowest = False, 0.0
    if isinstance(series, dict) and series:
        hz = _num(lanes_d.get("rate_hz")) or 10.0
        t0 = _int(lanes_d.get("frame0"), 0) / rate
        colors = ["#756bb1", "#e377c2", "#8c564b", "#17becf", "#bcbd22", "#7f7f7f"]
        for i, (name, seq) in enumerate(sorted(series.items())):
            try:
                y = np.array([_num(v) if _num(v) is not None else 0.0 for v in seq], float)
            except TypeError:
                continue
            if not y.size:
                continue
            y = np.minimum(np.where(np.isfinite(y), y, FADER_FLOOR_DB), 0.0)
            tt = t0 + np.arange(y.size) / hz
            col = colors[i % len(colors)]
            ax.fill_between(tt, y, 0.0, color=col, alpha=0.35, lw=0, step="post")
            ax.step(tt, y, where="post", color=col, lw=1.0,
                    label=f"{_short(name)} (max {y.min():.1f} dB)")
            lowest = min(lowest, float(y.min()))
            drew = True
    if drew:
        ax.set_ylim(min(lowest * 1.15, -1.0) - 0.5, 0.8)
        ax.legend(**legend_kw)
    else:
        ax.text(0.5, 0.5, empty_note or "no data", transform=ax.transAxes, ha="center",
                va="center", color="#777777")
        ax.set_ylim(-1.0, 0.5)
        ax.set_yticks([])
    ax.axhline(0.0, color="#bbbbbb", lw=0.6)


def _short(name: str, n: int = 22) -> str:
    return name if len(name) <= n else name[:n - 1] + "…"


def _fmt_time(s: float, hours: bool = False, tenths: bool = False) -> str:
    s = max(0.0, s)
    if tenths:
        m, sec = divmod(round(s, 1), 60)
        return f"{int(m):02d}:{sec:04.1f}"
    whole = int(round(s))
    h, rem = divmod(whole, 3600)
    m, sec = divmod(rem, 60)
    if h or hours:
        return f"{h}:{m:02d}:{sec:02d}"
    return f"{m:02d}:{sec:02d}"


def _fmt_duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    return _fmt_time(s)


def _fmt_db(v, unit: str) -> str:
    if v is None or v == -math.inf:
        return f"-inf {unit}"
    return f"{v:.1f} {unit}"


def _time_step(duration: float) -> float:
    for step in (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if duration / step <= 14:
            return step
    return 3600 * math.ceil(duration / 3600 / 14)


def write_report(sidecar_path, out_png=None, progress=None) -> Path:
    """Draw the take's report PNG (1600 x 1000 px); returns its path.

    sidecar_path: the take's ``<take>.json``. out_png: default ``<take>.png``
    next to the sidecar. progress(fraction 0..1): called while reading the
    audio and once drawn. Raises LivemixError (one line, naming the file) for a
    file that is not a take sidecar, missing or unreadable audio, or a PNG that
    cannot be written."""
    sidecar_path = Path(sidecar_path)
    data = load_sidecar(sidecar_path)
    rate = float(data["samplerate"])
    paths = master_paths(sidecar_path, data)
    out = Path(out_png) if out_png is not None else sidecar_path.with_suffix(".png")
    scan = scan_audio(paths, int(round(rate)), progress=progress)

    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    duration = scan.frames / rate
    xmax = max(duration, 1.0 / rate)
    hours = duration >= 3600
    figures = dict(scan.loudness)
    side = data.get("loudness")
    if isinstance(side, dict):       # the recorder's own figures win where it gave them
        for k in figures:
            if k in side:
                figures[k] = side[k]
    target = data.get("target") if isinstance(data.get("target"), dict) else None
    target_lufs = _num(target.get("lufs")) if target else None
    target_tp = _num(target.get("true_peak_dbtp")) if target else None
    marks = take_markers(data, rate)
    xruns = _int(data.get("xruns"), len(marks["xrun"]))
    xruns = max(xruns, len(marks["xrun"]))
    dropped = _int(data.get("dropped_frames"), 0)
    if not dropped:
        dropped = int(sum(d for _, d in marks["drop"]) * rate)
    und = data.get("underruns")      # older takes: counts per track (since the run began)
    underruns = (len(marks["underrun"]) if marks["underrun"] else
                 sum(_int(v, 0) for v in und.values()) if isinstance(und, dict) else 0)

    lanes_d = data.get("lanes") if isinstance(data.get("lanes"), dict) else {}
    comps = lanes_d.get("comp_gr_db")
    comps = dict(list(comps.items())[:MAX_COMP_LANES]) if isinstance(comps, dict) else {}
    height = HEIGHT_PX + COMP_LANE_PX * len(comps)
    fig = Figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    gs = fig.add_gridspec(4 + len(comps), 1,
                          height_ratios=[3.0, 3.0, 1.6] + [1.0] * len(comps) + [2.4],
                          hspace=0.12, left=0.055, right=0.855,
                          top=1.0 - 95.0 / height, bottom=60.0 / height)
    ax_w = fig.add_subplot(gs[0])
    ax_l = fig.add_subplot(gs[1], sharex=ax_w)
    ax_d = fig.add_subplot(gs[2], sharex=ax_w)
    comp_axes = [fig.add_subplot(gs[3 + i], sharex=ax_w) for i in range(len(comps))]
    ax_f = fig.add_subplot(gs[3 + len(comps)], sharex=ax_w)
    axes = (ax_w, ax_l, ax_d, *comp_axes, ax_f)
    legend_kw = dict(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8,
                     frameon=False, borderaxespad=0.0, handlelength=1.6)

    # -- title -------------------------------------------------------------------
    renderer = canvas.get_renderer()

    def line(y, parts, size):           # y: as a fraction of the 1000 px figure
        x, y = 0.055, 1.0 - (1.0 - y) * HEIGHT_PX / height
        for text, color, weight in parts:
            t = fig.text(x, y, text, color=color, fontsize=size, fontweight=weight,
                         va="baseline", ha="left")
            x += t.get_window_extent(renderer).width / fig.bbox.width

    head = [(str(data["take"]), "black", "bold"), (f"   {_fmt_duration(duration)}", "black", "normal")]
    if data.get("complete") is False:
        head.append(("   (incomplete take)", "#ff7f0e", "bold"))
    if data.get("recovered"):
        head.append(("   (recovered)", "#ff7f0e", "normal"))
    line(0.962, head, 15)
    tp = _num(figures.get("true_peak_dbtp"))
    tp_limit = target_tp if target_tp is not None else 0.0
    tp_bad = tp is not None and tp > tp_limit
    integ = _num(figures.get("integrated_lufs"))
    sep = ("   ·   ", "#777777", "normal")
    nums = [(f"integrated {_fmt_db(integ, 'LUFS')}", "black", "bold")]
    if target_lufs is not None and integ is not None and integ != -math.inf:
        nums.append((f" ({integ - target_lufs:+.1f} LU vs {target.get('name') or 'target'})",
                     "#555555", "normal"))
    lra = _num(figures.get("lra_lu"))
    nums += [sep, (f"LRA {lra:.1f} LU" if lra is not None else "LRA ?", "black", "normal"), sep,
             (f"true peak {_fmt_db(tp, 'dBTP')}", RED if tp_bad else "black",
              "bold" if tp_bad else "normal")]
    mmax = _num(figures.get("momentary_max_lufs"))
    smax = _num(figures.get("short_term_max_lufs"))
    nums += [sep, (f"max M {_fmt_db(mmax, 'LUFS')} / S {_fmt_db(smax, 'LUFS')}", "#333333",
                   "normal")]
    nums.append(sep)
    nums.append((f"xruns {xruns}", RED if xruns else "#2a7a2a", "bold" if xruns else "normal"))
    nums.append(sep)
    nums.append((f"dropped frames {dropped}", RED if dropped else "#2a7a2a",
                 "bold" if dropped else "normal"))
    if underruns:
        nums += [sep, (f"underruns {underruns}", RED, "bold")]
    line(0.928, nums, 11)

    # -- lane 1: waveform ----------------------------------------------------------
    t_col = (np.arange(scan.cols) + 0.5) * (duration / scan.cols)
    if scan.channels >= 2:
        lanes = [(1.0, 0, "L"), (-1.0, 1, "R")]
        ax_w.set_ylim(-2.05, 2.05)
        ax_w.axhline(0.0, color="#bbbbbb", lw=0.6)
    else:
        lanes = [(0.0, 0, "")]
        ax_w.set_ylim(-1.05, 1.05)
    full = np.float32(FULL_SCALE)
    clipped = (scan.env_max >= full) | (scan.env_min <= -full)
    for centre, c, name in lanes:
        lo = np.clip(scan.env_min[:, c], -1.0, 1.0)
        hi = np.clip(scan.env_max[:, c], -1.0, 1.0)
        r = np.minimum(scan.env_rms[:, c], 1.0)
        ax_w.fill_between(t_col, centre + lo, centre + hi, color="#7fa7d6", lw=0, step="mid")
        ax_w.fill_between(t_col, centre - r, centre + r, color="#2f5f9f", lw=0, step="mid")
        clip = np.flatnonzero(clipped[:, c])
        if clip.size:
            ax_w.plot(t_col[clip], np.full(clip.size, centre + 0.9), "v", color=RED, ms=5)
        if name:
            ax_w.text(-0.004, centre, name, transform=ax_w.get_yaxis_transform(),
                      ha="right", va="center", fontsize=9, color="#333333")
    ax_w.set_yticks([])
    ax_w.set_ylabel("waveform", labelpad=14)
    ax_w.legend(handles=[Patch(color="#7fa7d6", label="peak (min/max)"),
                         Patch(color="#2f5f9f", label="RMS")]
                + ([Line2D([], [], ls="none", marker="v", color=RED, label="full scale")]
                   if clipped.any() else []),
                **legend_kw)

    # -- lane 2: loudness ------------------------------------------------------------
    ser = scan.series
    ts = ser[:, 0] / rate if len(ser) else np.zeros(0)
    ref = target_lufs if target_lufs is not None else EBU_REFERENCE_LUFS
    vals = ser[:, 1][np.isfinite(ser[:, 1])] if len(ser) else np.zeros(0)
    vals = vals[vals > -70.0]
    if vals.size:
        top = max(float(vals.max()), ref) + 3.0
        bottom = max(-70.0, min(float(np.percentile(vals, 2)), ref - 12.0) - 4.0)
    else:
        top, bottom = ref + 6.0, ref - 30.0
    if len(ser):
        mom = np.where(ser[:, 1] < bottom, bottom, ser[:, 1])
        sho = np.where(ser[:, 2] < bottom, bottom, ser[:, 2])
        ax_l.plot(ts, mom, color="#9ecae1", lw=0.8, label="momentary (400 ms)")
        ax_l.plot(ts, sho, color="#08519c", lw=1.6, label="short-term (3 s)")
    if integ is not None and integ != -math.inf:
        ax_l.axhline(integ, color="#31a354", lw=1.0, ls="--", zorder=1,
                     label=f"integrated {integ:.1f} LUFS")
    if target_lufs is not None:
        ax_l.axhline(target_lufs, color="#e6550d", lw=1.6,
                     label=f"target {target.get('name') or ''} {target_lufs:g} LUFS".replace("  ", " "))
    else:
        ax_l.axhline(EBU_REFERENCE_LUFS, color="#e6550d", lw=1.2, ls=":",
                     label="EBU R128 -23 LUFS (reference)")
    if marks["ceiling"]:
        ct = np.array(marks["ceiling"])
        ax_l.plot(ct, np.full(ct.size, top - 0.8), "v", color="#ff7f0e", ms=4,
                  label=f"ceiling hits ({ct.size})")
    ax_l.set_ylim(bottom, top)
    ax_l.set_ylabel("loudness (LUFS)")
    if not len(ser):
        ax_l.text(0.5, 0.5, "too short to measure loudness", transform=ax_l.transAxes,
                  ha="center", va="center", color="#777777")
    ax_l.legend(**legend_kw)

    # -- lane 3: ducking; then a lane per compressed track ------------------------------
    duck = lanes_d.get("duck_gr_db")
    _gr_lane(ax_d, duck, lanes_d, rate, legend_kw,
             "no ducking in this take" if isinstance(duck, dict)
             else "no ducking lanes recorded for this take")
    ax_d.set_ylabel("ducking GR (dB)")
    for ax, name in zip(comp_axes, comps):
        _gr_lane(ax, {f"{name} compressor": comps[name]}, lanes_d, rate, legend_kw, "")
        ax.set_ylabel(f"{_short(name, 10)} comp\nGR (dB)")

    # -- lane 4: faders --------------------------------------------------------------------
    initial = _initial_values(data)
    steps = fader_steps(data, rate, (initial or {}).get("gain") if initial else None)
    mutes = fader_steps(data, rate, (initial or {}).get("mute") if initial else None, "mute")
    any_muted = False
    lo_v, hi_v = 0.0, 0.0
    order = sorted(steps, key=lambda t: (t == "master", t))
    cmap = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22",
            "#ff7f0e", "#7f7f7f", "#aec7e8", "#98df8a", "#c5b0d5"]
    for i, name in enumerate(order):
        tt, vv = steps[name]
        v = np.array(vv, float)
        v = np.where(v < FADER_FLOOR_DB, FADER_FLOOR_DB, v)
        tt = list(tt) + [xmax]
        v = np.append(v, v[-1])
        is_master = name == "master"
        color = "black" if is_master else cmap[i % len(cmap)]
        moved = len(vv) > 1 or tt[0] > 0
        ax_f.step(tt, v, where="post", lw=2.2 if is_master else 1.3, color=color,
                  label=_short(name) + ("" if moved else " (no moves)"))
        for a, b in _on_spans(mutes.get(name), xmax):
            seg_t, seg_v = _step_segment(tt, v, a, b)
            ax_f.step(seg_t, seg_v, where="post", lw=7, color=color, alpha=0.22,
                      solid_capstyle="butt")
            any_muted = True
        lo_v, hi_v = min(lo_v, float(v.min())), max(hi_v, float(v.max()))
    if steps:
        ax_f.set_ylim(max(FADER_FLOOR_DB - 3, lo_v - 3), hi_v + 3)
        if lo_v <= FADER_FLOOR_DB:
            ax_f.axhline(FADER_FLOOR_DB, color="#bbbbbb", lw=0.6, ls=":")
            ax_f.text(1.0, FADER_FLOOR_DB, " -inf", transform=ax_f.get_yaxis_transform(),
                      va="center", fontsize=8, color="#777777")
        handles, labels = ax_f.get_legend_handles_labels()
        if any_muted:
            handles.append(Line2D([], [], color="#999999", lw=7, alpha=0.3))
            labels.append("muted")
        if len(handles) > 14:
            handles, labels = handles[:13], labels[:13]
            handles.append(Line2D([], [], ls="none"))
            labels.append(f"... {len(steps) - 13} more")
        ax_f.legend(handles, labels, **legend_kw)
        if initial is None:
            ax_f.text(0.005, 0.04, "session file changed or gone: lines start at each "
                      "fader's first logged move", transform=ax_f.transAxes, fontsize=8,
                      color="#555555", zorder=6,
                      bbox=dict(facecolor="white", edgecolor="none", alpha=0.8, pad=1.5))
    else:
        ax_f.text(0.5, 0.5, "no fader moves logged", transform=ax_f.transAxes, ha="center",
                  va="center", color="#777777")
        ax_f.set_ylim(-1.0, 1.0)
        ax_f.set_yticks([])
    ax_f.set_ylabel("faders (dB)")

    # -- markers across all lanes ----------------------------------------------------------
    x_t = np.array(marks["xrun"])
    u_t = np.array([t for t, _ in marks["underrun"]])
    d_t = marks["drop"]
    g_t = marks["gap"]
    for ax in axes:
        tr = ax.get_xaxis_transform()
        for t, dur in d_t:
            if dur > 0:
                ax.axvspan(t, t + dur, color=RED, alpha=0.18, lw=0)
        for t, dur in g_t:
            if dur > 0:
                ax.axvspan(t, t + dur, color="#ff7f0e", alpha=0.18, lw=0)
        if x_t.size:
            ax.vlines(x_t, 0, 1, transform=tr, color=RED, lw=1.0, zorder=5)
        if u_t.size:
            ax.vlines(u_t, 0, 1, transform=tr, color=RED, lw=1.0, ls="--", zorder=5)
        if d_t:
            ax.vlines([t for t, _ in d_t], 0, 1, transform=tr, color=RED, lw=1.0, ls=":",
                      zorder=5)
    ev = []
    if x_t.size:
        ev.append(Line2D([], [], color=RED, lw=1.0, label=f"xrun ({x_t.size})"))
    if u_t.size:
        tracks = sorted({d for _, d in marks["underrun"] if d})
        what = f": {', '.join(tracks[:3])}{' ...' if len(tracks) > 3 else ''}" if tracks else ""
        ev.append(Line2D([], [], color=RED, lw=1.0, ls="--",
                         label=f"underrun ({u_t.size}){what}"))
    if d_t:
        ev.append(Line2D([], [], color=RED, lw=1.0, ls=":",
                         label=f"dropped frames ({len(d_t)})"))
    if g_t:
        ev.append(Patch(color="#ff7f0e", alpha=0.3, label=f"silence gap ({len(g_t)})"))
    if ev:
        fig.legend(handles=ev, loc="lower left", bbox_to_anchor=(0.862, 5.0 / height), fontsize=8,
                   frameon=False, title="events", title_fontsize=8)

    # -- time axis ---------------------------------------------------------------------------
    step = _time_step(xmax)
    ax_f.xaxis.set_major_locator(MultipleLocator(step))
    ax_f.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _fmt_time(v, hours, step < 1)))
    ax_f.set_xlim(0.0, xmax)
    ax_f.set_xlabel("time (h:mm:ss)" if hours else "time (mm:ss)")
    for ax in axes:
        ax.set_axisbelow(True)
        ax.grid(True, axis="x", color="#e5e5e5", lw=0.6)
        ax.tick_params(labelsize=8)
        ax.yaxis.label.set_size(9)
        for side_name in ("top", "right"):
            ax.spines[side_name].set_visible(False)
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    for ax in axes[1:]:
        ax.grid(True, axis="y", color="#eeeeee", lw=0.6)

    out_tmp = out.with_name(f".{out.name}.tmp.png")
    try:
        canvas.print_png(str(out_tmp))
        out_tmp.replace(out)
    except OSError as e:
        try:
            out_tmp.unlink()
        except OSError:
            pass
        raise LivemixError(f"{out}: cannot write the report: {e.strerror or e}") from None
    if progress is not None:
        progress(1.0)
    return out


# --- command line ------------------------------------------------------------------

def add_report_parser(sub):
    """Add ``report`` to the CLI's subparsers (``engine.cli.build_parser``)."""
    p = sub.add_parser("report", help="draw a take's report (<take>.png) from its sidecar "
                                      "and audio")
    p.add_argument("take", metavar="TAKE",
                   help="the take's sidecar (.json) or its audio file (.wav, ...)")
    p.add_argument("-o", "--output", metavar="FILE.png",
                   help="where to write the PNG (default: <take>.png next to the sidecar)")
    p.add_argument("--force", action="store_true", help="overwrite FILE.png if it exists")
    p.set_defaults(func=cmd_report)
    return p


def take_files(sidecar_path, data: dict) -> list[Path]:
    """Every file of a take: its sidecar, and its audio (master and stems, all parts)."""
    base = Path(sidecar_path).parent
    return [Path(sidecar_path)] + [base / f["path"] for f in data.get("files") or []
                                   if isinstance(f, dict) and isinstance(f.get("path"), str)]


def cmd_report(args) -> int:
    """``livemix report TAKE [-o FILE.png] [--force]``: prints the PNG's path. The
    default, <take>.png, is the take's own report: drawn again, it is replaced; any
    other output follows engine.outputs' rule (a .png, never over a file of the take,
    never over an existing file without --force)."""
    from .outputs import check_output
    sidecar = find_sidecar(args.take)
    out = getattr(args, "output", None)
    if out is not None:
        if Path(out).suffix.lower() != ".png":
            raise LivemixError(f"{out}: a report is a PNG image: give a name ending in .png")
        check_output(out, take_files(sidecar, load_sidecar(sidecar)),
                     force=getattr(args, "force", False), what="a file of the take")
    print(write_report(sidecar, out))
    return 0


def main(argv=None) -> int:
    """``python -m engine.report TAKE [-o FILE.png]``: prints the PNG path; errors as
    one line on stderr, exit 1. Runs at a lower CPU priority (nice +10): the live
    engine starts it in a subprocess while it may still be playing."""
    p = argparse.ArgumentParser(prog="python -m engine.report",
                                description="Draw a take's report PNG.")
    p.add_argument("take", metavar="TAKE", help="the take's sidecar (.json) or audio file")
    p.add_argument("-o", "--output", metavar="FILE.png")
    args = p.parse_args(argv)
    try:
        os.nice(10)            # a background job next to a live audio app: yield the CPU
    except (AttributeError, OSError):
        pass
    try:
        cmd_report(args)
    except LivemixError as e:
        print(f"livemix report: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("livemix report: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
