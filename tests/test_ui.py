"""The live displays without an engine: the meter bridge rendered headless, its keys,
its refresh rate, the plain line and the --stats-json writer. A fake engine stands
in for LiveEngine (snapshot / set / toggle_record); the real one is tested end to
end elsewhere."""
import copy
import io
import json
import os
import threading
import time

import pytest
from rich.console import Console

from engine.errors import LivemixError
from engine.ui import StatsJson, plain_line, with_controller
from engine.ui.bridge import MeterBridge, PeakHolds, bar, parse_keys, render
from engine.ui.plain import clock_time, fmt, human_size, json_safe, pan_text

NEG_INF = float("-inf")


def make_snapshot(**over):
    snap = {
        "time_s": 12.34, "frame": 592320,
        "tracks": [
            {"name": "voice", "gain_db": -3.0, "pan": 0.0, "mute": False, "solo": False,
             "peak_dbfs": -12.3, "tp_dbtp": -4.2, "duck_gr_db": 0.0},
            {"name": "music", "gain_db": NEG_INF, "pan": -0.3, "mute": True, "solo": False,
             "peak_dbfs": -20.0, "tp_dbtp": -2.5, "duck_gr_db": -6.5},
            {"name": "fx", "gain_db": 2.5, "pan": 1.0, "mute": False, "solo": False,
             "peak_dbfs": NEG_INF, "tp_dbtp": None, "duck_gr_db": None},
        ],
        "master": {
            "gain_db": -1.5, "peak_dbfs": -3.1, "peak_l_dbfs": -3.1, "peak_r_dbfs": -4.0,
            "true_peak_dbtp": -0.8, "sample_peak_max_dbfs": -1.2,
            "momentary_lufs": -14.2, "short_term_lufs": -15.0, "integrated_lufs": -15.2,
            "lra_lu": 6.1, "momentary_max_lufs": -10.1, "short_term_max_lufs": -12.3,
            "ceiling_db": -1.0, "ceiling_mode": "true-peak", "ceiling_hits": 12,
            "target": {"name": "web", "lufs": -14.0, "true_peak_dbtp": -1.0},
        },
        "engine": {
            "backend": "portaudio", "device": "Scarlett 2i2", "load": 0.12, "load_max": 0.34,
            "xruns": 2, "dropped_frames": 0, "underruns": 1, "latency_ms": 10.7,
            "recording": True, "take": "/tmp/takes/take-003.wav", "take_s": 83.2,
            "take_bytes": 14_200_000, "device_lost": False,
        },
        "controller": {"port": "nanoKONTROL2", "connected": True, "last": "B0 07 64"},
    }
    for k, v in over.items():
        snap[k] = v
    return snap


def text_of(renderable, width=120) -> str:
    console = Console(record=True, width=width, file=io.StringIO(), force_terminal=False)
    console.print(renderable)
    return console.export_text()


def line_with(text: str, word: str) -> str:
    return next(line for line in text.splitlines() if word in line)


# -- rendering ------------------------------------------------------------------------
def test_bridge_shows_every_field():
    text = text_of(render(make_snapshot(), 0, PeakHolds()))
    for name in ("voice", "music", "fx", "master L", "master R", "true peak"):
        assert name in text
    voice, music, fx = (line_with(text, n) for n in ("voice", "music", "fx"))
    assert "-3.0 dB" in voice and " C " in voice and "-12.3" in voice and "-4.2" in voice
    assert voice.lstrip().startswith("▶")                 # the selected track
    assert "-inf dB" in music and "L30" in music and " M " in music and "-6.5 dB" in music
    assert "2.5 dB" in fx and "R100" in fx
    assert "-1.5 dB" in line_with(text, "master L")
    assert "M -14.2" in text and "S -15.0" in text and "I -15.2 LUFS" in text
    assert "LRA 6.1 LU" in text and "max M -10.1 S -12.3 LUFS" in text
    assert "I -15.2 LUFS (-1.2 LU from web -14)" in text
    assert "-1.0 dBTP (true-peak)" in text and "hits 12" in text
    assert "sample peak max -1.2 dBFS" in text and "true peak max -0.8 dBTP" in text
    assert "(over web -1 dBTP)" in text and "OVER" in line_with(text, "true peak")
    assert "load 12 % / max 34 %" in text
    assert "xruns 2" in text and "dropped 0" in text and "underruns 1" in text
    assert "latency 10.7 ms" in text
    assert "REC 1:23  14.2 MB  take-003.wav" in text
    assert "portaudio" in text and "Scarlett 2i2" in text
    assert "nanoKONTROL2" in text and "last B0 07 64" in text
    assert "q quit" in text and "r take" in text
    assert "CLIP" not in text and "DEVICE LOST" not in text


