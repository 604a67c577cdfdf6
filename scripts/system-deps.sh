#!/usr/bin/env bash
# Install the system libraries livemix needs, or say exactly how to.
#   libportaudio2  PortAudio, opened by python-sounddevice
#   jackd2         a JACK server: the tests run the engine against its dummy driver
#   ffmpeg         benchmarks and video delivery compare against / use it
set -euo pipefail

missing=()
ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' || missing+=(libportaudio2)
command -v jackd >/dev/null 2>&1 || missing+=(jackd2)
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "livemix: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # --no-install-recommends: without it jackd2 pulls in a GUI and Qt.
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    exit 0
fi

cat >&2 <<MSG
livemix: missing system packages: ${missing[*]}
Install them, then run make again:
  Debian/Ubuntu: sudo apt-get install --no-install-recommends libportaudio2 jackd2 ffmpeg
  Fedora:        sudo dnf install portaudio jack-audio-connection-kit ffmpeg
  Arch:          sudo pacman -S portaudio jack2 ffmpeg
  macOS:         brew install portaudio jack ffmpeg
MSG
exit 1
