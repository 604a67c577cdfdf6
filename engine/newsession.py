"""``livemix new``: a ready hybrid session for AI video clips.

The clips' native audio goes on an ``ambience`` track (several clips strung in
order, each starting where the previous clip's picture ends), levelled to the
delivery target with ``match_loudness`` and sat 9 dB under it as a bed; the
voice-over on ``voice``; the music on ``music`` at -6 dB; one ducking rule
voice -> music and ambience (-10 dB, attack 15 ms, hold 200 ms, release
500 ms); the master with the preset's true-peak ceiling and target; and
``[output] video`` naming the clips, so ``render -o final.mp4`` and takes of
``run`` come out as video. Paths in the session are relative to it.

The voice gets a channel strip (``VOICE_HPF``, ``VOICE_COMP``): a high-pass at
80 Hz, 12 dB/octave, and a compressor at -18 dB, 3:1, 6 dB knee, attack 5 ms,
release 80 ms; plus ``denoise = true`` (RNNoise) when the session runs at
48 kHz and the denoiser loads. Each clip is checked as ``livemix check`` does
(``engine.check.check_clip``, the preset's target): when one is ``denoise`` (or
``lower`` with a steady noise floor: the session levels clips itself), the
ambience track gets ``denoise = true`` too, with a comment naming the clips
(RNNoise runs on the whole track). Where the denoiser cannot run, the session
leaves ``denoise`` out and a comment says why, so it still loads.
Control thread (CLI).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from .errors import LivemixError, SourceError

SAMPLERATE = 48000
AMBIENCE_DB = -9.0
VOICE_HPF = {"freq_hz": 80.0, "slope": 12}
VOICE_COMP = {"threshold_db": -18.0, "ratio": 3.0, "knee_db": 6.0, "attack_ms": 5.0,
              "release_ms": 80.0}
MUSIC_DB = -6.0
DUCK = {"depth_db": -10.0, "attack_ms": 15.0, "hold_ms": 200.0, "release_ms": 500.0}


def _q(text: str) -> str:
    """A TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()


def _audio_ok(path: Path, what: str) -> None:
    from .sources.media import open_media
    try:
        open_media(path).close()
    except SourceError as e:
        raise LivemixError(f"{what} {e}") from None


def _toml(v) -> str:
    return repr(v) if isinstance(v, (int, float)) else _q(v)


def denoise_problem(samplerate: int) -> str | None:
    """None when a session at ``samplerate`` can use ``denoise``, else why not."""
    if samplerate != 48000:
        return f"RNNoise works at 48 kHz only (the session runs at {samplerate} Hz)"
    from .dsp.denoise import library_problem
    why = library_problem()
    if why:
        return f"the denoiser is not available here: {why} (pip install 'livemix[denoise]')"
    return None


def _noisy_clips(clips, tgt) -> list[tuple[Path, dict]]:
    """The clips (path, check result) ``livemix check`` finds a steady noise floor in."""
    from .check import check_clip, needs_denoise
    out = []
    for path, _ in clips:
        try:
            r = check_clip(path, tgt.lufs, tgt.true_peak_dbtp)
        except SourceError as e:
            raise LivemixError(f"--video {e}") from None
        if needs_denoise(r):
            out.append((path, r))
    return out