def test_bridge_shows_the_strip_gate_and_compressor():
    snap = make_snapshot()
    snap["tracks"][0].update(gate_open=True, gate_gr_db=0.0, comp_gr_db=-4.5)
    snap["tracks"][1].update(gate_open=False, gate_gr_db=-30.0, comp_gr_db=0.0)
    snap["tracks"][2].update(gate_open=None, gate_gr_db=None, comp_gr_db=None)
    text = text_of(render(snap, 0, PeakHolds()), width=160)
    head = line_with(text, "track")
    assert "gate" in head and "comp" in head
    voice, music, fx = (line_with(text, n) for n in ("voice", "music", "fx"))
    assert voice.rstrip().endswith("open  -4.5 dB")
    assert music.rstrip().endswith("-30.0 dB        -")       # closed; comp idle
    assert fx.rstrip().endswith("-")                          # the duck column, no strip


def test_bridge_clip_holds_two_seconds_then_clears():
    holds = PeakHolds()
    snap = make_snapshot()
    snap["tracks"][2]["peak_dbfs"] = -0.05                # a hot peak on fx
    text = text_of(render(snap, 0, holds, now=100.0))
    assert "CLIP" in line_with(text, "fx") and "CLIP" not in line_with(text, "voice")
    quiet = make_snapshot()
    text = text_of(render(quiet, 0, holds, now=101.5))
    assert "CLIP" in line_with(text, "fx")                # still held
    assert "-0.1" in line_with(text, "fx")                # the peak hold figure
    text = text_of(render(quiet, 0, holds, now=102.5))
    assert "CLIP" not in text


def test_master_clip_and_selection_marker():
    snap = make_snapshot()
    snap["master"]["peak_l_dbfs"] = 0.0
    text = text_of(render(snap, 2, PeakHolds()))
    assert "CLIP" in line_with(text, "master L") and "CLIP" not in line_with(text, "master R")
    assert line_with(text, "fx").lstrip().startswith("▶")


def test_bridge_states_device_lost_midi_gone_not_recording():
    snap = make_snapshot(controller={"port": "X-Touch", "connected": False, "last": None})
    snap["engine"].update(recording=False, device_lost=True, take=None)
    snap["master"]["target"] = None
    text = text_of(render(snap, 0, PeakHolds(), message="saved", keys=False))
    assert "DEVICE LOST" in text and "MIDI GONE" in text and "X-Touch" in text
    assert "REC" not in text and "not recording" in text
    assert "LU from" not in text and "saved" in text and "keys off" in text


def test_bridge_renders_unknown_values():
    """Before the meters have anything: None and -inf everywhere, no controller."""
    snap = {"time_s": 0.0, "frame": 0,
            "tracks": [{"name": "a", "gain_db": None, "pan": None, "mute": False,
                        "solo": False, "peak_dbfs": None, "tp_dbtp": None,
                        "duck_gr_db": None}],
            "master": {k: None for k in make_snapshot()["master"]},
            "engine": {"backend": "virtual", "device": None, "load": None,
                       "load_max": None, "xruns": 0, "dropped_frames": 0, "underruns": 0,
                       "latency_ms": None, "recording": False, "take": None, "take_s": 0.0,
                       "take_bytes": 0, "device_lost": False},
            "controller": None}
    snap["master"]["integrated_lufs"] = NEG_INF
    text = text_of(render(snap, 0, PeakHolds()))
    assert "I -inf LUFS" in text and "controller: none" in text and "latency -" in text
    snap["master"]["target"] = {"name": "podcast", "lufs": -16.0, "true_peak_dbtp": -1.0}
    assert "not measured yet; podcast -16" in text_of(render(snap, 0, PeakHolds()))


