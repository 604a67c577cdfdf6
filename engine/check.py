"""``livemix check CLIP ...``: triage of clips' native audio before it goes in a mix.

Each clip's audio (a video clip's first audio stream, or an audio file) is
decoded to a temporary float WAV and measured by ``engine.loudness.analyze``
(integrated loudness, true peak, clipped runs, bursts, dropouts, DC offset),
plus stretches of silence (momentary loudness under ``SILENCE_LUFS`` for at
least ``SILENCE_MIN_S``). Then one verdict, with its reason:

- ``replace``: the audio has artifacts (clipping, a burst, a dropout, a DC
  offset), is silent for more than half its length, or the clip has no audio
  at all: cut it and lay a clean ambience instead;
- ``lower``: clean, but louder than the delivery target (integrated above the
  target, a short-term passage more than ``PASSAGE_LU`` above it, or a true
  peak over the ceiling): usable as a bed lowered by the whole dB given (the
  reason also names a steady noise floor, as below, when there is one);
- ``denoise``: clean and not too loud, but the gaps between its sounds hold a
  steady noise floor (hiss, hum, fan) above ``NOISE_FLOOR_LUFS``: usable
  through the strip's ``denoise`` stage (RNNoise);
- ``keep``: usable as it is.

The first that applies wins, in that order: replace, lower, denoise, keep.

The noise floor (``_noise_floor``, in the 100 ms momentary loudness series,
400 ms windows, steps before the first full window left out):

- the content's level is the 95th percentile of the series; a *gap* is a run of
  steps more than ``GAP_LU`` under it. A gap that follows louder steps loses its
  first ``EDGE_STEPS`` steps (their windows may still hold the sound's tail);
  what is left are the noise-only steps, each a 400 ms window of nothing but
  the floor;
- there is a floor to judge when the noise-only steps add up to at least
  ``NOISE_MIN_STEPS`` (0.5 s of steps); its level is their median momentary
  loudness, its spread the 10th to 90th percentile range of their momentary
  loudness, in LU;
- the floor is steady when that spread is at most ``STEADY_LU`` (a hiss or a
  hum moves by a few tenths of an LU; traffic, voices or wind by much more),
  and it calls for ``denoise`` when steady and above ``NOISE_FLOOR_LUFS`` (-60,
  the level under which ``check`` calls a stretch silence). A clip whose
  sound never drops ``GAP_LU`` (a steady ambience such as rain) has no gaps:
  it is the sound itself, not a noise under it, and gets no ``denoise``.

It is a report: the exit code is 0 whatever the verdicts, non-zero only when a
clip cannot be read. Control thread (CLI).
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from .cli import clock
from .dsp.meters import MOMENTARY_S
from .errors import LivemixError, SourceError

SILENCE_LUFS = -60.0        # momentary loudness under this is silence
SILENCE_MIN_S = 1.0         # ... for at least this long
MOSTLY_SILENT = 0.5         # silent for more than this fraction of the clip: replace
PASSAGE_LU = 6.0            # short-term loudness this far over the target: an over-loud passage
NOISE_FLOOR_LUFS = -60.0    # a steady floor in the gaps above this: denoise
GAP_LU = 10.0               # a gap: momentary loudness this far under the content's (95th pct)
CONTENT_PERCENTILE = 95.0
EDGE_STEPS = 3              # a gap's first steps after a sound: their windows may hold its tail
NOISE_MIN_STEPS = 5         # noise-only steps (100 ms each) needed to judge a floor
STEADY_LU = 3.0             # a steady floor: 10th..90th percentile spread at most this
ARTIFACTS = ("clipping", "burst", "dropout", "dc_offset")
VERDICTS = ("keep", "denoise", "lower", "replace")


def _decode_to_wav(path: Path, wav: Path) -> None:
    """The clip's audio as a float WAV at its own rate (streamed, chunk by chunk)."""
    import soundfile as sf

    from .sources.media import open_media
    m = open_media(path)
    try:
        with sf.SoundFile(str(wav), "w", m.samplerate, m.channels, "FLOAT") as out:
            while True:
                x = m.read(1 << 16)
                if len(x) == 0:
                    break
                out.write(x)
    finally:
        m.close()


