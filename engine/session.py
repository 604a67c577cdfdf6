"""Session files (TOML) -> a validated, typed ``Session``.

Every error names the file, the line where it could be found, the key and
the problem, e.g.::

    show.toml:14: tracks[2].pan = 1.5: must be between -1 and 1

Paths inside a session are relative to the session file. Unknown keys are
errors (a typo must not be silently ignored). Called from control threads.
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from .errors import SessionError
from .strip import KEYS as STRIP_KEYS, Strip, parse_strip
from .control import MIN_DEPTH_DB
from .params import MAX_GAIN_DB
from .targets import PRESETS, Target, target as preset_target

SAMPLERATES = (22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000)
MAX_DURATION_S = 24 * 3600.0   # the longest render, run, or offset into one, seconds
MIN_LIVE_BLOCKSIZE = 16        # frames: 3,000 callbacks a second at 48 kHz
MAX_BLOCKSIZE = 8192


def session_sources(session) -> list:
    """Every file the session reads: tracks' files and clips, the output's video."""
    out = list(session.output.video)
    for t in session.tracks:
        out += ([t.file] if t.file else []) + [c.path for c in t.clips]
    return out


# --- the engine's limits: one check each, for session files, the command line and the API

def samplerate_problem(v) -> str | None:
    """Why ``v`` is not a session rate (Hz), or None."""
    if isinstance(v, bool) or not isinstance(v, int) or v not in SAMPLERATES:
        return (f"{v!r} Hz is not supported (use one of "
                f"{', '.join(str(s) for s in SAMPLERATES)})")
    return None


def blocksize_problem(v, live: bool = False) -> str | None:
    """Why ``v`` is not a block size (frames), or None. A live run needs at least
    MIN_LIVE_BLOCKSIZE (a smaller block is more callbacks than any host keeps up with;
    offline renders take any size)."""
    lo = MIN_LIVE_BLOCKSIZE if live else 1
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= MAX_BLOCKSIZE:
        return (f"{v!r} frames is not supported{' live' if live else ''} "
                f"({lo} to {MAX_BLOCKSIZE})")
    return None


def seconds_problem(v, zero_ok: bool = False) -> str | None:
    """Why ``v`` is not a length or time in seconds (more than 0, or 0 or more with
    ``zero_ok``; at most MAX_DURATION_S), or None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
        return f"{v!r} is not a number of seconds"
    if v < 0 or (v == 0 and not zero_ok):
        return f"{v} s: must be {'0 or more' if zero_ok else 'more than 0'}"
    if v > MAX_DURATION_S:
        return f"{v} s is more than {MAX_DURATION_S / 3600:.0f} hours"
    return None
# Ducking ramps longer than this are surely a typo (ms).
MAX_TIME_MS = 60_000.0


@dataclass(frozen=True)
class EngineConfig:
    samplerate: int = 48000   # Hz
    blocksize: int = 128      # frames per block
    channels: int = 2         # output channels (1 or 2)


@dataclass(frozen=True)
class Clip:
    path: Path                # absolute path of a video clip (or audio file)
    at_s: float = 0.0         # session time at which it starts, seconds
    stream: int | None = None # its audio stream, counted from 0 (None: the first)


@dataclass(frozen=True)
class Track:
    name: str
    file: Path | None         # absolute path of an audio file or video clip; None otherwise
    gain_db: float = 0.0      # fader, dB (-inf allowed)
    pan: float = 0.0          # -1 left .. +1 right
    mute: bool = False
    solo: bool = False
    loop: bool = False
    offset_s: float = 0.0     # session time at which the file starts, seconds
    input: tuple[int, ...] = ()   # live input: 1-based device input channels (1 or 2)
    stream: int | None = None     # a video clip's audio stream, counted from 0
    clips: tuple[Clip, ...] = ()  # a sequence of clips (then file is None)
    match_loudness: float | None = None   # level each file / clip to this LUFS (pre-fader)
    crossfade_ms: float = 10.0    # fade at each cut of a clip sequence, ms
    strip: Strip = Strip()        # the channel strip (engine.strip): nothing unless given