def test_peak_hold_holds_then_falls():
    holds = PeakHolds(hold_s=1.5, fall_db_per_s=20.0, release_db_per_s=12.0)
    key = ("track", "voice")
    snap = make_snapshot()
    snap["tracks"][0]["peak_dbfs"] = -6.0
    holds.update(snap, now=10.0)
    quiet = make_snapshot()
    quiet["tracks"][0]["peak_dbfs"] = -40.0
    holds.update(quiet, now=11.0)
    assert holds.get(key).hold == -6.0 and holds.get(key).level == pytest.approx(-18.0)
    holds.update(quiet, now=11.4)
    assert holds.get(key).hold == -6.0                    # 1.4 s: still held
    holds.update(quiet, now=12.0)
    assert holds.get(key).hold == pytest.approx(-6.0 - 20.0 * 0.6)
    for k in range(40):
        holds.update(quiet, now=12.0 + 0.1 * k)
    assert holds.get(key).hold == pytest.approx(-40.0) and holds.get(key).level == -40.0


def test_bar_and_formatting_helpers():
    assert len(bar(-30.0, -10.0, 30).plain) == 30
    assert bar(-30.0, -10.0, 30).plain.count("█") == 15
    assert bar(-30.0, -10.0, 30).plain[25] == "▌"             # -10 dB: 50/60 of the way
    assert bar(NEG_INF, NEG_INF, 10).plain == "·" * 10
    assert bar(6.0, 6.0, 10).plain == "█" * 10               # clamped at 0 dBFS
    assert [pan_text(p) for p in (-1.0, -0.3, 0.0, 0.004, 0.5, 1.0)] == \
        ["L100", "L30", "C", "C", "R50", "R100"]
    assert human_size(512) == "512 B" and human_size(14_200_000) == "14.2 MB"
    assert human_size(3_400_000_000) == "3.4 GB"
    assert clock_time(83.2) == "1:23" and clock_time(3725) == "1:02:05"
    assert fmt(None) == "-" and fmt(NEG_INF) == "-inf" and fmt(float("nan")) == "-"


# -- keys -----------------------------------------------------------------------------
class FakeEngine:
    def __init__(self, snapshot=None, fail=None):
        self.snap = snapshot or make_snapshot()
        self.fail = fail
        self.calls = []
        self.snapshots = 0
        self.recording = False

    def snapshot(self):
        self.snapshots += 1
        return copy.deepcopy(self.snap)

    def set(self, target, param, value, frame=-1):
        if self.fail:
            raise self.fail
        self.calls.append(("set", target, param, value))

    def toggle_record(self):
        if self.fail:
            raise self.fail
        self.recording = not self.recording
        self.calls.append(("toggle_record",))
        return self.recording


def test_parse_keys():
    assert parse_keys(b"q") == ["q"]
    assert parse_keys(b"R") == ["r"]
    assert parse_keys(b"\x1b[A\x1b[B\x1bOA\x1bOBkj") == ["up", "down"] * 3
    assert parse_keys(b"\x1b[5~m\x1b\x1b[1;5Cs") == ["m", "s"]  # other sequences dropped


def test_keys_toggle_mute_solo_record_and_quit():
    engine = FakeEngine()
    ui = MeterBridge(engine, console=Console(file=io.StringIO(), width=120))
    ui.frame()
    ui.feed(b"m")
    assert engine.calls == [("set", "voice", "mute", 1.0)]
    ui.feed(b"m")                            # before the next snapshot: back off
    assert engine.calls[-1] == ("set", "voice", "mute", 0.0)
    ui.feed(b"\x1b[B")
    assert ui.selected == 1
    ui.feed(b"m")                            # music is muted in the snapshot: unmute
    assert engine.calls[-1] == ("set", "music", "mute", 0.0)
    ui.feed(b"js")
    assert ui.selected == 2 and engine.calls[-1] == ("set", "fx", "solo", 1.0)
    ui.feed(b"jjj")
    assert ui.selected == 2                  # stays on the last track
    ui.feed(b"kkkk")
    assert ui.selected == 0
    ui.feed(b"r")
    assert engine.calls[-1] == ("toggle_record",) and "recording" in ui.message.plain
    ui.feed(b"r")
    assert engine.calls[-1] == ("toggle_record",) and "take finished" in ui.message.plain
    assert not ui.stop_event.is_set()
    ui.feed(b"x")                            # ignored
    ui.feed(b"q")
    assert ui.stop_event.is_set()


