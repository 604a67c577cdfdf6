"""Audio devices and MIDI ports, for `livemix devices` (a short-lived command)."""


def list_devices() -> dict:
    """{"audio": [...], "midi_inputs": [...], "midi_outputs": [...]}; no exceptions for
    a machine without audio or MIDI."""
    audio = []
    try:
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
        import rtmidi
        midi_in = rtmidi.MidiIn().get_ports()
        midi_out = rtmidi.MidiOut().get_ports()
    except Exception:
        pass
    return {"audio": audio, "midi_inputs": midi_in, "midi_outputs": midi_out}