@dataclass(frozen=True)
class DuckRule:
    key: tuple[str, ...]
    targets: tuple[str, ...]
    threshold_db: float = -30.0   # dBFS sample peak of the key
    depth_db: float = -10.0       # <= 0
    attack_ms: float = 10.0
    hold_ms: float = 150.0
    release_ms: float = 400.0


@dataclass(frozen=True)
class Master:
    gain_db: float = 0.0
    ceiling_db: float = -1.0      # dBFS (sample peak) or dBTP (true peak) the output never exceeds
    ceiling_mode: str = "sample-peak"   # or "true-peak" (the default with a target)
    target: Target | None = None  # delivery target shown live on the meter bridge


RECORD_FORMATS = ("wav", "w64", "rf64", "flac")
RECORD_SUBTYPES = ("PCM_16", "PCM_24", "PCM_32", "FLOAT")


@dataclass(frozen=True)
class Record:
    dir: Path | None = None       # absolute; None = "takes" beside the session file
    format: str = "wav"
    subtype: str = "PCM_24"
    stems: bool = False           # also record each track's pre-fader signal


@dataclass(frozen=True)
class Output:
    video: tuple[Path, ...] = ()  # the picture of renders and takes: clips joined in order
    keep_native: bool = False     # keep the clips' own audio as a second, disabled stream


@dataclass(frozen=True)
class Controller:
    port: str | None = None       # MIDI input: a substring of the port name
    virtual: str | None = None    # or: open a virtual input port with this name
    mapping: str = "generic"      # a built-in map name, or a mapping file (absolute path)
    api: str = "auto"             # rtmidi API: auto | jack | alsa | core | winmm


@dataclass(frozen=True)
class Session:
    path: Path
    engine: EngineConfig
    tracks: tuple[Track, ...]
    ducking: tuple[DuckRule, ...] = ()
    master: Master = field(default_factory=Master)
    record: Record = field(default_factory=Record)
    controller: Controller = field(default_factory=Controller)
    output: Output = field(default_factory=Output)

    @property
    def name(self) -> str:
        return self.path.stem

    def track_index(self, name: str) -> int:
        """Index of the track called ``name``; SessionError naming it if none."""
        for i, t in enumerate(self.tracks):
            if t.name == name:
                return i
        raise SessionError(f"{self.path}: no track named {name!r} "
                           f"(tracks: {', '.join(t.name for t in self.tracks)})")


# --- validation ----------------------------------------------------------------