def test_engine_errors_show_in_the_message_line():
    engine = FakeEngine(fail=LivemixError("too many parameter changes queued; try again"))
    ui = MeterBridge(engine, console=Console(file=io.StringIO(), width=120))
    ui.frame()
    ui.feed(b"m")
    assert "too many parameter changes" in ui.message.plain
    engine.fail = RuntimeError("disk full")
    ui.feed(b"r")
    assert "RuntimeError: disk full" in ui.message.plain
    assert "RuntimeError: disk full" in text_of(ui.frame())


def test_keys_before_any_snapshot():
    ui = MeterBridge(FakeEngine(), console=Console(file=io.StringIO(), width=120))
    ui.feed(b"m\x1b[A")
    assert "no track" in ui.message.plain and ui.selected == 0


def test_surface_fills_the_controller():
    class Stats:
        connected, last_message = True, "90 3C 7F"

    class Port:
        port_name = "Launch Control"

    class Surface:
        stats, port = Stats(), Port()

    snap = with_controller(make_snapshot(controller=None), Surface())
    assert snap["controller"] == {"port": "Launch Control", "connected": True,
                                  "last": "90 3C 7F"}
    engine = FakeEngine(make_snapshot(controller=None))
    ui = MeterBridge(engine, surface=Surface(), console=Console(file=io.StringIO(), width=120))
    assert "Launch Control  last 90 3C 7F" in text_of(ui.frame())


# -- the loop -------------------------------------------------------------------------
def many_tracks(n=32):
    snap = make_snapshot()
    snap["tracks"] = [dict(snap["tracks"][0], name=f"track{i:02d}", peak_dbfs=-60 + 1.9 * i)
                      for i in range(n)]
    return snap


def test_refreshes_at_least_15_times_a_second():
    """32 tracks drawn on a (fake) terminal: every refresh really lays the frame out."""
    engine = FakeEngine(many_tracks(32))
    out = io.StringIO()
    console = Console(file=out, width=120, height=60, force_terminal=True)
    ui = MeterBridge(engine, refresh_hz=20, console=console)
    stop = threading.Event()
    t0 = time.monotonic()
    ui.run(stop, duration=1.0)
    elapsed = time.monotonic() - t0
    assert 0.95 <= elapsed < 1.5
    assert engine.snapshots >= 15 and ui.refreshes >= 15
    assert not stop.is_set()
    assert out.getvalue().count("track31") >= 15


def test_last_frame_stays_on_a_non_terminal():
    out = io.StringIO()
    MeterBridge(FakeEngine(), console=Console(file=out, width=120)).run(
        threading.Event(), duration=0.2)
    assert "voice" in out.getvalue() and "\x1b" not in out.getvalue()


def test_tracks_window_follows_the_selection():
    text = text_of(render(many_tracks(32), 20, PeakHolds(), max_tracks=10))
    assert "track15" in text and "track24" in text
    assert "track14" not in text and "track25" not in text
    assert "tracks 16-25 of 32" in text
    ui = MeterBridge(FakeEngine(many_tracks(32)),
                     console=Console(file=io.StringIO(), width=120, height=27))
    ui.frame()
    ui.feed(b"j" * 31)
    text = text_of(ui.frame())
    assert "▶ track31" in text and "tracks 23-32 of 32" in text


def test_stop_event_ends_the_loop_promptly():
    engine = FakeEngine()
    ui = MeterBridge(engine, console=Console(file=io.StringIO(), width=120))
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    t0 = time.monotonic()
    ui.run(stop)
    assert time.monotonic() - t0 < 0.6


