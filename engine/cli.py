"""The ``livemix`` command.

User mistakes end in one line on stderr naming the file, key, track or port,
and a non-zero exit; never a traceback.
"""
from __future__ import annotations

import signal
import sys
import argparse
import math
import threading
from pathlib import Path


from .errors import LivemixError


def _checked(problem: str, parse, **kw):
    """An argparse type: ``parse`` the text, then engine.session's ``problem`` check (the
    one session files and the Python API use) must have nothing to say."""
    def convert(text: str):
        from . import session
        try:
            v = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        why = getattr(session, problem)(v, **kw)
        if why:
            raise argparse.ArgumentTypeError(why)
        return v
    return convert


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return v


_seconds = _checked("seconds_problem", float)
_samplerate = _checked("samplerate_problem", int)
_blocksize = _checked("blocksize_problem", int)
_live_blocksize = _checked("blocksize_problem", int, live=True)


def cmd_render(args) -> int:
    from .backends.offline import render
    from .session import load_session

    session = load_session(args.session)
    commands, notices = (), []
    duration = args.duration
    start = 0
    if args.automation:
        from .automation import load_automation
        commands, notices, take = load_automation(args.automation, session)
        start = int(take.get("start_frame") or 0)
        if duration is None and take.get("frames"):      # replay the take's length
            duration = take["frames"] / take["samplerate"]
    from .outputs import check_output
    from .session import session_sources
    from .video import VIDEO_OUTPUTS, check_video_output, deliver_render
    check_video_output(session, args.output)
    check_output(args.output, [session.path, args.automation, *session_sources(session)],
                 force=args.force, what="one of this render's inputs")
    if Path(args.output).suffix.lower() in VIDEO_OUTPUTS:
        for flag, value in (("--duration", args.duration), ("--subtype", args.subtype)):
            if value is not None:
                raise LivemixError(f"{flag}: not for a video ({args.output} is as long as "
                                   "its picture, its mix AAC or Opus)")
        # the picture runs on session time: an automation take that began mid-run
        # is rendered from the session's start, its moves at their session frames
        result, muxed = deliver_render(session, args.output, dict(
            blocksize=args.blocksize, commands=commands))
        for note in notices + result.notices:
            print(f"livemix: note: {note}", file=sys.stderr)
        print(muxed.summary())
        return 0
    result = render(session, args.output, duration_s=duration, subtype=args.subtype or "PCM_24",
                    blocksize=args.blocksize, commands=commands, start_frame=start)
    for note in notices + result.notices:
        print(f"livemix: note: {note}", file=sys.stderr)
    print(result.summary())
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


def run_live(session, args, say=print) -> int:
    """Run a session live until the duration, Ctrl-C or SIGTERM; print the summary."""
    import signal
    import threading

    from .live import LiveEngine

    engine = LiveEngine(session, backend=args.backend, device=args.device,
                        blocksize=args.blocksize, samplerate=args.samplerate,
                        client_name=args.client_name, record=args.record,
                        takes_dir=args.takes_dir, say=say)
    stop = threading.Event()
    started = threading.Event()

    signalled = threading.Event()

    def on_signal(signum, frame):
        first = not signalled.is_set()
        signalled.set()
        _interrupted.set()
        stop.set()
        if first and not started.is_set():
            raise KeyboardInterrupt     # Ctrl-C while starting: abandon the start now

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    surface = None
    stats = None
    summary = None
    try:
        if getattr(args, "stats_json", None):
            from .ui import StatsJson
            stats = StatsJson(args.stats_json)       # a bad path fails before the audio
        engine.start()
        if signalled.is_set():          # it came where it could not interrupt the start
            raise KeyboardInterrupt
        started.set()
        surface = _open_controller(session, args, engine, say)
        _watch(engine, surface, args, stop, stats, say)
    except BaseException:
        if not started.is_set():        # a start cut short: nobody's take
            engine.abort()
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if surface is not None:
            surface.stop()
        if engine.backend is not None:
            # stopped by a signal: the take report and video finish in the background
            summary = engine.stop(wait_jobs=not signalled.is_set())
        if stats is not None:
            stats.close()
    if summary is None:
        return 1
    for line in summary.lines():
        say(line)
    if surface is not None:
        st = surface.stats
        say(f"controller {surface.port.port_name}: {st.messages} messages, {st.applied} "
            f"changes, {surface.parser.invalid} invalid, {st.handler_errors} handler errors"
            + (f" (last: {st.last_error})" if st.handler_errors else "")
            + (f", {st.reconnects} reconnects" if st.reconnects else ""))
    return 1 if summary.dropped_frames else 0


