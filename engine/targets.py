"""Delivery loudness targets, by name (``normalize --preset``, ``[master] target``).

Each preset is (integrated loudness target in LUFS, true-peak ceiling in dBTP).
Light: no numpy.
"""
from __future__ import annotations

from dataclasses import dataclass

PRESETS = {
    "web": (-14.0, -1.0),           # streaming platforms
    "podcast": (-16.0, -1.0),
    "ebu-r128": (-23.0, -1.0),      # EBU R 128 broadcast
    "atsc-a85": (-24.0, -2.0),      # ATSC A/85 (US broadcast)
}


@dataclass(frozen=True)
class Target:
    name: str
    lufs: float             # integrated loudness, LUFS
    true_peak_dbtp: float   # true-peak ceiling, dBTP


def target(name: str) -> Target:
    """The preset ``name`` (a key of PRESETS) as a Target."""
    lufs, tp = PRESETS[name]
    return Target(name, lufs, tp)
