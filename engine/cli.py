"""The ``livemix`` command.

User mistakes end in one line on stderr naming the file, key, track or port,
and a non-zero exit; never a traceback.
"""
from __future__ import annotations

import argparse
import sys

from .errors import LivemixError


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return v


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return v


def cmd_render(args) -> int:
    from .backends.offline import render
    from .session import MAX_BLOCKSIZE, load_session

    session = load_session(args.session)
    if args.blocksize is not None and args.blocksize > MAX_BLOCKSIZE:
        raise LivemixError(f"--blocksize {args.blocksize}: at most {MAX_BLOCKSIZE}")
    commands, notices = (), []
    duration = args.duration
    start = 0
    if args.automation:
        from .automation import load_automation
        commands, notices, take = load_automation(args.automation, session)
        start = int(take.get("start_frame") or 0)
        if duration is None and take.get("frames"):      # replay the take's length
            duration = take["frames"] / take["samplerate"]
    result = render(session, args.output, duration_s=duration, subtype=args.subtype,
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
    import time

    from .live import LiveEngine

    engine = LiveEngine(session, backend=args.backend, device=args.device,
                        blocksize=args.blocksize, samplerate=args.samplerate,
                        client_name=args.client_name, record=args.record,
                        takes_dir=args.takes_dir, say=say)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    surface = None
    try:
        engine.start()
        surface = _open_controller(session, args, engine, say)
        t0 = time.monotonic()
        next_line = t0 + 1.0
        while not stop.wait(0.05):
            now = time.monotonic()
            if args.duration is not None and now - t0 >= args.duration:
                break
            if args.ui == "plain" and now >= next_line:
                next_line += 1.0
                s = engine.status()
                say(f"{s['time_s']:7.1f} s  load max {s['load_max'] * 100:5.1f} %  "
                    f"xruns {s['xruns']}  dropped {s['dropped_frames']}  "
                    f"underruns {s['underruns']}  peak {s['peak_dbfs']:6.1f} dBFS"
                    + ("  REC" if s["recording"] else "")
                    + ("  DEVICE LOST" if s["device_lost"] else "")
                    + (_controller_status(surface) if surface else ""))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if surface is not None:
            surface.stop()
        summary = engine.stop() if engine.backend is not None else None
    for line in summary.lines():
        say(line)
    if surface is not None:
        st = surface.stats
        say(f"controller {surface.port.port_name}: {st.messages} messages, {st.applied} "
            f"changes, {surface.parser.invalid} invalid, {st.handler_errors} handler errors"
            + (f" (last: {st.last_error})" if st.handler_errors else "")
            + (f", {st.reconnects} reconnects" if st.reconnects else ""))
    return 1 if summary.dropped_frames else 0


def _controller_status(surface) -> str:
    if not surface.stats.connected:
        return "  MIDI GONE"
    return f"  midi {surface.stats.last_message or '-'}"


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
                   api=args.midi_api or session.controller.api)
    return 0 if result.path else 1


def cmd_recover(args) -> int:
    from .recorder import recover

    print(recover(args.file))
    return 0


def _live_options(p):
    p.add_argument("--backend", choices=("auto", "portaudio", "virtual"), default="auto",
                   help="auto: PortAudio when an output device exists, else virtual")
    p.add_argument("--device", metavar="NAME", help="output device (substring of its name)")
    p.add_argument("--blocksize", type=_positive_int, metavar="N",
                   help="fixed frames per callback (default: the host's, no added latency)")
    p.add_argument("--samplerate", type=_positive_int, metavar="HZ")
    p.add_argument("--client-name", default="livemix", metavar="NAME",
                   help="JACK client name (default livemix)")
    p.add_argument("--record", dest="record", action="store_true", default=True,
                   help="record a take (default)")
    p.add_argument("--no-record", dest="record", action="store_false")
    p.add_argument("--takes-dir", metavar="DIR", help="where takes go (default: [record] dir)")
    p.add_argument("--ui", choices=("plain", "none"), default="plain",
                   help="plain: a status line per second; none: only the summary")
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
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    r = sub.add_parser("render", help="render a session to an audio file, offline")
    r.add_argument("session", help="session file (.toml)")
    r.add_argument("-o", "--output", required=True, help="output audio file (.wav, .flac, ...)")
    r.add_argument("--duration", type=_positive_float, metavar="SECONDS",
                   help="length to render (default: the longest non-looping track)")
    r.add_argument("--subtype", default="PCM_24", choices=("PCM_16", "PCM_24", "PCM_32", "FLOAT"),
                   help="sample format (default PCM_24)")
    r.add_argument("--blocksize", type=_positive_int, metavar="N",
                   help="frames per block (default: the session's)")
    r.add_argument("--automation", metavar="TAKE.json",
                   help="replay the fader moves recorded in a take's sidecar (and its length)")
    r.set_defaults(func=cmd_render)

    run = sub.add_parser("run", help="mix a session live, recording a take")
    run.add_argument("session", help="session file (.toml)")
    run.add_argument("--duration", type=_positive_float, metavar="SECONDS",
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
    lp.set_defaults(func=cmd_learn)

    rec = sub.add_parser("recover", help="repair the header of a take cut short")
    rec.add_argument("file")
    rec.set_defaults(func=cmd_recover)

    d = sub.add_parser("demo", help="generate the demo session and play it live")
    d.add_argument("--duration", type=_positive_float, metavar="SECONDS", default=None,
                   help="how long to play (default: the whole demo, 20 s)")
    _live_options(d)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except LivemixError as e:
        print(f"livemix: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("livemix: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
