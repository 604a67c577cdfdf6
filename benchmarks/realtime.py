"""Real-time benchmark of the live engine through a private JACK dummy server.

    .venv/bin/python benchmarks/realtime.py [--seconds S] [--quick]

Prints one JSON object on stdout (progress goes to stderr). Sections:

``kernel_in_process``
    ``engine_cycle`` called back to back in this process for each track count and
    period: the compute floor of one callback, without JACK or scheduling.
``sweep``
    The live engine (``@cfunc`` callback in the supervised PortAudio child, state
    in shared memory) with 8 / 64 / 512 / 4,096 stereo tracks at 64 and 256
    frames per period, 48 kHz. Track 0 keys a ducking rule on tracks 1 and 2.
    Sources are looping pre-filled 8,192-frame rings (see
    ``rt_harness.fill_looping_rings``): the callback reads what it would read
    from rings kept full by a reader, with no reader thread and no files.
``cold_start``
    256 file tracks at 64 frames: the first 2 s after start, while the audio child
    touches the shared-memory source rings for the first time, against 2 s after
    the first pass over the 2.73 s rings (page faults and callback maxima).
``record64``
    The plain ``LiveEngine`` as users run it: 64 tracks of real WAV files through
    ``FileSource`` reader threads, 64 frames, a take recorded when the engine
    has a recorder, with no extra load, the meter bridge (``--ui tui``, drawn at
    20 Hz into an in-memory terminal), a CPU-bound Python thread, and a
    garbage-heavy Python thread in the parent process.
``baseline``
    What users would otherwise write: ``sounddevice.OutputStream`` with a Python
    callback calling the same ``engine_cycle`` kernel on in-process state, 64
    tracks at 64 frames, with the same load threads in the same process.
``targets``
    Pass/fail of: 0 xruns at 64 frames with 64 tracks and recording on, with and
    without the busy threads; the largest track count whose p99.9 callback
    duration stays under 50 % of a 64-frame block (target >= 4,000).

Units: ``*_us`` microseconds, ``*_s`` seconds, ``*_pct`` percent of one block
period (64 frames = 1333.33 us, 256 frames = 5333.33 us at 48 kHz). Engine
callback durations come from its load histogram (bins of 0.1 % of the period;
a quantile is reported as the upper edge of its bin); baseline durations are
exact ``perf_counter_ns`` differences. Each case runs on a fresh jackd, settles
for 1 s, then measures a window of ``--seconds``; xruns and callbacks before the
window are in ``before_window``. The machine may be shared: before each case the
script waits for others' CPU use to drop, records in ``window.machine`` how much
of the CPUs others used during the window, any foreign real-time threads, and
what a latency probe saw (a process sleeping 1 ms at a time at SCHED_FIFO
priority 1, counting late wake-ups: a wake-up more than 1 ms late on an
otherwise idle machine means the VM itself stalled); it re-runs disturbed cases
and marks those still disturbed with ``"disturbed"``. ``server.xrun_log_lines``
counts jackd's own "JackEngine::XRun" messages (one per late client per cycle),
independent of the PortAudio status flags the engine counts.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rt_harness as H  # noqa: E402

TARGET_P999_PCT = 50.0     # p99.9 callback duration, % of a 64-frame block
TARGET_TRACKS = 4000
CONTAMINATED_PCT = 5.0     # disturbance score (see _foreign) above which a case is re-run
_WAIT_QUIET_S = 120.0      # set from --wait-quiet in main()
_RETRIES = 2               # set from --retries in main()


def _args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=None,
                   help="measured window per case, seconds (default 60; 3 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 3 s per case, tracks 8 and 4096 only, no refinement")
    p.add_argument("--tracks", type=str, default=None,
                   help="comma-separated track counts for the sweep (default 8,64,512,4096)")
    p.add_argument("--periods", type=str, default="64,256",
                   help="comma-separated JACK periods for the sweep, frames (default 64,256)")
    p.add_argument("--refine", type=int, default=None,
                   help="extra bisection runs at 64 frames to locate the largest track count "
                        "under the p99.9 target when the largest count fails (default 3; 0 "
                        "with --quick)")
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds each case runs before its window starts (default 1)")
    p.add_argument("--wait-quiet", type=float, default=None,
                   help="before each case, wait up to this many seconds for the machine to be "
                        "quiet (< 10 %% CPU used by others) (default 120; 10 with --quick)")
    p.add_argument("--retries", type=int, default=None,
                   help="re-runs of a case that failed or that other processes disturbed (used "
                        "> 5 %% of the CPUs or ran real-time threads) (default 2; 0 with --quick)")
    p.add_argument("--skip", type=str, default="",
                   help="comma-separated sections to skip: "
                        "kernel,sweep,cold_start,record64,baseline")
    return p.parse_args(argv)


def _git() -> dict:
    def run(*cmd):
        p = subprocess.run(["git", "-C", str(H.ROOT), *cmd], capture_output=True, text=True)
        return p.stdout.strip()
    return {"commit": run("rev-parse", "--short", "HEAD"),
            "dirty_engine_files": [l[3:] for l in run("status", "--porcelain", "--",
                                                      "engine").splitlines()]}


def _meta(args) -> dict:
    import numba
    import numpy
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    jackd = subprocess.run(["jackd", "--version"], capture_output=True, text=True).stdout
    return {"samplerate_hz": H.SR, "window_s": args.seconds, "settle_s": args.settle,
            "wait_quiet_s": _WAIT_QUIET_S, "retries": _RETRIES,
            "disturbed_above_score": CONTAMINATED_PCT,
            "quick": args.quick, "cpus": os.cpu_count(), "cpu": cpu,
            "kernel": platform.release(), "python": platform.python_version(),
            "numpy": numpy.__version__, "numba": numba.__version__,
            "jackd": jackd.strip().splitlines()[0] if jackd.strip() else "?",
            "git": _git()}


def _windows(r: dict) -> list[dict]:
    return [v for v in r.values() if isinstance(v, dict) and "callbacks" in v and "machine" in v]


def _disturbance(m: dict) -> float:
    """Score of one window's ``machine`` report: the CPU others used (% of all CPUs),
    plus 10 when another process had real-time threads (they may preempt the audio
    thread whatever their CPU use). The latency probe is reported, not scored: the
    benchmark's own load can delay it too."""
    return m["foreign_cpu_pct"] + (10.0 if m["foreign_rt_threads"] else 0.0)


