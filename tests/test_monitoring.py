"""Monitoring end to end, through a real JACK server: live meters and snapshot, the
true-peak ceiling on the live master, the take's loudness, events, lanes and report,
the meter bridge on the real engine, `--stats-json`, and `[master] target`."""
import io
import json
import struct
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from reference import sine

from engine.backends.offline import render
from engine.errors import SessionError
from engine.live import LiveEngine
from engine.loudness import analyze
from engine.session import load_session

SR = 48000


def isp_session(maker, seconds=6.0, master=None):
    """A voice keying a ducking rule over a hot bed full of inter-sample peaks:
    a sine at fs/4 with 45 degree phase whose samples reach 0 dBFS (+3 dBTP)."""
    n = int(seconds * SR)
    t = np.arange(n)
    bed = (np.sqrt(2) * 0.999 * np.sin(2 * np.pi * t / 4 + np.pi / 4)).astype(np.float32)
    gate = (np.sin(2 * np.pi * 0.5 * t / SR) > 0).astype(np.float32)    # 1 s on, 1 s off
    voice = sine(220, seconds, SR, 0.3) * gate
    maker.audio("bed.wav", bed)
    maker.audio("voice.wav", voice)
    m = {"target": "web"}
    m.update(master or {})
    path = maker.session([{"name": "bed", "file": "bed.wav"},
                          {"name": "voice", "file": "voice.wav", "gain_db": -6.0}],
                         ducking=[{"key": ["voice"], "targets": ["bed"], "depth_db": -9.0,
                                   "threshold_db": -30.0}],
                         master=m, record={"format": "wav", "subtype": "FLOAT", "dir": "takes"})
    return load_session(path)


def until(condition, timeout=30.0):
    """Wait for ``condition()`` (a hang guard, not a timing assertion)."""
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.01)


def png_size(path):
    head = open(path, "rb").read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", head[16:24])


def test_target_makes_the_ceiling_true_peak(maker):
    s = isp_session(maker)
    assert s.master.ceiling_mode == "true-peak"
    assert s.master.target.name == "web" and s.master.target.lufs == -14.0
    p = maker.session([{"name": "a", "file": "bed.wav"}], name="plain.toml")
    assert load_session(p).master.ceiling_mode == "sample-peak"


@pytest.mark.parametrize("master,problem", [
    ({"target": "loud"}, "'loud': use one of web, podcast, ebu-r128, atsc-a85"),
    ({"ceiling_mode": "tru-peak"}, "'tru-peak': use one of sample-peak, true-peak"),
])
def test_master_target_and_mode_errors_name_the_key(maker, master, problem):
    maker.audio("a.wav", np.zeros(100))
    p = maker.session([{"name": "a", "file": "a.wav"}], master=master)
    with pytest.raises(SessionError) as e:
        load_session(p)
    assert problem in str(e.value) and "master." in str(e.value)


def test_offline_true_peak_ceiling(maker, tmp_path):
    s = isp_session(maker, seconds=3.0)
    out = tmp_path / "tp.wav"
    render(s, str(out), subtype="FLOAT")
    figures = analyze(out)
    assert figures["true_peak_dbtp"] <= -1.0
    # in sample-peak mode the same mix keeps its inter-sample peaks over the ceiling
    s2 = isp_session(maker, seconds=3.0, master={"ceiling_mode": "sample-peak"})
    out2 = tmp_path / "sp.wav"
    render(s2, str(out2), subtype="FLOAT")
    f2 = analyze(out2)
    assert f2["sample_peak_dbfs"] <= -1.0 and f2["true_peak_dbtp"] > 0.0


def kweighting_offset_db(meter, sr, freqs):
    """How far livemix's K-weighting (BS.1770's filters) sits above pyloudnorm's, dB:
    the mean over ``freqs`` of the two magnitude responses' difference."""
    from scipy.signal import freqz

    from engine.dsp.meters import kweighting
    diff = []
    for f in freqs:
        ours = pyln_ = 1.0
        for b0, b1, b2, a1, a2 in kweighting(sr):
            ours *= freqz([b0, b1, b2], [1.0, a1, a2], worN=[f], fs=sr)[1][0]
        for stage in meter._filters.values():
            pyln_ *= freqz(stage.b, stage.a, worN=[f], fs=sr)[1][0]
        diff.append(20 * np.log10(abs(ours) / abs(pyln_)))
    assert max(diff) - min(diff) < 0.005          # flat: one offset for the whole mix
    return float(np.mean(diff))


