"""The channel strip live, through a real JACK server: every stage on, a strip parameter
moved from MIDI (a JACK MIDI port of another process), the take equal to the automation
re-render sample for sample, and the strip's meters in the snapshot, `--stats-json`'s
source, the take's lanes and its report."""
import json
import threading
import time

import numpy as np
import pytest
import soundfile as sf
from reference import sine

from controllers.mapping import load_mapping
from controllers.ports import InputPort, wait_for_port
from controllers.surface import Surface
from engine.live import LiveEngine
from engine.session import load_session
from engine.strip import INDEX, PARAMS, strip_position, strip_value
from midi_sender import Sender

SR = 48000
SECONDS = 8.0
COMP_THRESHOLD = PARAMS[INDEX["comp_threshold"]]
CLICKS = np.arange(1234, int(SECONDS * SR), SR // 2)      # session frames of the clicks


@pytest.fixture
def jack(jack_clients):
    """The test process opens a JACK MIDI client: the shared server."""
    return jack_clients


def strip_session(maker):
    """voice: bursts of a 220 Hz tone at -6 dBFS, 1 s on / 1 s off, over a -70 dBFS hum
    (the gate closes in the gaps), through hpf, gate, a 2-band EQ and a compressor at
    -18 dB; music: a 1 kHz tone compressed by a compressor keyed by the voice; amb:
    seeded noise with the denoiser on; click: a click every 0.5 s and no strip (it waits
    for the denoiser, as every track of the session does). Stems recorded."""
    n = int(SECONDS * SR)
    t = np.arange(n)
    on = (np.sin(2 * np.pi * 0.5 * t / SR) > 0).astype(np.float64)
    voice = sine(220, SECONDS, SR, 0.5) * on + sine(50, SECONDS, SR, 10 ** (-70 / 20))
    maker.audio("voice.wav", voice)
    maker.audio("music.wav", sine(1000, SECONDS, SR, 0.2))
    maker.audio("amb.wav", np.random.default_rng(7).normal(0, 0.01, n))
    click = np.zeros(n)
    click[CLICKS] = 0.25
    maker.audio("click.wav", click)
    path = maker.session(
        [{"name": "voice", "file": "voice.wav",
          "hpf": {"freq_hz": 80.0, "slope": 12},
          "gate": {"threshold_db": -40.0, "hysteresis_db": 6.0, "range_db": 30.0,
                   "hold_ms": 50.0, "release_ms": 100.0},
          "eq": [{"type": "peak", "freq_hz": 3000.0, "gain_db": 3.0, "q": 1.0},
                 {"type": "low-shelf", "freq_hz": 200.0, "gain_db": -2.0, "q": 0.7}],
          "comp": {"threshold_db": -18.0, "ratio": 3.0, "knee_db": 6.0, "attack_ms": 5.0,
                   "release_ms": 80.0}},
         {"name": "music", "file": "music.wav",
          "comp": {"threshold_db": -40.0, "ratio": 4.0, "key": "voice"}},
         {"name": "amb", "file": "amb.wav", "denoise": True},
         {"name": "click", "file": "click.wav"}],
        master={"ceiling_db": -1.0}, record={"subtype": "FLOAT", "stems": True})
    return load_session(path)


def test_every_stage_live_midi_move_replays_and_meters(maker, jack, cli):
    session = strip_session(maker)
    mapping = maker.root / "strip-map.toml"
    mapping.write_text('name = "strip"\nbindings = [\n  { control = "cc", channel = 1, '
                       'number = 20, target = "voice", param = "comp_threshold", '
                       'mode = "absolute" },\n]\n')
    sender = Sender(jack.env)
    assert wait_for_port("lmsender:ctl", api="jack", output=False)
    eng = LiveEngine(session, backend="portaudio", say=lambda *_: None)
    eng.start()
    surface = Surface(eng, load_mapping(mapping, [t.name for t in session.tracks]),
                      InputPort("lmsender", api="jack"))
    surface.start()
    snaps, stop = [], threading.Event()

    def meter():
        while not stop.wait(0.02):
            snaps.append(eng.snapshot())

    reader = threading.Thread(target=meter)
    reader.start()
    try:
        time.sleep(1.5)
        pickup = round(127 * strip_position(COMP_THRESHOLD, -18.0))
        sender.say(f"cc 1 20 {pickup}")            # the knob where the engine is: picked up
        time.sleep(0.3)
        sender.say("cc 1 20 40")                   # then down: more compression
        moved = strip_value(COMP_THRESHOLD, 40 / 127)
        end = time.monotonic() + 10
        while eng.get("voice", "comp_threshold") != moved and time.monotonic() < end:
            time.sleep(0.01)
        assert eng.get("voice", "comp_threshold") == moved     # (a hang guard above)
        time.sleep(2.5)
    finally:
        stop.set()
        reader.join()
        surface.stop()
        summary = eng.stop()
        sender.kill()
    take = summary.take
    side = json.loads(open(take[:-4] + ".json").read())
    moves = [a for a in side["automation"]
             if a["target"] == "voice" and a["param"] == "comp_threshold"]
    assert moves and moves[-1]["value"] == moved
    # the take re-renders sample for sample from its automation (every stage, the denoiser
    # and the MIDI-driven change included)
    out = maker.root / "replay.wav"
    cli("render", session.path, "--automation", take[:-4] + ".json", "-o", out,
        "--subtype", "FLOAT")
    np.testing.assert_array_equal(sf.read(out, dtype="float32")[0],
                                  sf.read(take, dtype="float32")[0])

    # the stems are in session time too: the click track's (delayed for the denoiser
    # beside it, then compensated) has each click at its session frame
    stem = sf.read(take[:-4] + ".click.wav", dtype="float32")[0][:, 0]
    start = side["start_frame"]
    expected = CLICKS[(CLICKS >= start) & (CLICKS < start + len(stem))] - start
    assert len(expected) >= 5
    np.testing.assert_array_equal(np.flatnonzero(stem), expected)
    assert np.all(stem[expected] == np.float32(0.25))

    # meters: the voice's gate opened and closed, its compressor and the keyed one worked
    voice = [s["tracks"][0] for s in snaps]
    assert any(v["gate_open"] for v in voice) and not all(v["gate_open"] for v in voice)
    assert min(v["gate_gr_db"] for v in voice) <= -29.0          # range 30 dB when closed
    assert min(v["comp_gr_db"] for v in voice) < -3.0
    assert min(s["tracks"][1]["comp_gr_db"] for s in snaps) < -3.0
    assert all(s["tracks"][2]["comp_gr_db"] is None and s["tracks"][2]["gate_open"] is None
               for s in snaps)                                    # amb has neither stage
    # the take's lanes: one per compressed track, 10 values a second, reducing when the
    # voice speaks
    lanes = side["lanes"]
    assert set(lanes["comp_gr_db"]) == {"voice", "music"}
    lane = np.array(lanes["comp_gr_db"]["voice"])
    take_s = sf.info(take).frames / SR
    assert len(lane) >= 10 * (take_s - 0.5) and lane.min() < -3.0 and lane.max() <= 0.0
    assert np.array(lanes["comp_gr_db"]["music"]).min() < -3.0
    # the report grows a lane per compressed track
    png = maker.root / "report.png"
    cli("report", take[:-4] + ".json", "-o", png)
    head = open(png, "rb").read(24)
    assert int.from_bytes(head[20:24], "big") == 1000 + 2 * 110
