"""Audio devices and MIDI ports, for `livemix devices` (a short-lived command)."""
import os
import sys
from contextlib import contextmanager


@contextmanager
def quiet_stderr():
    """Silence the C libraries' own complaints (ALSA's "cannot open /dev/snd/seq",
    libjack's "server not running", PortAudio's probing) while probing: a missing
    audio or MIDI system is an answer here, and the user gets one line from us."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def list_devices() -> dict:
    """{"audio": [...], "midi_inputs": [...], "midi_outputs": [...]}; no exceptions for
    a machine without audio or MIDI."""
    audio = []
    try:
        with quiet_stderr():
            import sounddevice as sd
            apis = sd.query_hostapis()
        for i, d in enumerate(sd.query_devices()):
            audio.append({"index": i, "name": d["name"], "hostapi": apis[d["hostapi"]]["name"],
                          "inputs": d["max_input_channels"], "outputs": d["max_output_channels"],
                          "samplerate": d["default_samplerate"]})
    except Exception:   # no PortAudio library, or it failed to initialise: no devices
        pass
    midi_in, midi_out = [], []
    try:
        with quiet_stderr():
            import rtmidi
            midi_in = rtmidi.MidiIn().get_ports()
            midi_out = rtmidi.MidiOut().get_ports()
    except Exception:
        pass
    return {"audio": audio, "midi_inputs": midi_in, "midi_outputs": midi_out}