def analyze_media(path, ceiling_dbtp: float = -1.0, progress=None, momentary=None) -> dict:
    """``engine.loudness.analyze`` of an audio file, or of a video clip's audio (decoded
    to a temporary float WAV first: the analysis reads its passages twice)."""
    from .loudness import analyze
    from .sources.media import is_video
    path = Path(path)
    if not is_video(path):
        return analyze(path, ceiling_dbtp=ceiling_dbtp, progress=progress,
                       momentary=momentary)
    with tempfile.TemporaryDirectory(prefix="livemix-check-") as tmp:
        wav = Path(tmp) / "audio.wav"
        _decode_to_wav(path, wav)
        r = analyze(wav, ceiling_dbtp=ceiling_dbtp, progress=progress, momentary=momentary)
    r["file"] = str(path)
    return r


def _silences(rows: np.ndarray, rate: int, duration_s: float) -> list[dict]:
    """Stretches where momentary loudness stays under SILENCE_LUFS, as problems."""
    if len(rows) == 0:
        return []
    with np.errstate(divide="ignore"):
        level = -0.691 + 10.0 * np.log10(np.maximum(rows[:, 1], 1e-30))
    quiet = level < SILENCE_LUFS
    edges = np.diff(np.concatenate([[0], quiet.astype(np.int8), [0]]))
    out = []
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        start = max(0.0, rows[a, 0] / rate - 0.4)      # a step covers the 400 ms before it
        end = min(duration_s, rows[b - 1, 0] / rate)
        if end - start >= SILENCE_MIN_S:
            out.append({"kind": "silence", "start_s": round(start, 6), "end_s": round(end, 6),
                        "detail": f"{end - start:.1f} s under {SILENCE_LUFS:.0f} LUFS"})
    return out


def _noise_floor(rows: np.ndarray, rate: int) -> dict | None:
    """The floor in the gaps between a clip's sounds (see the module docstring):
    {"lufs", "spread_lu", "noise_s", "content_lufs", "steady"}, or None when the gaps
    hold fewer than NOISE_MIN_STEPS noise-only steps. lufs is None for digital
    silence; noise_s is how much of the clip the noise-only windows cover."""
    rows = rows[rows[:, 0] >= round(MOMENTARY_S * rate)]        # full windows only
    if len(rows) < NOISE_MIN_STEPS:
        return None
    with np.errstate(divide="ignore"):
        level = np.maximum(-0.691 + 10.0 * np.log10(rows[:, 1]), -200.0)   # -inf: silence
    content = float(np.percentile(level, CONTENT_PERCENTILE))
    gap = level < content - GAP_LU
    edges = np.diff(np.concatenate([[0], gap.astype(np.int8), [0]]))
    noise, noise_s = [], 0.0
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        a += EDGE_STEPS if a > 0 else 0
        if a < b:
            noise.append(level[a:b])
            noise_s += float(rows[b - 1, 0] - rows[a, 0]) / rate + MOMENTARY_S
    noise = np.concatenate(noise) if noise else np.zeros(0)
    if len(noise) < NOISE_MIN_STEPS:
        return None
    floor = float(np.median(noise))
    lo, hi = np.percentile(noise, [10.0, 90.0])
    spread = float(hi - lo)
    return {"lufs": round(floor, 2) if floor > -120.0 else None,
            "spread_lu": round(spread, 2), "noise_s": round(noise_s, 3),
            "content_lufs": round(content, 2), "steady": spread <= STEADY_LU}


def _denoisable(nf: dict | None) -> bool:
    """A floor that calls for the denoiser: steady and above NOISE_FLOOR_LUFS."""
    return bool(nf and nf["steady"] and nf["lufs"] is not None
                and nf["lufs"] > NOISE_FLOOR_LUFS)