class _Where:
    """Finds the line of a key in the TOML text, for error messages."""

    def __init__(self, path: Path, text: str):
        self.path = path
        self.lines = text.splitlines()

    def line(self, table: str | None, index: int | None, key: str | None) -> int | None:
        start = 0
        if table is not None:
            header = re.compile(r"^\s*\[\[\s*%s\s*\]\]" % re.escape(table) if index is not None
                                else r"^\s*\[\s*%s\s*\]" % re.escape(table))
            seen = -1
            found = None
            for n, text in enumerate(self.lines):
                if header.match(text):
                    seen += 1
                    if index is None or seen == index:
                        found = n
                        break
            if found is None:
                return None
            start = found
            if key is None:
                return found + 1
        if key is None:
            return None
        if "." in key and table is not None:        # a sub-table of the track: tracks.hpf ...
            found = self._sub_line(table, start, key)
            if found is not None:
                return found
            key = key.split(".")[0].split("[")[0]    # else the line of its inline table
        pat = re.compile(r"^\s*\"?%s\"?\s*=" % re.escape(key))
        for n in range(start + (1 if table is not None else 0), len(self.lines)):
            if table is not None and n > start and re.match(r"^\s*\[", self.lines[n]):
                break
            if pat.match(self.lines[n]):
                return n + 1
        return start + 1 if table is not None else None

    def _sub_line(self, table, start, key):
        """The line of ``key`` ("hpf.freq_hz", "eq[2].q") in a sub-table written
        [tracks.hpf] or [[tracks.eq]] after the table's header at ``start``."""
        sub, leaf = key.split(".", 1)
        nth = int(sub[sub.index("[") + 1:-1]) - 1 if "[" in sub else 0
        sub = sub.split("[")[0]
        header = re.compile(r"^\s*\[\[?\s*%s\.%s\s*\]\]?" % (re.escape(table), re.escape(sub)))
        pat = re.compile(r"^\s*\"?%s\"?\s*=" % re.escape(leaf.split(".")[0]))
        seen = -1
        for n in range(start + 1, len(self.lines)):
            text = self.lines[n]
            if header.match(text):
                seen += 1
                if seen != nth:
                    continue
                for m in range(n + 1, len(self.lines)):
                    if re.match(r"^\s*\[", self.lines[m]):
                        return n + 1
                    if pat.match(self.lines[m]):
                        return m + 1
                return n + 1
            if re.match(r"^\s*\[\[\s*%s\s*\]\]" % re.escape(table), text):
                return None                          # the next track: not written as a sub-table
        return None

    def error(self, table, index, key, problem) -> SessionError:
        line = self.line(table, index, key)
        loc = f"{self.path}:{line}" if line else f"{self.path}"
        name = table or ""
        if index is not None:
            name += f"[{index + 1}]"
        if key is not None:
            name = f"{name}.{key}" if name else key
        return SessionError(f"{loc}: {name}: {problem}")