def _watch(engine, surface, args, stop, stats, say) -> None:
    """Show the run (meter bridge, a line a second, or nothing) until stop or the duration;
    append a JSON line a second to --stats-json. Control thread."""
    import time

    from .ui import plain_line, with_controller

    def every_second(snap):
        if stats is not None:
            stats.write(snap)

    if args.ui == "tui":
        from .ui import MeterBridge
        MeterBridge(engine, surface, every_second=every_second).run(stop, args.duration)
        return
    t0 = time.monotonic()
    next_line = t0 + 1.0
    while not stop.wait(0.05):
        now = time.monotonic()
        if args.duration is not None and now - t0 >= args.duration:
            break
        if now >= next_line:
            next_line += 1.0
            snap = with_controller(engine.snapshot(), surface)
            if args.ui == "plain":
                say(plain_line(snap))
            every_second(snap)


def _open_controller(session, args, engine, say):
    """The MIDI surface asked for by the options or the session's [controller], or None."""
    c = session.controller
    port_name = getattr(args, "midi", None) or c.port
    virtual = getattr(args, "midi_virtual", None) or c.virtual
    if getattr(args, "midi", None):
        virtual = None
    if not port_name and not virtual and not getattr(args, "script", None):
        if getattr(args, "mapping", None):
            raise LivemixError(f"--mapping {args.mapping}: needs a controller "
                               "(--midi NAME, --midi-virtual NAME or [controller] port)")
        return None
    from controllers.mapping import load_mapping
    from controllers.surface import Surface
    mapping = load_mapping(getattr(args, "mapping", None) or c.mapping,
                           [t.name for t in session.tracks], duck_rules=len(session.ducking))
    api = getattr(args, "midi_api", None) or c.api
    if getattr(args, "script", None) is not None:        # the demo's scripted controller
        from controllers.virtual import LoopbackPort, VirtualController
        port = LoopbackPort()
        surface = Surface(engine, mapping, port)
        surface.start()
        player = VirtualController(port, args.script)
        player.start()
        surface.player = player
        say(f"livemix: a scripted controller rides the faders ({mapping.name})")
        return surface
    from controllers.ports import InputPort, OutputPort
    port = InputPort(virtual or port_name, virtual=bool(virtual), api=api)
    feedback = None
    if not virtual and any(b.feedback for b in mapping.bindings):
        feedback = OutputPort(port_name, api=api)
    surface = Surface(engine, mapping, port, feedback_port=feedback)
    surface.start()
    say(f"livemix: controller {port.port_name} ({mapping.name})")
    return surface


def cmd_run(args) -> int:
    from .session import load_session

    return run_live(load_session(args.session), args)


def cmd_devices(args) -> int:
    import json

    from .devices import list_devices

    info = list_devices()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print("audio devices:")
    for d in info["audio"]:
        print(f"  {d['index']:2d} {d['name']} ({d['hostapi']}): {d['inputs']} in, "
              f"{d['outputs']} out, {d['samplerate']:.0f} Hz")
    if not info["audio"]:
        print("  (none: `livemix run` will use the virtual backend)")
    print("MIDI inputs:")
    for name in info["midi_inputs"] or ["(none)"]:
        print(f"  {name}")
    return 0


def cmd_learn(args) -> int:
    from controllers.learn import learn, stdin_keys

    from .session import load_session

    session = load_session(args.session)
    port = args.midi or session.controller.port
    if not port:
        raise LivemixError("learn: give the controller with --midi NAME (see `livemix devices`)")
    keys = stdin_keys()                      # Enter = skip, q Enter = finish and write
    result = learn(session, port, args.output, say=print, skip=keys.skip, done=keys.done,
                   timeout_s=args.timeout, force=args.force,
                   api=args.midi_api or session.controller.api, strip=args.strip)
    return 0 if result.path else 1


def cmd_recover(args) -> int:
    from .recorder import recover, sidecar_of
    from .salvage import salvage

    path = Path(args.file)
    if path.is_dir():
        raise LivemixError(f"{path}: is a directory; give a take's file (.wav or .json)")
    if path.suffix.lower() == ".json":               # the take's sidecar: the whole take
        import json
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise LivemixError(f"{path}: not a take sidecar ({e})") from None
        files = [f["path"] for f in data.get("files") or [] if isinstance(f, dict)]
        if not files:
            raise LivemixError(f"{path}: not a take sidecar (it lists no files)")
        found = (path, data, None)
    else:
        found = sidecar_of(path) if path.is_file() else None
        files = None
    lines = salvage(found[0], found[1]) if found else None
    if lines is None:
        lines = [recover(path.parent / f) for f in files] if files else [recover(path)]
    for line in lines:
        print(line)
    return 0