def _floor_words(nf: dict) -> str:
    return (f"a steady noise floor at {nf['lufs']:.1f} LUFS between the sounds "
            f"({nf['content_lufs'] - nf['lufs']:.0f} LU under them, spread "
            f"{nf['spread_lu']:.1f} LU over {nf['noise_s']:.1f} s)")


def needs_denoise(result: dict) -> bool:
    """Whether ``livemix new`` runs a checked clip through the denoiser: verdict
    ``denoise``, or ``lower`` with a steady noise floor (``new`` levels clips itself)."""
    return (result.get("verdict") in ("denoise", "lower")
            and _denoisable(result.get("noise_floor")))


def verdict(r: dict, target_lufs: float, ceiling_dbtp: float) -> tuple[str, str, float]:
    """(verdict, reason, dB to lower by) of an analysis with silences added."""
    counts = r["problem_counts"]
    probs = r["problems"]
    bad = [k for k in ARTIFACTS if counts.get(k)]
    nonfinite = r.get("nonfinite_samples") or 0
    if bad or nonfinite:
        parts = [f"{nonfinite} NaN/Inf samples (played as silence)"] if nonfinite else []
        for k in bad:
            first = next((p for p in probs if p["kind"] == k), None)
            where = f" (first at {clock(first['start_s'])}: {first['detail']})" if first else ""
            parts.append(f"{counts[k]} {k.replace('_', ' ')}{'s' if counts[k] != 1 else ''}"
                         f"{where}")
        return "replace", "artifacts: " + "; ".join(parts), 0.0
    silent = sum(p["end_s"] - p["start_s"] for p in probs if p["kind"] == "silence")
    if r["integrated_lufs"] is None or silent > MOSTLY_SILENT * r["duration_s"]:
        return ("replace", f"silent for {silent:.1f} of {r['duration_s']:.1f} s: nothing to "
                "keep", 0.0)
    over = []
    i, st, tp = r["integrated_lufs"], r["short_term_max_lufs"], r["true_peak_dbtp"]
    if i > target_lufs:
        over.append((i - target_lufs, f"integrated {i:.1f} LUFS is {i - target_lufs:.1f} LU "
                                      f"over the target {target_lufs:.0f}"))
    if st is not None and st > target_lufs + PASSAGE_LU:
        over.append((st - target_lufs - PASSAGE_LU,
                     f"a passage reaches {st:.1f} LUFS short-term"))
    if tp is not None and tp > ceiling_dbtp:
        over.append((tp - ceiling_dbtp, f"true peak {tp:+.1f} dBTP is over the "
                                        f"{ceiling_dbtp:+.0f} dBTP ceiling"))
    nf = r.get("noise_floor")
    floor = _denoisable(nf)
    if over:
        need = max(math.ceil(d - 1e-9) for d, _ in over)
        also = f"; also {_floor_words(nf)}: denoise it too" if floor else ""
        return ("lower", f"usable as a bed at -{need} dB: " + "; ".join(w for _, w in over)
                + also, float(need))
    if floor:
        return ("denoise", f"{_floor_words(nf)}: denoise it; otherwise clean, no artifacts",
                0.0)
    quiet = f"; {silent:.1f} s of silence" if silent else ""
    return ("keep", f"clean: {i:.1f} LUFS, {tp:+.1f} dBTP, no artifacts{quiet}", 0.0)