def session_text(videos, voice, music, preset: str, out: Path) -> tuple[str, list[str]]:
    """The session TOML and notes for the user (clips without audio, ...)."""
    from .sources.media import is_video, open_media
    from .targets import target
    from .video import joinable, probe
    tgt = target(preset)
    base = out.parent
    infos = [probe(Path(v)) for v in videos]
    joinable(infos)
    notes, clips, at = [], [], 0.0
    for v in infos:
        try:
            open_media(v.path).close()
            clips.append((v.path, at))
        except SourceError as e:
            if not str(e).endswith("has no audio stream"):
                raise LivemixError(f"--video {e}") from None
            notes.append(f"{v.path.name} has no audio: its {v.duration_s:.1f} s of the "
                         "ambience are silent")
        at += v.duration_s
    for path, what in ((voice, "--voice"), (music, "--music")):
        if path is not None:
            _audio_ok(Path(path), what)
    names = ", ".join(v.path.name for v in infos)
    lines = [f"# A hybrid session for {names} (written by livemix new).",
             "# The clips' native audio is a bed under the voice-over; voice ducks music and "
             "ambience.",
             "", "[engine]", f"samplerate = {SAMPLERATE}", "blocksize = 128", ""]
    noisy = _noisy_clips(clips, tgt) if SAMPLERATE == 48000 and clips else []
    no_denoise = denoise_problem(SAMPLERATE) if voice is not None or noisy else None
    tracks = []
    if clips:
        lines += ["[[tracks]]", 'name = "ambience"']
        if len(clips) == 1 and clips[0][1] == 0.0:
            lines.append(f"video = {_q(_rel(clips[0][0], base))}")
        else:
            lines.append("clips = [")
            lines += [f"    {{video = {_q(_rel(p, base))}, at_s = {round(a, 6)!r}}},"
                      for p, a in clips]
            lines.append("]")
        lines += [f"match_loudness = {tgt.lufs:.1f}   # each clip levelled to the target "
                  "first (LUFS)", f"gain_db = {AMBIENCE_DB:.1f}"]
        if noisy:
            which = ", ".join(p.name for p, _ in noisy)
            has = "has" if len(noisy) == 1 else "have"
            whole = "" if len(noisy) == len(clips) else "; RNNoise runs on the whole track"
            if no_denoise:
                lines.append(f"# denoise = true   # for {which}'s steady noise floor, left "
                             f"out: {no_denoise}")
            else:
                lines.append(f"denoise = true   # {which} {has} a steady noise floor "
                             f"(livemix check: denoise){whole}")
                for path, r in noisy:
                    notes.append(f"{path.name}: a steady noise floor at "
                                 f"{r['noise_floor']['lufs']:.1f} LUFS between its sounds: the "
                                 "ambience goes through the denoiser")
        lines.append("")
        tracks.append("ambience")
    else:
        notes.append("no clip has audio: the session has no ambience track")
    if voice is not None:
        key = "video" if is_video(voice) else "file"
        lines += ["[[tracks]]", 'name = "voice"', f"{key} = {_q(_rel(Path(voice), base))}",
                  "gain_db = 0.0"]
        if no_denoise:
            lines.append(f"# denoise = true   # left out: {no_denoise}")
        else:
            lines.append("denoise = true   # RNNoise first, then the strip below")
        lines += ["[tracks.hpf]   # rumble and plosives out",
                  *(f"{k} = {_toml(v)}" for k, v in VOICE_HPF.items()),
                  "[tracks.comp]   # evens the voice out",
                  *(f"{k} = {_toml(v)}" for k, v in VOICE_COMP.items()), ""]
    if music is not None:
        key = "video" if is_video(music) else "file"
        lines += ["[[tracks]]", 'name = "music"', f"{key} = {_q(_rel(Path(music), base))}",
                  f"gain_db = {MUSIC_DB:.1f}", ""]
        tracks.append("music")
    if no_denoise and (voice is not None or noisy):
        notes.append(f"denoise is left out of the session: {no_denoise}")
    if voice is None and music is None and not clips:
        raise LivemixError("nothing to mix: the clips have no audio and there is no --voice "
                           "or --music")
    ducked = [t for t in ("music", "ambience") if t in tracks]
    if voice is not None and ducked:
        lines += ["[[ducking]]", 'key = "voice"',
                  "targets = [" + ", ".join(_q(t) for t in ducked) + "]",
                  *(f"{k} = {v:.1f}" for k, v in DUCK.items()), ""]
    lines += ["[master]", f"target = {_q(preset)}   # {tgt.lufs:g} LUFS, "
              f"{tgt.true_peak_dbtp:g} dBTP", 'ceiling_mode = "true-peak"',
              f"ceiling_db = {tgt.true_peak_dbtp:.1f}", "", "[output]"]
    if len(infos) == 1:
        lines.append(f"video = {_q(_rel(infos[0].path, base))}")
    else:
        lines.append("video = [" + ", ".join(_q(_rel(v.path, base)) for v in infos) + "]")
    lines += ["keep_native = false   # true: the clips' own audio as a second stream", ""]
    return "\n".join(lines), notes


def write_session(videos, voice, music, preset: str, out, force: bool = False):
    """Write the session (refusing to overwrite without ``force``) and check it loads.
    Returns (the loaded Session, notes)."""
    from .outputs import atomic, check_output
    from .session import session_from_text
    out = Path(out)
    if out.suffix.lower() != ".toml":
        raise LivemixError(f"{out}: a session file ends in .toml")
    sources = [v for v in videos or ()] + [p for p in (voice, music) if p]
    check_output(out, sources, force=force, what="one of the session's sources")
    text, notes = session_text(videos, voice, music, preset, out)
    session = session_from_text(text, out)          # checked as the file it will be
    with atomic(out) as tmp:
        try:
            tmp.write_text(text, encoding="utf-8")
        except OSError as e:
            raise LivemixError(f"{out}: cannot write ({e.strerror or e})") from None
    return session, notes


def cmd_new(args) -> int:
    session, notes = write_session(args.video, args.voice, args.music, args.preset,
                                   args.output, args.force)
    for n in notes:
        print(f"livemix: note: {n}", file=sys.stderr)
    names = ", ".join(t.name for t in session.tracks)
    print(f"wrote {args.output}: tracks {names}; target {args.preset}; "
          f"render it with: livemix render {args.output} -o final.mp4")
    return 0


def add_new_parser(sub):
    from .targets import PRESETS
    p = sub.add_parser("new", help="write a hybrid session for video clips: ambience, voice, "
                                   "music, ducking, a ceiling, video output")
    p.add_argument("--video", action="append", required=True, metavar="CLIP",
                   help="a video clip (repeat for several, in order)")
    p.add_argument("--voice", metavar="FILE", help="the voice-over")
    p.add_argument("--music", metavar="FILE", help="the music bed")
    p.add_argument("--preset", choices=tuple(PRESETS), default="web",
                   help="delivery target (default web)")
    p.add_argument("-o", "--output", required=True, metavar="SESSION.toml")
    p.add_argument("--force", action="store_true", help="overwrite SESSION.toml")
    p.set_defaults(func=cmd_new)
    return p