def _number(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


class _FileProgress:
    """Progress of a long file job on stderr: a live percentage on a terminal,
    else a line per 10 %. Silent for files under ``LONG_S`` seconds."""

    LONG_S = 60.0

    def __init__(self, path: str):
        import soundfile as sf
        try:
            long = sf.info(str(path)).duration >= self.LONG_S
        except Exception:
            long = False               # the job itself reports why the file is unusable
        self.name = path
        self.enabled = long
        self.tty = sys.stderr.isatty()
        self.tenths = 1
        self.last = 0.0
        self.shown = False

    def __call__(self, stage: str, fraction: float) -> None:
        import time
        if not self.enabled:
            return
        if self.tty:
            now = time.monotonic()
            if now - self.last >= 0.1 or fraction >= 1.0:
                self.last = now
                sys.stderr.write(f"\r{stage} {self.name}: {fraction * 100:3.0f} %   ")
                sys.stderr.flush()
                self.shown = True
            return
        while fraction * 10 >= self.tenths - 1e-9 and self.tenths <= 10:
            print(f"livemix: {stage} {self.name}: {self.tenths * 10} %", file=sys.stderr,
                  flush=True)
            self.tenths += 1

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 78 + "\r")
            sys.stderr.flush()


def clock(seconds: float) -> str:
    """mm:ss.mmm, or h:mm:ss.mmm from an hour."""
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    text = f"{m:02d}:{rest / 1000:06.3f}"
    return f"{h}:{text}" if h else text


def _level(value, unit: str, sign: bool = False) -> str:
    if value is None:
        return f"-inf {unit}"
    return f"{value:+.1f} {unit}" if sign else f"{value:.1f} {unit}"


def analyze_lines(r: dict) -> list[str]:
    """The human report of ``livemix analyze``."""
    lines = [f"{r['file']}: {clock(r['duration_s'])}, {r['samplerate']} Hz, "
             f"{r['channels']} channel{'s' if r['channels'] != 1 else ''}",
             f"  integrated       {_level(r['integrated_lufs'], 'LUFS'):>12}",
             f"  loudness range   {_level(r['lra_lu'], 'LU'):>12}",
             f"  true peak        {_level(r['true_peak_dbtp'], 'dBTP', True):>12}",
             f"  sample peak      {_level(r['sample_peak_dbfs'], 'dBFS', True):>12}",
             f"  momentary max    {_level(r['momentary_max_lufs'], 'LUFS'):>12}",
             f"  short-term max   {_level(r['short_term_max_lufs'], 'LUFS'):>12}"]
    if r.get("nonfinite_samples"):
        lines.append(f"  NaN/Inf samples  {r['nonfinite_samples']:>7} (measured as 0)")
    counts = r["problem_counts"]
    if not counts:
        lines.append(f"problems: none (true-peak ceiling {r['ceiling_dbtp']:+.1f} dBTP)")
        return lines
    summary = ", ".join(f"{k.replace('_', ' ')} {n}" for k, n in counts.items())
    lines.append(f"problems: {sum(counts.values())} ({summary}; true-peak ceiling "
                 f"{r['ceiling_dbtp']:+.1f} dBTP)")
    width = len(clock(r["duration_s"]))
    for p in r["problems"]:
        lines.append(f"  {clock(p['start_s']):>{width}} - {clock(p['end_s']):<{width}}  "
                     f"{p['kind']:<15} {p['detail']}")
    listed = len(r["problems"])
    if listed < sum(counts.values()):
        lines.append(f"  ... {sum(counts.values()) - listed} more not listed")
    return lines


def cmd_analyze(args) -> int:
    import json

    from .check import analyze_media

    progress = _FileProgress(args.file)
    try:
        result = analyze_media(args.file, ceiling_dbtp=args.ceiling, progress=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(analyze_lines(result)))
    return 0