def check_clip(path, target_lufs: float = -14.0, ceiling_dbtp: float = -1.0) -> dict:
    """The ``--json`` object of one clip. SourceError if it cannot be read (but a clip
    without audio gets the verdict ``replace``)."""
    path = Path(path)
    base = {"clip": str(path)}
    rows = []
    try:
        r = analyze_media(path, ceiling_dbtp, momentary=rows)
    except SourceError as e:
        if str(e).endswith("has no audio stream"):
            return {**base, "verdict": "replace", "reason": "no audio stream: lay a clean "
                    "ambience", "integrated_lufs": None, "true_peak_dbtp": None,
                    "problems": [], "lower_db": 0.0, "noise_floor": None}
        raise
    # digital silence of a second or more is a silence, not a dropout (an artifact)
    probs = [p for p in r["problems"] if not (p["kind"] == "dropout"
                                               and p["end_s"] - p["start_s"] >= SILENCE_MIN_S)]
    probs += _silences(rows[0], r["samplerate"], r["duration_s"])
    r["noise_floor"] = _noise_floor(rows[0], r["samplerate"])
    r["problems"] = sorted(probs, key=lambda p: (p["start_s"], p["kind"]))
    counts = {}
    for p in r["problems"]:
        counts[p["kind"]] = counts.get(p["kind"], 0) + 1
    for kind, n in r["problem_counts"].items():     # beyond the listed ones
        if kind != "dropout":
            counts[kind] = max(n, counts.get(kind, 0))
    r["problem_counts"] = counts
    v, reason, lower = verdict(r, target_lufs, ceiling_dbtp)
    del r["file"]
    return {**base, "verdict": v, "reason": reason, "lower_db": lower, **r}


def check_lines(results: list[dict]) -> list[str]:
    """The table ``livemix check`` prints, then each clip's problem passages."""
    width = max([len(Path(r["clip"]).name) for r in results] + [4])
    lines = [f"{'clip':<{width}}  {'verdict':<8} {'integrated':>11} {'true peak':>10}  reason"]
    for r in results:
        name = Path(r["clip"]).name
        if "error" in r:
            lines.append(f"{name:<{width}}  {'error':<8} {'':>11} {'':>10}  {r['error']}")
            continue
        i, tp = r["integrated_lufs"], r["true_peak_dbtp"]
        lines.append(f"{name:<{width}}  {r['verdict']:<8} "
                     f"{('-inf' if i is None else f'{i:.1f}') + ' LUFS':>11} "
                     f"{('-inf' if tp is None else f'{tp:+.1f}') + ' dBTP':>10}  {r['reason']}")
    for r in results:
        for p in r.get("problems", [])[:20]:
            lines.append(f"  {Path(r['clip']).name}: {clock(p['start_s'])} - "
                         f"{clock(p['end_s'])}  {p['kind']:<15} {p['detail']}")
    return lines


def cmd_check(args) -> int:
    import json
    import sys

    from .targets import PRESETS
    target, ceiling = PRESETS[args.preset]
    results, failed = [], False
    tty = sys.stderr.isatty()
    for k, clip in enumerate(args.clips):
        if tty:                                     # status while a batch is measured
            sys.stderr.write(f"\rchecking {k + 1}/{len(args.clips)}: {Path(clip).name[:50]}"
                             + " " * 10)
            sys.stderr.flush()
        try:
            results.append(check_clip(clip, target, ceiling))
        except LivemixError as e:
            failed = True
            results.append({"clip": clip, "error": str(e)})
            print(("\r" + " " * 78 + "\r" if tty else "") + f"livemix: error: {e}",
                  file=sys.stderr)
    if tty:
        sys.stderr.write("\r" + " " * 78 + "\r")
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print("\n".join(check_lines(results)))
    return 2 if failed else 0


def add_check_parser(sub):
    """Add ``check`` to the CLI's subparsers."""
    from .targets import PRESETS
    p = sub.add_parser("check", help="triage clips' native audio: keep, lower, denoise or "
                                     "replace")
    p.add_argument("clips", nargs="+", metavar="CLIP",
                   help="video clips (.mp4, .mov, .mkv, .webm) or audio files")
    p.add_argument("--preset", choices=tuple(PRESETS), default="web",
                   help="delivery target the levels are judged against (default web: "
                        f"{PRESETS['web'][0]:g} LUFS, {PRESETS['web'][1]:g} dBTP)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per clip")
    p.set_defaults(func=cmd_check)
    return p
