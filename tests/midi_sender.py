"""A MIDI controller in another process: a JACK client "lmsender" with an output port
"ctl", driven by lines on stdin. Used by the live MIDI tests.

  cc CH NUM VAL          send a control change; prints "sent <monotonic ns>"
  raw B1 B2 ...          send these bytes (hex) as one JACK MIDI event
  flood RATE SECONDS CH NUM LAST
                         send CC NUM at RATE messages/s for SECONDS, values
                         sweeping, the very last one LAST; prints "done <count>"
  recv                   print the feedback received on port "fb" since the last recv,
                         as a JSON list of messages
  quit
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import rtmidi


class Sender:
    """This script in its own process, driven from a test: a JACK client "lmsender"
    with an output port "ctl" and a feedback input port "fb"."""

    def __init__(self, env):
        self.p = subprocess.Popen([sys.executable, str(Path(__file__))], env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.p.stdout.readline().strip() == "ready"

    def say(self, line: str) -> str:
        """Send one command line; returns the script's one-line answer."""
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        return self.p.stdout.readline().strip()

    def raw(self, *msg):
        assert self.say("raw " + " ".join(f"{b:02X}" for b in msg)).startswith("sent")

    def sweep(self, msgs, gap=0.004):
        for m in msgs:
            self.raw(*m)
            time.sleep(gap)

    def kill(self):
        self.p.kill()
        self.p.wait(timeout=5)


def main():
    out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name="lmsender")
    out.open_virtual_port("ctl")
    fb = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name="lmsender-fb")
    fb.open_virtual_port("fb")
    fb.ignore_types(sysex=False)
    print("ready", flush=True)
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        if words[0] == "cc":
            ch, num, val = map(int, words[1:4])
            t = time.monotonic_ns()
            out.send_message([0xB0 | (ch - 1), num, val])
            print(f"sent {t}", flush=True)
        elif words[0] == "raw":
            out.send_message([int(w, 16) for w in words[1:]])
            print("sent", flush=True)
        elif words[0] == "flood":
            rate, seconds = float(words[1]), float(words[2])
            ch, num, last = int(words[3]), int(words[4]), int(words[5])
            total = int(rate * seconds)
            t0 = time.monotonic()
            status = 0xB0 | (ch - 1)
            for k in range(total):
                value = last if k == total - 1 else k % 128
                out.send_message([status, num, value])
                if k % 10 == 9:
                    delay = t0 + (k + 1) / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
            print(f"done {total}", flush=True)
        elif words[0] == "recv":
            got = []
            while True:
                m = fb.get_message()
                if m is None:
                    break
                got.append(m[0])
            print(json.dumps(got), flush=True)
        elif words[0] == "quit":
            break
    out.close_port()


if __name__ == "__main__":
    main()