def normalize_lines(r: dict, preset: str | None) -> list[str]:
    """The before / after report of ``livemix normalize``."""
    b, a = r["before"], r["after"]
    how = f"preset {preset}: " if preset else ""
    lines = [f"{r['file']} -> {r['output']} ({how}target {r['target_lufs']:.1f} LUFS, "
             f"true-peak ceiling {r['true_peak_ceiling_dbtp']:+.1f} dBTP)",
             f"  {'':16} {'before':>12} {'after':>12}"]
    for label, key, unit, sign in (("integrated", "integrated_lufs", "LUFS", False),
                                   ("true peak", "true_peak_dbtp", "dBTP", True),
                                   ("sample peak", "sample_peak_dbfs", "dBFS", True),
                                   ("loudness range", "lra_lu", "LU", False)):
        lines.append(f"  {label:<16} {_level(b[key], unit, sign):>12} "
                     f"{_level(a[key], unit, sign):>12}")
    lines.append(f"  gain applied     {r['gain_db']:+.2f} dB")
    gained = b["true_peak_dbtp"] + r["gain_db"]
    if r["limiter"]:
        lines.append(f"  limiter          used: the true peak would have been {gained:+.2f} "
                     f"dBTP; {r['limited_samples']} samples reduced")
    else:
        lines.append(f"  limiter          not needed (true peak after the gain {gained:+.2f} "
                     "dBTP)")
    if a["integrated_lufs"] is not None and a["integrated_lufs"] < r["target_lufs"] - 0.1:
        lines.append(f"  note: the limiting cost {r['target_lufs'] - a['integrated_lufs']:.1f} "
                     "LU: the result is under the target (its peaks are far above its loudness)")
    return lines


def cmd_normalize(args) -> int:
    import json

    from .loudness import normalize
    from .targets import PRESETS

    if args.preset:
        if args.true_peak is not None:
            raise LivemixError(f"--true-peak goes with --target (preset {args.preset} sets "
                               f"{PRESETS[args.preset][1]:+.0f} dBTP)")
        target, ceiling = PRESETS[args.preset]
    else:
        target = args.target
        ceiling = -1.0 if args.true_peak is None else args.true_peak
    progress = _FileProgress(args.file)
    try:
        result = normalize(args.file, args.output, target, ceiling, in_place=args.in_place,
                           force=args.force, progress=progress)
    finally:
        progress.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(normalize_lines(result, args.preset)))
    return 0


def _default_ui() -> str:
    return "tui" if sys.stdin.isatty() and sys.stdout.isatty() else "plain"