def test_live_take_loudness_events_lanes_report(maker, jack, tmp_path):
    pyln = pytest.importorskip("pyloudnorm")
    session = isp_session(maker)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    try:
        snaps = []
        for _ in range(30):
            time.sleep(0.1)
            snaps.append(eng.snapshot())
    finally:
        summary = eng.stop()
    last = snaps[-1]
    # the snapshot: every field of the UI contract, live values
    assert [t["name"] for t in last["tracks"]] == ["bed", "voice"]
    assert last["master"]["ceiling_mode"] == "true-peak"
    assert last["master"]["target"]["name"] == "web"
    assert np.isfinite(last["master"]["momentary_lufs"])
    assert np.isfinite(last["master"]["integrated_lufs"])
    assert last["master"]["true_peak_dbtp"] <= -1.0
    assert last["tracks"][0]["tp_dbtp"] == pytest.approx(3.0, abs=0.25)   # the bed's source
    assert min(s["tracks"][0]["duck_gr_db"] for s in snaps) < -6.0        # the voice ducked it
    assert last["master"]["ceiling_hits"] > 0
    assert last["engine"]["recording"] and last["engine"]["take_bytes"] > 0

    side = json.loads(open(summary.take[:-4] + ".json").read())
    take, sr = sf.read(summary.take, dtype="float32")
    # the take's loudness in the sidecar is the take file's, as analyze and pyloudnorm see it
    loud = side["loudness"]
    again = analyze(summary.take)
    assert loud["true_peak_dbtp"] <= -1.0
    # the same meter on the same frames (a FLOAT take reads back exactly): equal
    assert loud["integrated_lufs"] == pytest.approx(again["integrated_lufs"], abs=1e-9)
    assert loud["true_peak_dbtp"] == pytest.approx(again["true_peak_dbtp"], abs=1e-9)
    # pyloudnorm, like with like: a whole number of 100 ms gating steps (pyloudnorm
    # rounds a partial last block in, BS.1770 leaves it out: up to 0.1 LU on this
    # take), and the offset between the two K-weighting filters taken out (pyloudnorm
    # designs its own from BS.1770's constants: 0.041-0.043 dB under the standard's
    # table at every frequency in this mix, computed below). What is left is rounding.
    cut = take[:(len(take) - int(0.4 * sr)) // (sr // 10) * (sr // 10) + int(0.4 * sr)]
    sf.write(tmp_path / "cut.wav", cut, sr, subtype="FLOAT")
    meter = pyln.Meter(sr)
    offset = kweighting_offset_db(meter, sr, freqs=(220.0, sr / 4))
    assert analyze(tmp_path / "cut.wav")["integrated_lufs"] == pytest.approx(
        meter.integrated_loudness(cut.astype(np.float64)) + offset, abs=0.005)
    assert summary.loudness == loud
    # events: the limiter started working, at a frame inside the take
    ceil = [e for e in side["events"] if e["kind"] == "ceiling"]
    assert ceil and 0 <= ceil[0]["frame"] < side["frames"]
    xruns = [e for e in side["events"] if e["kind"] == "xrun"]
    assert len(xruns) == side["xruns"]
    # lanes: the ducking rule's gain reduction 10 times a second
    lane = side["lanes"]["duck_gr_db"]["ducking[1]"]
    assert side["lanes"]["rate_hz"] == 10 and len(lane) >= 20
    assert min(lane) < -6.0 and max(lane) > -1.0
    # the report
    assert summary.reports and png_size(summary.reports[0]) == (1600, 1000)


def test_meter_bridge_on_the_real_engine(maker, jack):
    from rich.console import Console

    from engine.ui import MeterBridge
    session = isp_session(maker)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None, record=False)
    eng.start()
    out = io.StringIO()
    try:
        bridge = MeterBridge(eng, console=Console(file=out, width=120, height=40,
                                                  force_terminal=True), stdin=io.StringIO())
        stop = threading.Event()
        t0 = time.monotonic()
        bridge.run(stop, duration=1.5)
        elapsed = time.monotonic() - t0
        text = bridge.console.export_text() if bridge.console.record else out.getvalue()
        # the keys act on the real engine: select voice, mute it, take on, take off, quit
        bridge.frame()
        bridge.feed(b"\x1b[Bm")
        bridge.feed(b"r")                 # the take starts on the takes thread
        until(lambda: eng.recorder is not None and eng.recorder.recording)
        assert eng.get("voice", "mute") == 1.0 and eng.get("bed", "mute") == 0.0
        bridge.feed(b"r")
        until(lambda: len(eng.takes) == 1)
        bridge.feed(b"q")
        assert stop.is_set()
    finally:
        summary = eng.stop()
    assert summary.reports and png_size(summary.reports[0]) == (1600, 1000)
    assert bridge.refreshes >= 15 * elapsed * 0.9
    for field in ("bed", "voice", "LUFS", "LRA", "xruns", "web"):
        assert field in text, field
    assert summary.frames > SR


def test_run_stats_json_and_plain_lines(maker, jack, cli, tmp_path):
    session = isp_session(maker)
    stats = tmp_path / "stats.jsonl"
    p = cli("run", session.path, "--duration", "3.5", "--ui", "plain", "--backend",
            "portaudio", "--stats-json", stats, "--no-record")
    lines = [json.loads(x) for x in stats.read_text().splitlines()]
    assert len(lines) >= 2
    assert {"time_s", "tracks", "master", "engine"} <= set(lines[-1])
    assert lines[-1]["master"]["integrated_lufs"] is not None
    assert sum("LUFS" in x and "xruns" in x for x in p.stdout.splitlines()) >= 2


def test_stats_json_unwritable_is_one_line(maker, cli, tmp_path):
    session = isp_session(maker)
    p = cli("run", session.path, "--duration", "1", "--ui", "none", "--backend", "virtual",
            "--stats-json", tmp_path / "nodir" / "s.jsonl", check=False)
    assert p.returncode != 0
    assert len(p.stderr.strip().splitlines()) == 1 and "s.jsonl" in p.stderr


def test_a_mono_output_meters_what_it_records(maker):
    """A mono session's live loudness is the mono output's, as its take measures it (the
    live meter used to measure the stereo bus as two channels: 3 LU louder). A steady
    tone: the figure does not depend on where the two spans end."""
    maker.audio("a.wav", sine(997, 10.0, SR, 0.25))
    session = load_session(maker.session([{"name": "a", "file": "a.wav"}],
                                         engine={"channels": 1},
                                         record={"format": "wav", "subtype": "FLOAT",
                                                 "dir": "takes"}))
    eng = LiveEngine(session, backend="virtual", say=lambda *_: None)
    eng.start()
    try:
        time.sleep(2.5)
        live = eng.snapshot()["master"]["integrated_lufs"]
    finally:
        summary = eng.stop()
    take = summary.loudness["integrated_lufs"]
    assert sf.info(summary.take).channels == 1
    assert live == pytest.approx(take, abs=0.05)
