"""A private JACK server with the dummy driver, for tests that need a real audio server."""
import itertools
import os
import shutil
import subprocess
import time

_ids = itertools.count()


class JackServer:
    """``jackd -d dummy`` under a unique server name. start() / kill() / restart()."""

    def __init__(self, period=64, rate=48000):
        self.name = f"livemix-test-{os.getpid()}-{next(_ids)}"
        self.env = dict(os.environ, JACK_DEFAULT_SERVER=self.name, JACK_NO_AUDIO_RESERVATION="1")
        self.period = period
        self.rate = rate
        self.proc = None
        self.realtime = True

    def _cmd(self, realtime):
        rt = ["-R"] if realtime else ["--no-realtime"]
        return ["jackd", *rt, "-d", "dummy", "-r", str(self.rate), "-p", str(self.period)]

    def ready(self) -> bool:
        p = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, text=True)
        return p.returncode == 0 and "system:playback_1" in p.stdout

    def start(self, timeout=10.0):
        for realtime in ([True, False] if self.realtime else [False]):
            self.proc = subprocess.Popen(self._cmd(realtime), env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    break
                if self.ready():
                    self.realtime = realtime
                    return self
                time.sleep(0.05)
            self.kill()
        raise RuntimeError("jackd -d dummy did not start")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def ports(self):
        p = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, text=True)
        return p.stdout.split("\n")


def have_jack() -> bool:
    return shutil.which("jackd") is not None