def test_every_second_hook_writes_stats(tmp_path):
    engine = FakeEngine()
    path = tmp_path / "stats.jsonl"
    with StatsJson(path) as stats:
        ui = MeterBridge(engine, console=Console(file=io.StringIO(), width=120),
                         every_second=stats.write)
        ui.run(threading.Event(), duration=1.3)
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["engine"]["xruns"] == 2


def test_keys_from_a_terminal():
    """A pty as stdin: cbreak while running, keys act, the terminal is restored."""
    termios = pytest.importorskip("termios")
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        engine = FakeEngine()
        with open(slave, "rb", buffering=0, closefd=False) as stdin:
            ui = MeterBridge(engine, console=Console(file=io.StringIO(), width=120),
                             stdin=stdin)
            stop = threading.Event()
            seen = {}

            def type_keys():
                time.sleep(0.2)
                seen["lflag"] = termios.tcgetattr(slave)[3]
                os.write(master, b"\x1b[Bm")
                time.sleep(0.2)
                os.write(master, b"rq")

            threading.Thread(target=type_keys).start()
            ui.run(stop, duration=5.0)
        assert stop.is_set() and ui.keys_active
        assert not seen["lflag"] & termios.ICANON and not seen["lflag"] & termios.ECHO
        assert engine.calls == [("set", "music", "mute", 0.0), ("toggle_record",)]
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_terminal_restored_when_the_loop_fails():
    termios = pytest.importorskip("termios")
    master, slave = os.openpty()
    try:
        before = termios.tcgetattr(slave)
        engine = FakeEngine({"tracks": 5})       # a broken snapshot: rendering raises
        with open(slave, "rb", buffering=0, closefd=False) as stdin:
            ui = MeterBridge(engine, console=Console(file=io.StringIO(), width=120),
                             stdin=stdin)
            with pytest.raises(TypeError):
                ui.run(threading.Event(), duration=2.0)
        assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


# -- plain line and stats json --------------------------------------------------------
def test_plain_line():
    line = plain_line(make_snapshot())
    assert line.startswith("   12.3 s  load max  34.0 %")
    for part in ("xruns 2", "dropped 0", "underruns 1", "peak   -3.1 dBFS", "TP  -0.8 dBTP",
                 "M -14.2 S -15.0 I -15.2 LUFS", "REC", "midi B0 07 64"):
        assert part in line
    assert "DEVICE LOST" not in line and "\n" not in line
    snap = make_snapshot(controller={"port": "p", "connected": False, "last": None})
    snap["engine"].update(recording=False, device_lost=True)
    snap["master"]["peak_dbfs"] = NEG_INF
    line = plain_line(snap)
    assert "DEVICE LOST" in line and "MIDI GONE" in line and "REC" not in line
    assert "peak   -inf dBFS" in line
    assert "midi" not in plain_line(make_snapshot(controller=None))


def test_stats_json_one_object_per_line(tmp_path):
    path = tmp_path / "stats.jsonl"
    path.write_text('{"earlier": 1}\n')
    stats = StatsJson(path)
    snap = make_snapshot()
    snap["master"]["lra_lu"] = float("nan")
    stats.write(snap)
    stats.write(make_snapshot(time_s=13.34))
    assert len(path.read_text().splitlines()) == 3   # flushed per line, appended
    stats.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0] == {"earlier": 1}
    first = lines[1]
    assert first["tracks"][1]["gain_db"] is None and first["tracks"][2]["peak_dbfs"] is None
    assert first["master"]["lra_lu"] is None and first["master"]["integrated_lufs"] == -15.2
    assert first["engine"]["xruns"] == 2 and isinstance(first["wall_time"], float)
    assert lines[2]["time_s"] == 13.34
    assert "Infinity" not in path.read_text() and "NaN" not in path.read_text()


def test_stats_json_cannot_open(tmp_path):
    with pytest.raises(LivemixError) as err:
        StatsJson(tmp_path / "no" / "such" / "dir.jsonl")
    assert "--stats-json" in str(err.value) and "\n" not in str(err.value)


def test_json_safe_numpy():
    np = pytest.importorskip("numpy")
    out = json_safe({"a": np.float32(-np.inf), "b": np.int64(3), "c": (np.bool_(True),)})
    assert out == {"a": None, "b": 3, "c": [True]}
    json.dumps(out, allow_nan=False)
