"""Loudness of audio files: ``livemix analyze`` and ``livemix normalize``.

``analyze`` streams a mono or stereo file of any rate in CHUNK-frame pieces
(memory is fixed but for the 100 ms loudness series, 16 bytes per step)
through the BS.1770 / EBU R128 meters (``dsp.meters``) and the problem
scanner (``dsp.scan``), and returns the figures and problem passages as a
JSON-ready dict (-inf figures are None). ``normalize`` measures a file,
applies the gain to a loudness target, true-peak limits the result only if
the gained signal's true peak would exceed the ceiling, writes it in the
input's format and measures what it wrote.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import numpy as np
import soundfile as sf

from .dsp.meters import (MOMENTARY_S, SERIES_HZ, db, loudness_figures,
                         meter_feed, new_meter, tp_flush)
from .dsp.scan import (DET_BLOCK, I_LOST, I_NDC, I_NEV, I_NONFINITE, K_CLIP, K_DROP, K_OVER,
                       new_scan_state, overs_finish, scan_chunk, scan_finish, scan_overs)
from .errors import LivemixError, SourceError
from .targets import PRESETS  # noqa: F401  (re-exported)

CHUNK = 65536               # frames per read
MERGE_S = 0.010             # clipped runs / true-peak overs closer than this are one passage
DROPOUT_MIN_S = 0.005       # shortest digital silence inside signal that is a dropout
DC_WINDOW_S = 10.0          # DC offset: mean per channel over windows this long...
DC_MIN_S = 5.0              # ... (a last, shorter window counts from this long)
DC_LEVEL_DBFS = -50.0       # ... above this |mean| is an offset
BURST_LU = 10.0             # burst: momentary loudness this far above ...
BURST_WINDOW_STEPS = 10     # ... its minimum over the previous 1 s (10 steps of 100 ms),
BURST_FLOOR_LU = -5.0       # ... that minimum taken no lower than the typical level - 5 LU
FINE_S = 0.002              # burst onsets are placed on 2 ms energy blocks
MAX_PER_KIND = 1000         # problems listed per kind (the rest are counted)
KINDS = ("clipping", "true_peak_over", "burst", "dropout", "dc_offset")


def open_audio(path: Path) -> sf.SoundFile:
    """Open a mono or stereo audio file for reading; LivemixError naming it if impossible."""
    if not path.exists():
        raise SourceError(f"{path}: no such file")
    if path.is_dir():
        raise SourceError(f"{path}: is a directory, not an audio file")
    try:
        f = sf.SoundFile(str(path))
    except Exception as e:
        reason = str(e).split("': ")[-1].strip() or type(e).__name__
        raise SourceError(f"{path}: cannot open as audio ({reason.rstrip('.')})") from None
    if f.channels not in (1, 2):
        f.close()
        raise SourceError(f"{path}: has {f.channels} channels (livemix measures mono and "
                          "stereo files)")
    return f


class _Problems:
    """Problem passages per kind: the first MAX_PER_KIND kept, all counted."""

    def __init__(self):
        self.found = {k: [] for k in KINDS}
        self.count = {k: 0 for k in KINDS}

    def add(self, kind: str, start: int, end: int, value: float, *extra) -> None:
        self.count[kind] += 1
        if len(self.found[kind]) < MAX_PER_KIND:
            self.found[kind].append((int(start), int(end), float(value), *extra))


_SCAN_KINDS = {K_CLIP: "clipping", K_OVER: "true_peak_over", K_DROP: "dropout"}


def _drain(ist, ev, probs: _Problems) -> None:
    for kind, s, e, v in ev[:ist[I_NEV]].tolist():
        probs.add(_SCAN_KINDS[int(kind)], max(0, s), max(1, e), v)
    ist[I_NEV] = 0


def _drain_series(m, parts: list) -> None:
    """Move the meter's new [frame, momentary energy] rows into parts."""
    w, r = int(m.series_idx[0]), int(m.series_idx[1])
    if w > r:
        parts.append(m.series[np.arange(r, w) % m.series.shape[0], :2].copy())
        m.series_idx[1] = w


