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
    result = render(session, args.output, duration_s=args.duration, subtype=args.subtype,
                    blocksize=args.blocksize)
    for note in result.notices:
        print(f"livemix: note: {note}", file=sys.stderr)
    print(result.summary())
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


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
    r.set_defaults(func=cmd_render)

    d = sub.add_parser("demo", help="generate the demo session and play it")
    d.add_argument("--out", metavar="FILE", help="where to write the demo mix")
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