def _foreign(r: dict) -> float:
    """How disturbed a result is: the worst disturbance score of its windows."""
    return max((_disturbance(w["machine"]) for w in _windows(r)), default=0.0)


def _case(label: str, fn, **kw) -> dict:
    """Run one case; an exception becomes {"error": ...} so the other cases still run.

    Before each attempt, waits (up to --wait-quiet seconds) for other users of the
    machine to go quiet ("machine_before"). When others used more than
    CONTAMINATED_PCT % of the CPUs during a window, ran real-time threads, or the
    case failed, it is re-run (up to --retries times) and the least disturbed attempt
    is kept ("attempts"; "disturbed" if even that one was).
    """
    best = None
    for attempt in range(1, _RETRIES + 2):
        quiet = H.wait_quiet(_WAIT_QUIET_S) if _WAIT_QUIET_S > 0 else None
        H.log(f"{label} ..." + (f" (attempt {attempt})" if attempt > 1 else ""))
        t0 = time.monotonic()
        try:
            r = fn(**kw)
        except Exception as e:
            H.log(f"{label}: FAILED: {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stderr)
            H.cleanup_all()
            if attempt <= _RETRIES:
                continue
            if best is not None:
                break
            return {**{k: v for k, v in kw.items() if k != "windows"},
                    "error": f"{type(e).__name__}: {e}", "attempts": attempt}
        r["machine_before"] = quiet
        r["attempts"] = attempt
        for name, w in ((k, v) for k, v in r.items() if v in _windows(r)):
            cb = w.get("callback", {})
            H.log(f"{label} [{name}]: {w.get('callbacks')} callbacks, xruns {w.get('xruns')}, "
                  f"p99.9 {cb.get('p99_9', {}).get('us')} us "
                  f"({cb.get('p99_9', {}).get('pct')} %), max {cb.get('max', {}).get('us')} us,"
                  f" underruns {w.get('underruns', '-')}, others used "
                  f"{w['machine']['foreign_cpu_pct']} % CPU [{time.monotonic() - t0:.1f} s]")
        if best is None or _foreign(r) < _foreign(best):
            best = r
        if _foreign(best) <= CONTAMINATED_PCT:
            break
        if attempt <= _RETRIES:
            H.log(f"{label}: disturbed by other processes (score {_foreign(r):.1f}): "
                  "running it again")
    best["disturbed"] = _foreign(best) > CONTAMINATED_PCT
    return best


def _p999_pct(r: dict):
    return r.get("window", {}).get("callback", {}).get("p99_9", {}).get("pct")


def _recorder_available() -> tuple[bool, str]:
    if importlib.util.find_spec("engine.recorder") is None:
        return False, "engine/recorder.py does not exist yet: LiveEngine(record=True) cannot " \
                      "start, so these cases ran with record=False (no take, no record ring)"
    return True, ""


def run(args, out: dict) -> dict:
    """Run every section not skipped, filling ``out`` as results arrive (so an
    interrupted run can still report what it measured)."""
    out["meta"] = _meta(args)
    skip = set(filter(None, args.skip.split(",")))
    sec, settle = args.seconds, args.settle

    # warm the numba cache in this process (the audio children load it; a cold
    # compile inside a child would eat into its start-up timeout)
    H.log("loading / compiling the numba kernels ...")
    import engine.rt.callback  # noqa: F401

    # 0. the kernel alone, in this process (the compute floor of a callback)
    if "kernel" not in skip:
        out["kernel_in_process"] = []
        for period in args.period_list:
            for n in args.track_list:
                if _WAIT_QUIET_S > 0:
                    H.wait_quiet(_WAIT_QUIET_S)
                H.log(f"kernel in process: {n} tracks @ {period} ...")
                out["kernel_in_process"].append(H.kernel_only(period=period, ntracks=n,
                                                              seconds=1.0))

    # 1. track-count sweep
    if "sweep" not in skip:
        sweep = out["sweep"] = []
        for period in args.period_list:
            for n in args.track_list:
                sweep.append(_case(f"sweep {n} tracks @ {period}", H.run_live, period=period,
                                   ntracks=n, seconds=sec, settle_s=settle))
        # bisect between the largest passing and smallest failing count at 64 frames
        at64 = sorted((r for r in sweep if r.get("period_frames") == 64 and _p999_pct(r)),
                      key=lambda r: r["tracks"])
        ok = [r["tracks"] for r in at64 if _p999_pct(r) < TARGET_P999_PCT]
        bad = [r["tracks"] for r in at64 if _p999_pct(r) >= TARGET_P999_PCT]
        if 64 in args.period_list and ok and bad and max(ok) < min(bad):
            lo, hi = max(ok), min(bad)
            for _ in range(args.refine):
                if hi - lo <= max(8, lo // 16):
                    break
                mid = (lo + hi) // 2
                r = _case(f"refine {mid} tracks @ 64", H.run_live, period=64, ntracks=mid,
                          seconds=sec, settle_s=settle)
                r["refinement"] = True
                sweep.append(r)
                if _p999_pct(r) is None:
                    break
                if _p999_pct(r) < TARGET_P999_PCT:
                    lo = mid
                else:
                    hi = mid

    # 1b. the first seconds of a run with real file tracks (first pass over the rings)
    if "cold_start" not in skip:
        out["cold_start"] = _case("cold start 256 file tracks @ 64", H.run_cold_start,
                                  period=64, ntracks=256)

    # 2. 64 tracks at 64 frames, real files, recording, with parent-side load
    if "record64" not in skip:
        have_rec, note = _recorder_available()
        cases = []
        out["record64"] = {"recording": have_rec, "note": note or None, "cases": cases}
        for busy in ("none", "ui", "cpu", "gc"):
            r = _case(f"record64 busy={busy}", H.run_live, period=64, ntracks=64, seconds=sec,
                      settle_s=settle, busy=busy, feed="files", record=have_rec)
            if "error" in r and have_rec:
                note = f"LiveEngine(record=True) failed ({r['error']}); re-ran with record=False"
                have_rec = False
                r = _case(f"record64 busy={busy} (no recording)", H.run_live, period=64,
                          ntracks=64, seconds=sec, settle_s=settle, busy=busy, feed="files",
                          record=False)
            cases.append(r)
            out["record64"].update(recording=have_rec, note=note or None)

    # 3. baseline: Python callback through sounddevice, load in the same process
    if "baseline" not in skip:
        out["baseline"] = []
        for busy in ("none", "cpu", "gc"):
            out["baseline"].append(_case(f"baseline python callback busy={busy}",
                                         H.run_baseline, period=64, ntracks=64, seconds=sec,
                                         settle_s=settle, busy=busy))

    out["targets"] = _targets(out)
    return out


def _targets(out: dict) -> dict:
    t = {}
    rec = out.get("record64")
    if rec:
        per = {}
        for r in rec["cases"]:
            w = r.get("window")
            per[r.get("busy", "?")] = None if w is None else {
                "xruns": w["xruns"], "xruns_before_window": r["before_window"]["xruns"],
                "underruns": w["underruns"], "record_dropped_frames": w["record_dropped_frames"]}
        measured = [v for v in per.values() if v is not None]
        passed = len(measured) == 4 and all(v["xruns"] == 0 for v in measured)
        t["zero_xruns_64f_64tracks_recording"] = {
            "target": "0 xruns in the measured window at 64 frames, 64 tracks, recording on, "
                      "with no load / the meter bridge / a CPU-bound thread / a "
                      "garbage-heavy thread in the parent",
            "per_load": per, "pass": passed, "recording_was_on": rec["recording"],
            "note": None if rec["recording"] else
            "evaluated with recording OFF (no recorder yet): the target itself is not "
            "yet measurable; this is the xrun result without recording"}
    sweep = out.get("sweep")
    if sweep:
        at64 = [r for r in sweep if r.get("period_frames") == 64 and _p999_pct(r) is not None]
        under = [r["tracks"] for r in at64 if _p999_pct(r) < TARGET_P999_PCT]
        best = max(under) if under else 0
        by_n = sorted(at64, key=lambda r: r["tracks"])
        pct = lambda r, q: r["window"]["callback"][q]["pct"]      # noqa: E731
        t["max_tracks_p999_under_50pct_64f"] = {
            "target": f">= {TARGET_TRACKS} tracks with p99.9 callback duration "
                      f"< {TARGET_P999_PCT:.0f} % of a 64-frame block",
            "value": best,
            "p99_9_pct_by_tracks": {str(r["tracks"]): _p999_pct(r) for r in by_n},
            "pass": best >= TARGET_TRACKS,
            # context: the median and p99, and which results other processes disturbed
            "p50_pct_by_tracks": {str(r["tracks"]): pct(r, "p50") for r in by_n},
            "p99_pct_by_tracks": {str(r["tracks"]): pct(r, "p99") for r in by_n},
            "disturbed_by_tracks": {str(r["tracks"]): r.get("disturbed") for r in by_n}}
    return t


def main(argv=None) -> int:
    args = _args(argv)
    if args.seconds is None:
        args.seconds = 3.0 if args.quick else 60.0
    default_tracks = "8,4096" if args.quick else "8,64,512,4096"
    args.track_list = [int(x) for x in (args.tracks or default_tracks).split(",")]
    args.period_list = [int(x) for x in args.periods.split(",")]
    if args.refine is None:
        args.refine = 0 if args.quick else 3
    global _WAIT_QUIET_S, _RETRIES
    _RETRIES = args.retries if args.retries is not None else (0 if args.quick else 2)
    _WAIT_QUIET_S = args.wait_quiet if args.wait_quiet is not None else \
        (10.0 if args.quick else 120.0)

    def on_term(signum, frame):
        raise SystemExit(128 + signum)      # unwinds through every try/finally
    signal.signal(signal.SIGTERM, on_term)

    t0 = time.monotonic()
    result: dict = {}
    status = 0
    try:
        run(args, result)
    except (KeyboardInterrupt, SystemExit) as e:
        status = e.code if isinstance(e, SystemExit) and isinstance(e.code, int) else 130
        result["interrupted"] = f"{type(e).__name__} ({status}): partial results"
        H.log(f"interrupted ({status}): printing what was measured")
    finally:
        H.cleanup_all()
    result.setdefault("meta", {})["total_run_s"] = round(time.monotonic() - t0, 1)
    result["meta"]["git_after"] = _git()
    if "targets" not in result:
        result["targets"] = _targets(result)
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