def _live_options(p):
    p.add_argument("--backend", choices=("auto", "portaudio", "virtual"), default="auto",
                   help="auto: PortAudio when an output device exists, else virtual")
    p.add_argument("--device", metavar="NAME", help="output device (substring of its name)")
    p.add_argument("--blocksize", type=_live_blocksize, metavar="N",
                   help="fixed frames per callback (default: the host's, no added latency)")
    p.add_argument("--samplerate", type=_samplerate, metavar="HZ")
    p.add_argument("--client-name", default="livemix", metavar="NAME",
                   help="JACK client name (default livemix)")
    p.add_argument("--record", dest="record", action="store_true", default=True,
                   help="record a take (default)")
    p.add_argument("--no-record", dest="record", action="store_false")
    p.add_argument("--takes-dir", metavar="DIR", help="where takes go (default: [record] dir)")
    p.add_argument("--ui", choices=("tui", "plain", "none"), default=_default_ui(),
                   help="tui: the live meter bridge (default on a terminal); plain: a status "
                        "line per second (default otherwise); none: only the summary")
    p.add_argument("--stats-json", metavar="FILE",
                   help="append one JSON object of meters and health per second to FILE")
    p.add_argument("--midi", metavar="NAME", help="MIDI controller input (substring of its name)")
    p.add_argument("--midi-virtual", metavar="NAME",
                   help="create a virtual MIDI input port NAME for other programs to play into")
    p.add_argument("--mapping", metavar="NAME|FILE",
                   help="controller mapping: generic, nanokontrol2, midimix, mackie, or a file")
    p.add_argument("--midi-api", default=None, metavar="API",
                   help="rtmidi API: auto (default), jack, alsa, core, winmm")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the full usage is in --help)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="livemix", description="Real-time streaming audio mixer.")
    from . import __version__
    p.add_argument("--version", action="version", version=f"livemix {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("render", help="render a session to an audio file, offline")
    r.add_argument("session", help="session file (.toml)")
    r.add_argument("-o", "--output", required=True,
                   help="output audio file (.wav, .flac, ...), or a video (.mp4, .mov, .mkv, "
                        ".webm: the session's [output] video with the mix)")
    r.add_argument("--duration", type=_seconds, metavar="SECONDS",
                   help="length to render (default: the longest non-looping track)")
    r.add_argument("--subtype", default=None, choices=("PCM_16", "PCM_24", "PCM_32", "FLOAT"),
                   help="sample format (default PCM_24)")
    r.add_argument("--blocksize", type=_blocksize, metavar="N",
                   help="frames per block (default: the session's)")
    r.add_argument("--automation", metavar="TAKE.json",
                   help="replay the fader moves recorded in a take's sidecar (and its length)")
    r.add_argument("--force", action="store_true", help="overwrite the output if it exists")
    r.set_defaults(func=cmd_render)

    run = sub.add_parser("run", help="mix a session live, recording a take")
    run.add_argument("session", help="session file (.toml)")
    run.add_argument("--duration", type=_seconds, metavar="SECONDS",
                     help="stop after this long (default: until Ctrl-C)")
    _live_options(run)
    run.set_defaults(func=cmd_run)

    dev = sub.add_parser("devices", help="list audio devices and MIDI ports")
    dev.add_argument("--json", action="store_true")
    dev.set_defaults(func=cmd_devices)

    lp = sub.add_parser("learn", help="make a controller mapping by moving its controls")
    lp.add_argument("session", help="session file (.toml)")
    lp.add_argument("--midi", metavar="NAME", help="MIDI controller input (substring of its name)")
    lp.add_argument("-o", "--output", required=True, metavar="FILE.toml")
    lp.add_argument("--force", action="store_true", help="overwrite FILE.toml if it exists")
    lp.add_argument("--timeout", type=_positive_float, metavar="SECONDS",
                    help="skip a parameter when no control moves for this long")
    lp.add_argument("--midi-api", default=None, metavar="API")
    lp.add_argument("--strip", action="store_true", help="also each track's channel strip "
                    "(stage switches, filter frequencies, thresholds, gains)")
    lp.set_defaults(func=cmd_learn)

    rec = sub.add_parser("recover", help="repair a take cut short (kill -9, crash): every "
                         "file's header, plus the frames still in its record ring")
    rec.add_argument("file", help="any file of the take (or a lone WAV/W64/RF64 file)")
    rec.set_defaults(func=cmd_recover)

    an = sub.add_parser("analyze", help="loudness, true peak and problem passages of a file")
    an.add_argument("file", help="audio file (mono or stereo), or a video clip's audio")
    an.add_argument("--json", action="store_true", help="print one JSON object")
    an.add_argument("--ceiling", type=_number, default=-1.0, metavar="DBTP",
                    help="report true-peak overs above this (default -1 dBTP)")
    an.set_defaults(func=cmd_analyze)

    from .targets import PRESETS
    no = sub.add_parser("normalize", help="gain a file to a loudness target, true-peak "
                        "limited only if needed")
    no.add_argument("file", help="audio file (mono or stereo)")
    no.add_argument("-o", "--output", metavar="OUT",
                    help="output file (same format as the input; never the input itself)")
    goal = no.add_mutually_exclusive_group(required=True)
    goal.add_argument("--preset", choices=tuple(PRESETS),
                      help="; ".join(f"{k}: {t:g} LUFS / {c:g} dBTP"
                                     for k, (t, c) in PRESETS.items()))
    goal.add_argument("--target", type=_number, metavar="LUFS", help="integrated loudness")
    no.add_argument("--true-peak", type=_number, metavar="DBTP",
                    help="true-peak ceiling with --target (default -1)")
    no.add_argument("--in-place", action="store_true",
                    help="replace the input file (written beside it, then renamed)")
    no.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    no.add_argument("--json", action="store_true", help="print one JSON object")
    no.set_defaults(func=cmd_normalize)

    d = sub.add_parser("demo", help="generate the demo session and play it live")
    d.add_argument("--duration", type=_seconds, metavar="SECONDS", default=None,
                   help="how long to play (default: the whole demo, 20 s)")
    _live_options(d)
    d.set_defaults(func=cmd_demo)
    from .report import add_report_parser
    add_report_parser(sub)
    from .check import add_check_parser
    add_check_parser(sub)
    from .newsession import add_new_parser
    add_new_parser(sub)
    from .video import add_video_parser
    add_video_parser(sub)
    return p


_interrupted = threading.Event()


def _on_sigint(signum, frame):
    _interrupted.set()
    raise KeyboardInterrupt


def main(argv=None) -> int:
    _interrupted.clear()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)     # Ctrl-C: KeyboardInterrupt, noted
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except LivemixError as e:
        if _interrupted.is_set():
            print("livemix: interrupted", file=sys.stderr)
            return 130
        print(f"livemix: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("livemix: interrupted", file=sys.stderr)
        return 130
    except Exception:
        # a Ctrl-C inside a C extension's import can surface as another exception
        # (numba's: "ImportError: ... failed to import"): it was still a Ctrl-C
        if _interrupted.is_set():
            print("livemix: interrupted", file=sys.stderr)
            return 130
        raise


if __name__ == "__main__":
    sys.exit(main())
