"""MIDI control surfaces (python-rtmidi). Talks to the engine only through its command API."""