def analyze(path, ceiling_dbtp: float = -1.0, progress=None, momentary=None) -> dict:
    """Loudness figures and problem passages of an audio file.

    ceiling_dbtp: true-peak overs are reported above it (dBTP).
    progress(stage, fraction): called after each chunk. momentary: a list that gets
    the momentary loudness series, an array of [end frame, mean square] per 100 ms
    step (``livemix check`` finds silences in it). Returns the dict
    ``livemix analyze --json`` prints (times in seconds, levels in LUFS /
    LU / dBTP / dBFS, None for -inf)."""
    path = Path(path)
    with open_audio(path) as f:
        rate, nch, expect = f.samplerate, f.channels, max(f.frames, 1)
        step = max(1, round(rate / SERIES_HZ))
        m = new_meter(rate, nch, CHUNK, series=CHUNK // step + 8)
        d = new_meter(rate, nch, DET_BLOCK)
        gap = max(1, round(MERGE_S * rate))
        min_zero = max(1, round(DROPOUT_MIN_S * rate))
        dc_window = max(1, round(DC_WINDOW_S * rate))
        ist, fst, trk, ev, dcw = new_scan_state(CHUNK, rate, min(gap, min_zero + 1))
        buf = np.zeros((CHUNK, nch), np.float32)
        x = np.zeros((nch, CHUNK), np.float32)
        thr = 10.0 ** (ceiling_dbtp / 20.0)
        probs, series, dc_rows = _Problems(), [], []
        total = 0
        while True:
            try:
                n = len(f.read(CHUNK, dtype="float32", always_2d=True, out=buf))
            except Exception as e:
                raise SourceError(f"{path}: read failed at {total / rate:.1f} s ({e})") from None
            if n == 0:
                break
            scan_chunk(buf, n, total, x, ist, fst, trk, ev, dcw, gap, min_zero, dc_window)
            meter_feed(m, x, 0, n)
            scan_overs(d, x, n, total, thr, fst, trk, ev, ist, gap)
            _drain(ist, ev, probs)
            dc_rows += dcw[:ist[I_NDC]].tolist()
            ist[I_NDC] = 0
            _drain_series(m, series)
            total += n
            if progress is not None:
                progress("analyzing", min(1.0, total / expect))
        tp_flush(m)
        overs_finish(d, total, thr, trk, ev, ist, gap)
        scan_finish(ist, fst, trk, ev, dcw, total, nch, gap)
        _drain(ist, ev, probs)
        dc_rows += dcw[:ist[I_NDC]].tolist()
        rows = np.concatenate(series) if series else np.zeros((0, 2))
        if momentary is not None:
            momentary.append(rows)
        for first, last, base, top in _bursts(rows, step):
            if len(probs.found["burst"]) >= MAX_PER_KIND:
                probs.count["burst"] += 1
                continue
            s, e = _burst_span(f, first, last, ist[I_NONFINITE] > 0)
            probs.add("burst", s, e, base, top)
    for s, e, (c, mean) in _dc_offsets(dc_rows, total, rate, nch):
        probs.add("dc_offset", s, e, mean, c)
    result = {
        "file": str(path),
        "duration_s": round(total / rate, 6),
        "samplerate": rate,
        "channels": nch,
        **loudness_figures(m),
        "ceiling_dbtp": ceiling_dbtp,
        "problems": _problem_list(probs, rate, ceiling_dbtp),
        "problem_counts": {k: v for k, v in probs.count.items() if v},
        "nonfinite_samples": int(ist[I_NONFINITE]),
    }
    if ist[I_LOST]:
        result["problems_lost"] = int(ist[I_LOST])
    return result


def _bursts(rows: np.ndarray, step: int):
    """Steps where momentary loudness rises > BURST_LU above its minimum over the
    previous second: [(first frame, last frame, that minimum LUFS, peak LUFS)] per rise.

    rows: [end frame, momentary energy] per 100 ms step. The minimum is taken no
    lower than the programme's typical level + BURST_FLOOR_LU, so a burst always
    ends more than 5 LU above it: speech coming back after a pause, or music
    after a quiet bar, at its usual loudness is not a burst. The typical level is
    the median momentary loudness over the gate (-70 LUFS), not the integrated
    loudness: in a short clip a loud burst dominates the integrated figure and
    would hide itself."""
    rows = rows[rows[:, 0] >= MOMENTARY_S * step * SERIES_HZ]
    if len(rows) < 2:
        return []
    with np.errstate(divide="ignore"):
        level = np.maximum(-0.691 + 10.0 * np.log10(rows[:, 1]), -70.0)
    gated = level[level > -70.0]
    floor = max(-70.0, float(np.median(gated)) + BURST_FLOOR_LU) if len(gated) else -70.0
    w = BURST_WINDOW_STEPS
    padded = np.concatenate([np.full(w, np.inf), level])
    prev_min = np.lib.stride_tricks.sliding_window_view(padded, w)[:len(level)].min(axis=1)
    base = np.maximum(prev_min, floor)
    hot = level - base > BURST_LU
    edges = np.diff(np.concatenate([[0], hot.astype(np.int8), [0]]))
    out = []
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
        out.append((int(rows[a, 0]), int(rows[b - 1, 0]), float(base[a]),
                    float(level[a:b].max())))
    return out


def _burst_span(f: sf.SoundFile, first: int, last: int, scrub: bool) -> tuple[int, int]:
    """Onset and end frames of the loud passage that made a burst.

    first/last: end frames of the first and last momentary blocks of the rise.
    Reads the 1 s before ``first`` up to ``last``; on 2 ms blocks of energy,
    the threshold is midway (in dB) between the loudest block of the 400 ms
    before ``first`` and the median of the audio 0.5 - 1 s before it; the
    onset is where the run of blocks above it that holds the loudest block
    starts, the end is after the last block above it."""
    rate = f.samplerate
    fine = max(1, round(FINE_S * rate))
    r0 = max(0, first - round(1.0 * rate))
    f.seek(r0)
    x = f.read(max(last, first) - r0, dtype="float32", always_2d=True)
    if scrub:
        x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    e = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    nb = len(e) // fine
    if nb == 0:
        return first, last
    energy = e[:nb * fine].reshape(nb, fine).mean(axis=1)
    k_first = min(nb, (first - r0) // fine)
    lo = max(0, k_first - round(0.4 * rate) // fine)
    if k_first <= lo:
        return first, last
    loud_at = lo + int(np.argmax(energy[lo:k_first]))
    q_end = max(0, k_first - round(0.5 * rate) // fine)
    quiet = float(np.median(energy[:q_end])) if q_end > 0 else float(energy[:loud_at + 1].min())
    thr = math.sqrt(energy[loud_at] * quiet)
    k = loud_at
    while k > 0 and energy[k - 1] > thr:
        k -= 1
    above = np.flatnonzero(energy[loud_at:] > thr)
    end = loud_at + (int(above[-1]) + 1 if len(above) else 1)
    return r0 + k * fine, min(r0 + end * fine, max(last, first))


def _dc_offsets(rows: list, total: int, rate: int, nch: int):
    """[(start, end, (channel, mean))] of runs of DC windows whose mean exceeds
    DC_LEVEL_DBFS on a channel (mean: the largest in the run), or the whole file
    when only its overall mean does.

    rows: [first frame, mean per channel...] per window (the last may be short)."""
    level = 10.0 ** (DC_LEVEL_DBFS / 20.0)
    out = []
    whole = np.zeros(nch)
    for i, row in enumerate(rows):
        first = int(row[0])
        end = int(rows[i + 1][0]) if i + 1 < len(rows) else total
        means = np.array(row[1:1 + nch])
        whole += means * (end - first)
        c = int(np.argmax(np.abs(means)))
        if end - first < DC_MIN_S * rate or abs(means[c]) <= level:
            continue
        if out and out[-1][1] == first:
            s0, _, worst = out[-1]
            out[-1] = (s0, end, worst if abs(worst[1]) >= abs(means[c]) else (c, means[c]))
        else:
            out.append((first, end, (c, float(means[c]))))
    if not out and total > 0:
        whole /= total
        c = int(np.argmax(np.abs(whole)))
        if abs(whole[c]) > level:
            out.append((0, total, (c, float(whole[c]))))
    return out


def _problem_list(probs: _Problems, rate: int, ceiling: float) -> list[dict]:
    out = []
    for kind, items in probs.found.items():
        for item in items:
            s, e, v = item[:3]
            if kind == "clipping":
                detail = f"{int(v)} samples at full scale"
            elif kind == "true_peak_over":
                detail = f"true peak {db(v):+.2f} dBTP (ceiling {ceiling:+.1f} dBTP)"
            elif kind == "burst":
                detail = (f"momentary {v:.1f} -> {item[3]:.1f} LUFS "
                          f"(+{item[3] - v:.1f} LU within 1 s)")
            elif kind == "dropout":
                detail = f"{(e - s) / rate * 1000:.1f} ms of digital silence"
            else:
                detail = f"channel {item[3] + 1} mean {v:+.5f} ({db(abs(v)):.1f} dBFS)"
            out.append({"kind": kind, "start_s": round(s / rate, 6),
                        "end_s": round(e / rate, 6), "detail": detail})
    out.sort(key=lambda p: (p["start_s"], p["kind"]))
    return out


# --- normalize -------------------------------------------------------------------

def _check_paths(src: Path, dst: Path | None, in_place: bool, force: bool) -> Path:
    if in_place:
        if dst is not None and dst.resolve() != src.resolve():
            raise LivemixError(f"{dst}: --in-place rewrites {src} itself; give -o OUT or "
                               "--in-place, not both")
        return src
    if dst is None:
        raise LivemixError(f"{src}: give -o OUT (or --in-place to rewrite {src} itself)")
    from .outputs import check_output
    return check_output(dst, [src], force=force, what="the input file",
                        hint=" (normalize never overwrites its input; --in-place rewrites it)")


_WAV_FAMILY = {"WAV", "WAVEX", "RF64"}


def _check_extension(dst: Path, fmt: str) -> None:
    """The output keeps the input's format: refuse a name that says another one."""
    ext = dst.suffix.lstrip(".").upper()
    named = {"AIF": "AIFF", "OGA": "OGG", "OPUS": "OGG"}.get(ext, ext)
    if named not in sf.available_formats() or named == fmt:
        return
    if named in _WAV_FAMILY and fmt in _WAV_FAMILY:
        return
    raise LivemixError(f"{dst}: normalize writes the input's format ({fmt}); give OUT a "
                       f".{fmt.lower()} name")


def _figures(r: dict) -> dict:
    keys = ("integrated_lufs", "lra_lu", "true_peak_dbtp", "sample_peak_dbfs")
    return {k: r[k] for k in keys}


def normalize(src, dst, target_lufs: float, true_peak_dbtp: float, in_place: bool = False,
              force: bool = False, progress=None) -> dict:
    """Write ``src`` gained to ``target_lufs`` (integrated, LUFS) with its true peak at or
    under ``true_peak_dbtp`` (dBTP) to ``dst`` (or over ``src`` itself if in_place).

    The limiter runs only when the gained true peak would exceed the ceiling.
    The output has the input's format, subtype, rate and length; it is written
    to a temporary file next to it and renamed, so nothing is left on error.
    Returns the before / after figures (the after ones measured on the
    written file), the gain (dB) and whether the limiter ran."""
    src = Path(src)
    dst = _check_paths(src, None if dst is None else Path(dst), in_place, force)
    if true_peak_dbtp > 0.0:
        raise LivemixError(f"--true-peak {true_peak_dbtp:g}: at most 0 dBTP")
    if not -70.0 < target_lufs < 0.0:
        raise LivemixError(f"--target {target_lufs:g}: between -70 and 0 LUFS")

    def stage(name, lo, hi):
        if progress is None:
            return None
        return lambda _stage, frac: progress(name, lo + frac * (hi - lo))

    with open_audio(src) as f:
        _check_extension(dst, f.format)
    before = analyze(src, true_peak_dbtp, progress=stage("measuring", 0.0, 0.4))
    if before["integrated_lufs"] is None:
        if before["duration_s"] < 0.4:
            raise LivemixError(f"{src}: too short to measure ({before['duration_s']:.3f} s; "
                               "integrated loudness needs at least 0.4 s); nothing written")
        raise LivemixError(f"{src}: silent (no 400 ms block above -70 LUFS): nothing to "
                           "normalize; nothing written")
    gain_db = target_lufs - before["integrated_lufs"]
    gained_tp = before["true_peak_dbtp"] + gain_db
    limit = gained_tp > true_peak_dbtp
    tmp = dst.with_name(f".{dst.name}.livemix-{os.getpid()}.tmp")
    try:
        reduced = _write_gained(src, tmp, 10.0 ** (gain_db / 20.0),
                                true_peak_dbtp if limit else None,
                                before["nonfinite_samples"] > 0, stage("writing", 0.4, 0.8))
        after = analyze(tmp, true_peak_dbtp, progress=stage("checking", 0.8, 1.0))
        if in_place:
            shutil.copymode(src, tmp)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {
        "file": str(src), "output": str(dst), "target_lufs": target_lufs,
        "true_peak_ceiling_dbtp": true_peak_dbtp, "gain_db": round(gain_db, 3),
        "limiter": bool(limit), "limited_samples": int(reduced),
        "before": _figures(before), "after": _figures(after),
    }


def _write_gained(src: Path, out_path: Path, gain: float, ceiling_db: float | None,
                  scrub: bool, progress) -> int:
    """Write src x gain (then true-peak limited to ceiling_db dBTP, if given) to out_path.

    Returns the number of samples the limiter reduced."""
    with open_audio(src) as f:
        if not sf.check_format(f.format, f.subtype):
            raise LivemixError(f"{src}: cannot write {f.format} {f.subtype} files "
                               "(convert it to WAV or FLAC first)")
        try:
            out = sf.SoundFile(str(out_path), "w", f.samplerate, f.channels, f.subtype,
                               endian=f.endian, format=f.format)
        except Exception as e:
            raise LivemixError(f"{out_path.parent}: cannot write ({e})") from None
        lim = None
        if ceiling_db is not None:
            from .limiting import CeilingLimiter
            lim = CeilingLimiter(f.samplerate, f.channels, ceiling_db, true_peak=True,
                                 maxblock=CHUNK)
        skip = lim.latency if lim is not None else 0
        expect = max(f.frames, 1)
        buf = np.zeros((CHUNK, f.channels), np.float32)
        g = np.float32(gain)
        with out:
            while True:
                x = f.read(CHUNK, dtype="float32", always_2d=True, out=buf)
                if len(x) == 0:
                    break
                if scrub:
                    np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
                x *= g
                if lim is not None:
                    x = lim.process(x)
                    cut = min(skip, len(x))
                    x, skip = x[cut:], skip - cut
                out.write(x)
                if progress is not None:
                    progress("writing", min(1.0, f.tell() / expect))
            if lim is not None:
                tail = lim.flush()
                out.write(tail[min(skip, len(tail)):])
    return lim.reduced if lim is not None else 0