def _number(where, table, index, key, value, lo=None, hi=None, allow_neg_inf=False,
            integer=False):
    if isinstance(value, str) and allow_neg_inf and value.strip().lower() == "-inf":
        return -math.inf
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kind = "an integer" if integer else "a number"
        extra = ' or "-inf"' if allow_neg_inf else ""
        raise where.error(table, index, key, f"{value!r} is not {kind}{extra}")
    if integer and not isinstance(value, int):
        raise where.error(table, index, key, f"{value!r} is not an integer")
    if math.isnan(value) or (math.isinf(value) and not (allow_neg_inf and value < 0)):
        raise where.error(table, index, key, f"{value!r} is not a finite number")
    if lo is not None and value < lo and not (allow_neg_inf and value == -math.inf):
        raise where.error(table, index, key, f"{value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        raise where.error(table, index, key, f"{value!r} is above the maximum {hi}")
    return value


def _bool(where, table, index, key, value):
    if not isinstance(value, bool):
        raise where.error(table, index, key, f"{value!r} is not true or false")
    return value


def _string(where, table, index, key, value):
    if not isinstance(value, str) or not value.strip():
        raise where.error(table, index, key, f"{value!r} is not a non-empty string")
    return value


def _names(where, table, index, key, value):
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise where.error(table, index, key, f"{value!r} is not a list of track names")
    return tuple(value)


def _check_keys(where, table, index, data, allowed):
    if not isinstance(data, dict):
        raise where.error(table, index, None, "must be a table")
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else \
                f" (known keys: {', '.join(allowed)})"
            raise where.error(table, index, key, f"unknown key{hint}")


_TOP = ("engine", "tracks", "ducking", "master", "record", "controller", "output")
_ENGINE = ("samplerate", "blocksize", "channels")
_TRACK = ("name", "file", "video", "clips", "input", "gain_db", "pan", "mute", "solo", "loop",
          "offset_s", "stream", "match_loudness", "crossfade_ms") + STRIP_KEYS
_SOURCES = ("file", "video", "clips", "input")
_CLIP = ("video", "file", "at_s", "stream")
_OUTPUT = ("video", "keep_native")
MAX_CROSSFADE_MS = 1000.0
_DUCK = ("key", "targets", "threshold_db", "depth_db", "attack_ms", "hold_ms", "release_ms")
_MASTER = ("gain_db", "ceiling_db", "ceiling_mode", "target")
CEILING_MODES = ("sample-peak", "true-peak")
_RECORD = ("dir", "format", "subtype", "stems")
_CONTROLLER = ("port", "virtual", "mapping", "api")


def load_session(path, check_files: bool = True) -> Session:
    """Read and validate a session file. Raises SessionError naming file, line and key."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SessionError(f"{path}: session file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SessionError(f"{path}: cannot read session file: {e}") from None
    return session_from_text(text, path, check_files)


def session_from_text(text: str, path, check_files: bool = True) -> Session:
    """A session from its TOML ``text`` as if read from ``path`` (errors name it)."""
    path = Path(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SessionError(f"{path}: not valid TOML: {e}") from None
    return parse_session(data, path.resolve(), text, check_files)


def parse_session(data: dict, path: Path, text: str = "", check_files: bool = True) -> Session:
    where = _Where(path, text)
    _check_keys(where, None, None, data, _TOP)

    eng = data.get("engine", {})
    _check_keys(where, "engine", None, eng, _ENGINE)
    sr = _number(where, "engine", None, "samplerate", eng.get("samplerate", 48000), integer=True)
    if samplerate_problem(sr):
        raise where.error("engine", None, "samplerate", samplerate_problem(sr))
    bs = _number(where, "engine", None, "blocksize", eng.get("blocksize", 128), integer=True)
    if blocksize_problem(bs):
        raise where.error("engine", None, "blocksize", blocksize_problem(bs))
    ch = _number(where, "engine", None, "channels", eng.get("channels", 2), integer=True)
    if ch not in (1, 2):
        raise where.error("engine", None, "channels", f"{ch} output channels: use 1 or 2")
    engine = EngineConfig(sr, bs, ch)

    raw_tracks = data.get("tracks", [])
    if not isinstance(raw_tracks, list) or not raw_tracks:
        raise where.error(None, None, "tracks", "a session needs at least one [[tracks]] table")
    track_names = [t.get("name") for t in raw_tracks
                   if isinstance(t, dict) and isinstance(t.get("name"), str)]
    tracks = []
    seen = {}
    for i, t in enumerate(raw_tracks):
        _check_keys(where, "tracks", i, t, _TRACK)
        if "name" not in t:
            raise where.error("tracks", i, "name", "missing (every track needs a unique name)")
        name = _string(where, "tracks", i, "name", t["name"])
        if name in seen:
            raise where.error("tracks", i, "name",
                              f"duplicate track name {name!r} (also tracks[{seen[name] + 1}])")
        if name == "master":
            raise where.error("tracks", i, "name", "'master' is reserved for the master bus")
        seen[name] = i
        given = [k for k in _SOURCES if k in t]
        if len(given) != 1:
            raise where.error("tracks", i, given[1] if len(given) > 1 else "file",
                              f"track {name!r} needs exactly one source: file = \"...\", "
                              "video = \"...\", clips = [...] or input = [channel, ...]"
                              + (f" (it has {' and '.join(given)})" if given else ""))
        file = None
        channels = ()
        clips = ()
        if given[0] in ("file", "video"):
            key = given[0]
            file = (path.parent / _string(where, "tracks", i, key, t[key])).resolve()
            if check_files:
                _check_media(where, "tracks", i, key, file, t.get("stream"))
        elif given[0] == "clips":
            clips = _clips(where, i, t["clips"], path.parent, check_files)
        else:
            channels = t["input"]
            if isinstance(channels, int) and not isinstance(channels, bool):
                channels = [channels]
            if (not isinstance(channels, list) or not 1 <= len(channels) <= 2
                    or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1
                               for c in channels)):
                raise where.error("tracks", i, "input",
                                  f"{t['input']!r}: give one or two device input channels, "
                                  "counted from 1 (e.g. [1] or [1, 2])")
            channels = tuple(channels)
        stream = None
        if "stream" in t:
            if given[0] != "video" and not (file is not None and _is_video(file)):
                raise where.error("tracks", i, "stream",
                                  "picks a video clip's audio stream: use it with video = ...")
            stream = int(_number(where, "tracks", i, "stream", t["stream"], 0, 63, integer=True))
        match = None
        if "match_loudness" in t:
            if channels:
                raise where.error("tracks", i, "match_loudness",
                                  "levels files and clips; a live input has no loudness "
                                  "to measure ahead")
            match = float(_number(where, "tracks", i, "match_loudness", t["match_loudness"],
                                  -70.0, 0.0))
        if clips:
            for key in ("loop", "offset_s"):
                if key in t:
                    raise where.error("tracks", i, key,
                                      "not with clips (each clip has its own at_s)")
        elif "crossfade_ms" in t:
            raise where.error("tracks", i, "crossfade_ms", "is the fade at the cuts of clips = "
                                                           "[...]")
        tracks.append(Track(
            name=name, file=file,
            gain_db=float(_number(where, "tracks", i, "gain_db", t.get("gain_db", 0.0),
                                  lo=-math.inf, hi=MAX_GAIN_DB, allow_neg_inf=True)),
            pan=float(_number(where, "tracks", i, "pan", t.get("pan", 0.0), -1.0, 1.0)),
            mute=_bool(where, "tracks", i, "mute", t.get("mute", False)),
            solo=_bool(where, "tracks", i, "solo", t.get("solo", False)),
            loop=_bool(where, "tracks", i, "loop", t.get("loop", False)),
            offset_s=float(_number(where, "tracks", i, "offset_s", t.get("offset_s", 0.0),
                                   lo=0.0, hi=MAX_DURATION_S)),
            input=channels,
            stream=stream,
            clips=clips,
            match_loudness=match,
            crossfade_ms=float(_number(where, "tracks", i, "crossfade_ms",
                                       t.get("crossfade_ms", 10.0), 0.1, MAX_CROSSFADE_MS)),
            strip=parse_strip(
                t, lambda key, problem, i=i: where.error("tracks", i, key, problem),
                lambda key, value, lo, hi, i=i: _number(where, "tracks", i, key, value, lo, hi),
                track_names, sr),
        ))

    rules = []
    raw_rules = data.get("ducking", [])
    if not isinstance(raw_rules, list):
        raise where.error(None, None, "ducking", "must be an array of tables ([[ducking]])")
    for i, d in enumerate(raw_rules):
        _check_keys(where, "ducking", i, d, _DUCK)
        for k in ("key", "targets"):
            if k not in d:
                raise where.error("ducking", i, k, "missing")
        key = _names(where, "ducking", i, "key", d["key"])
        targets = _names(where, "ducking", i, "targets", d["targets"])
        for k, names in (("key", key), ("targets", targets)):
            for n in names:
                if n not in seen:
                    raise where.error("ducking", i, k,
                                      f"unknown track {n!r} (tracks: {', '.join(seen)})")
        both = set(key) & set(targets)
        if both:
            raise where.error("ducking", i, "targets",
                              f"track {sorted(both)[0]!r} cannot duck itself "
                              "(it is both a key and a target)")
        rules.append(DuckRule(
            key=key, targets=targets,
            threshold_db=float(_number(where, "ducking", i, "threshold_db",
                                       d.get("threshold_db", -30.0), -100.0, 0.0)),
            depth_db=float(_number(where, "ducking", i, "depth_db", d.get("depth_db", -10.0),
                                   MIN_DEPTH_DB, 0.0)),
            attack_ms=float(_number(where, "ducking", i, "attack_ms", d.get("attack_ms", 10.0),
                                    0.0, MAX_TIME_MS)),
            hold_ms=float(_number(where, "ducking", i, "hold_ms", d.get("hold_ms", 150.0),
                                  0.0, MAX_TIME_MS)),
            release_ms=float(_number(where, "ducking", i, "release_ms",
                                     d.get("release_ms", 400.0), 0.0, MAX_TIME_MS)),
        ))

    m = data.get("master", {})
    _check_keys(where, "master", None, m, _MASTER)
    target = None
    if "target" in m:
        name = _string(where, "master", None, "target", m["target"]).lower()
        if name not in PRESETS:
            raise where.error("master", None, "target",
                              f"{name!r}: use one of {', '.join(PRESETS)}")
        target = preset_target(name)
    mode = _string(where, "master", None, "ceiling_mode",
                   m.get("ceiling_mode", "true-peak" if target else "sample-peak")).lower()
    if mode not in CEILING_MODES:
        raise where.error("master", None, "ceiling_mode",
                          f"{mode!r}: use one of {', '.join(CEILING_MODES)}")
    master = Master(
        gain_db=float(_number(where, "master", None, "gain_db", m.get("gain_db", 0.0),
                              lo=-math.inf, hi=MAX_GAIN_DB, allow_neg_inf=True)),
        ceiling_db=float(_number(where, "master", None, "ceiling_db",
                                 m.get("ceiling_db", target.true_peak_dbtp if target else -1.0),
                                 -60.0, 0.0)),
        ceiling_mode=mode,
        target=target,
    )
    r = data.get("record", {})
    _check_keys(where, "record", None, r, _RECORD)
    fmt = _string(where, "record", None, "format", r.get("format", "wav")).lower()
    if fmt not in RECORD_FORMATS:
        raise where.error("record", None, "format",
                          f"{fmt!r}: use one of {', '.join(RECORD_FORMATS)}")
    subtype = _string(where, "record", None, "subtype", r.get("subtype", "PCM_24")).upper()
    if subtype not in RECORD_SUBTYPES:
        raise where.error("record", None, "subtype",
                          f"{subtype!r}: use one of {', '.join(RECORD_SUBTYPES)}")
    rdir = r.get("dir")
    record = Record(
        dir=(path.parent / _string(where, "record", None, "dir", rdir)).resolve() if rdir else None,
        format=fmt, subtype=subtype,
        stems=_bool(where, "record", None, "stems", r.get("stems", False)))
    c = data.get("controller", {})
    _check_keys(where, "controller", None, c, _CONTROLLER)
    if "port" in c and "virtual" in c:
        raise where.error("controller", None, "virtual",
                          "give either port (a controller to open) or virtual (a port to "
                          "create), not both")
    mapping = _string(where, "controller", None, "mapping", c.get("mapping", "generic"))
    if "/" in mapping or mapping.endswith(".toml"):
        mapping = str((path.parent / mapping).resolve())
    controller = Controller(
        port=_string(where, "controller", None, "port", c["port"]) if "port" in c else None,
        virtual=(_string(where, "controller", None, "virtual", c["virtual"])
                 if "virtual" in c else None),
        mapping=mapping,
        api=_string(where, "controller", None, "api", c.get("api", "auto")))
    o = data.get("output", {})
    _check_keys(where, "output", None, o, _OUTPUT)
    videos = o.get("video", [])
    if isinstance(videos, str):
        videos = [videos]
    if not isinstance(videos, list) or not all(isinstance(v, str) and v.strip() for v in videos):
        raise where.error("output", None, "video",
                          f"{o.get('video')!r}: give a video clip, or a list of clips to join")
    videos = tuple((path.parent / v).resolve() for v in videos)
    if check_files:
        for v in videos:
            _check_video(where, v)
    keep = _bool(where, "output", None, "keep_native", o.get("keep_native", False))
    if keep and not videos:
        raise where.error("output", None, "keep_native", "needs video = \"clip.mp4\"")
    output = Output(video=videos, keep_native=keep)
    return Session(path=path, engine=engine, tracks=tuple(tracks), ducking=tuple(rules),
                   master=master, record=record, controller=controller, output=output)


def _is_video(path: Path) -> bool:
    from .sources.media import is_video
    return is_video(path)


def _clips(where, i, raw, base: Path, check_files: bool) -> tuple[Clip, ...]:
    """tracks[i].clips: [{video = "...", at_s = 0.0, stream = N}, ...] in time order."""
    if not isinstance(raw, list) or not raw or not all(isinstance(c, dict) for c in raw):
        raise where.error("tracks", i, "clips",
                          "give a list of clips: [{video = \"shot1.mp4\", at_s = 0.0}, ...]")
    out = []
    for k, c in enumerate(raw):
        label = f"clips[{k + 1}]"
        for key in c:
            if key not in _CLIP:
                raise where.error("tracks", i, "clips", f"{label}.{key}: unknown key "
                                  f"(known keys: {', '.join(_CLIP)})")
        keys = [key for key in ("video", "file") if key in c]
        if len(keys) != 1:
            raise where.error("tracks", i, "clips", f"{label}: give video = \"clip.mp4\"")
        name = c[keys[0]]
        if not isinstance(name, str) or not name.strip():
            raise where.error("tracks", i, "clips", f"{label}.{keys[0]}: {name!r} is not a "
                              "file name")
        at = c.get("at_s", 0.0 if k == 0 else None)
        if at is None:
            raise where.error("tracks", i, "clips", f"{label}.at_s: missing (when the clip "
                              "starts, in seconds)")
        if seconds_problem(at, zero_ok=True):
            raise where.error("tracks", i, "clips", f"{label}.at_s: {at!r} is not a time in "
                              "seconds (0 or more)")
        if out and at <= out[-1].at_s:
            raise where.error("tracks", i, "clips", f"{label}.at_s = {at}: clips must be in "
                              f"time order (clips[{k}] starts at {out[-1].at_s})")
        stream = c.get("stream")
        if stream is not None and (isinstance(stream, bool) or not isinstance(stream, int)
                                   or not 0 <= stream <= 63):
            raise where.error("tracks", i, "clips", f"{label}.stream: {stream!r} is not an "
                              "audio stream number (0, 1, ...)")
        p = (base / name).resolve()
        if check_files:
            _check_media(where, "tracks", i, "clips", p, stream)
        out.append(Clip(path=p, at_s=float(at), stream=stream))
    return tuple(out)


def _check_media(where, table, index, key, file: Path, stream=None):
    """A file or clip track's source must open and decode (SessionError naming it)."""
    if not _is_video(file):
        return _check_audio_file(where, index, file, key)
    from .errors import SourceError
    from .sources.media import open_media
    if not file.exists():
        raise where.error(table, index, key, f"{file}: no such file")
    try:
        open_media(file, stream).close()
    except SourceError as e:
        raise where.error(table, index, key, str(e)) from None


def _check_video(where, file: Path):
    """[output] video: a clip with a picture."""
    if not file.exists():
        raise where.error("output", None, "video", f"{file}: no such file")
    from .video import VideoError, probe
    try:
        probe(file)
    except VideoError as e:
        raise where.error("output", None, "video", str(e)) from None


def _check_audio_file(where, index, file: Path, key: str = "file"):
    import soundfile as sf

    if not file.exists():
        raise where.error("tracks", index, key, f"{file}: no such file")
    try:
        info = sf.info(str(file))
    except Exception as e:  # libsndfile's reasons are short and specific
        reason = str(e).split(":")[-1].strip() or type(e).__name__
        raise where.error("tracks", index, key,
                          f"{file}: not a readable audio file ({reason})") from None
    if info.channels > 2:
        raise where.error("tracks", index, key,
                          f"{file}: has {info.channels} channels; livemix plays mono and "
                          "stereo files (mix it down to stereo first)")
    if info.frames == 0:
        raise where.error("tracks", index, key, f"{file}: contains no audio")
