"""Automation: every parameter change the audio thread applied, with its frame.

The audio thread logs each change it applies (``engine.rt.block.log_change``)
into an SPSC ring with the session frame it took effect at; ``drain`` moves
them out on a control thread into the take's sidecar as ``automation``, a
list of ``{"frame", "target", "param", "value"}`` (a contract):

- target: a track name, "master", or "ducking[N]" (1-based) for duck_depth;
- param: gain | pan | mute | solo | duck_depth, or a channel strip parameter
  (``engine.strip.PARAMS``: hpf_freq, comp_threshold, ...);
- value: dB for gain and duck_depth ("-inf" for silence), -1..1 for pan,
  0/1 for mute, solo and the strip's stage switches, a strip value in its unit
  ("inf" for an infinite ratio or range).

Frames are session frames (counted from the start of the run); the sidecar's
``start_frame`` is where the take begins (0 for a take started with the run),
and a take's log holds every change since the run started, so ``commands_from``
and ``livemix render SESSION --automation TAKE.json`` replay the run up to the
take's end and write the take's span: the result equals the take exactly.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .dsp.layout import A_READ, A_WRITE, CMD_FRAME, CMD_PARAM, CMD_TARGET, CMD_VALUE
from .errors import LivemixError
from .control import RULE, TRACK
from .params import P_DUCK_DEPTH, P_MASTER_GAIN, P_MUTE, P_SOLO

_NAMES = {p.pid: p.name for p in (*TRACK.values(), *RULE.values())}
_NAMES[P_MASTER_GAIN] = "gain"


def _json_value(v: float):
    return "-inf" if v == -math.inf else "inf" if v == math.inf else float(v)


def drain(st, session, frame_offset: int = 0) -> list[dict]:
    """Take every logged change out of the ring (control thread, one consumer).

    frame_offset: session frame at which the take started (subtracted)."""
    ring = st.auto_ring
    cap = ring.shape[0]
    out = []
    r = int(st.auto_idx[A_READ])
    w = int(st.auto_idx[A_WRITE])
    while r < w:
        row = ring[r & (cap - 1)]
        param = int(row[CMD_PARAM])
        target = int(row[CMD_TARGET])
        if param == P_MASTER_GAIN:
            name = "master"
        elif param == P_DUCK_DEPTH:
            name = f"ducking[{target + 1}]"
        else:
            name = session.tracks[target].name
        value = float(row[CMD_VALUE])
        if param in (P_MUTE, P_SOLO):
            value = 1.0 if value >= 0.5 else 0.0
        out.append({"frame": int(row[CMD_FRAME]) - frame_offset, "target": name,
                    "param": _NAMES[param], "value": _json_value(value)})
        r += 1
    st.auto_idx[A_READ] = r
    return out


def commands_from(automation: list, session, source: str = "automation") -> list[tuple]:
    """(frame, param id, target index, value) commands from an automation list.
    Errors name the source and the entry."""
    cmds = []
    for i, entry in enumerate(automation):
        where = f"{source}: automation[{i}]"
        try:
            frame = int(entry["frame"])
            target = entry["target"]
            param = entry["param"]
            value = entry["value"]
        except (KeyError, TypeError, ValueError):
            raise LivemixError(f"{where}: needs frame, target, param and value") from None
        try:
            value = float(value)        # also "-inf" and "inf"
        except (TypeError, ValueError):
            value = math.nan
        if math.isnan(value):
            raise LivemixError(f"{where}: value {entry['value']!r} is not a number")
        if target == "master":
            if param != "gain":
                raise LivemixError(f"{where}: the master has only a gain, not {param!r}")
            cmds.append((frame, P_MASTER_GAIN, 0, value))
            continue
        if param not in TRACK and param != "duck_depth":
            raise LivemixError(f"{where}: unknown param {param!r}")
        if param == "duck_depth":
            try:
                rule = int(str(target).removeprefix("ducking[").removesuffix("]")) - 1
            except ValueError:
                raise LivemixError(f"{where}: duck_depth needs a target like 'ducking[1]'"
                                   ) from None
            if not 0 <= rule < len(session.ducking):
                raise LivemixError(f"{where}: the session has no rule {target}")
            cmds.append((frame, P_DUCK_DEPTH, rule, value))
            continue
        names = [t.name for t in session.tracks]
        if target not in names:
            raise LivemixError(f"{where}: the session has no track {target!r}")
        cmds.append((frame, TRACK[param].pid, names.index(target), value))
    cmds.sort(key=lambda c: c[0])
    return cmds


def load_automation(path, session) -> tuple[list[tuple], list[str], dict]:
    """Commands from a take's sidecar, notices (e.g. the session file changed), and the
    sidecar itself (its ``start_frame`` and ``frames`` say which span the take is)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LivemixError(f"{path}: no such take sidecar") from None
    except (OSError, ValueError) as e:
        raise LivemixError(f"{path}: not a take sidecar ({e})") from None
    auto = data.get("automation")
    if auto is None:
        raise LivemixError(f"{path}: holds no automation")
    notices = []
    sha = data.get("session_sha256")
    if sha:
        import hashlib
        now = hashlib.sha256(session.path.read_bytes()).hexdigest()
        if now != sha:
            notices.append(f"{session.path} changed since the take was recorded: "
                           "the replay may differ from it")
    return commands_from(auto, session, str(path)), notices, data
