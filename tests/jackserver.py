"""A private JACK server with the dummy driver, for tests that need a real audio server.

JACK keeps a registry of servers in /dev/shm with room for a few names; a
server killed with SIGKILL leaves its entry behind. So the tests use one name
per test process (a restart reuses its slot), stop servers with SIGTERM, and
clear stale registry files when no jackd at all is running.
"""
import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time


def clear_stale_registry() -> None:
    """Remove JACK's /dev/shm files when no jackd process is alive (they are all stale)."""
    alive = subprocess.run(["pgrep", "-x", "jackd"], capture_output=True).returncode == 0
    if alive:
        return
    for path in glob.glob("/dev/shm/jack*"):
        try:
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        except OSError:
            pass


class JackServer:
    """``jackd -d dummy`` under a unique server name. start() / kill() / restart()."""

    def __init__(self, period=64, rate=48000, suffix=""):
        self.name = f"livemix-test-{os.getpid()}{suffix}"
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
        clear_stale_registry()
        for realtime in ([True, False] if self.realtime else [False]):
            # stderr to a file: jackd writes two lines per xrun, and an undrained pipe
            # would fill and block it
            self._log = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(self._cmd(realtime), env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=self._log)
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if self.proc.poll() is not None:
                    self._log.seek(0)
                    self.log = self._log.read().decode(errors="replace")[-2000:]
                    break
                if self.ready():
                    self.realtime = realtime
                    return self
                time.sleep(0.05)
            self.kill()
        raise RuntimeError(f"jackd -d dummy did not start: {getattr(self, 'log', '')}")

    def kill(self):
        """SIGKILL: the server dies the way a crashed one does."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self.proc = None

    def stop(self):
        """SIGTERM: a clean shutdown that leaves JACK's registry tidy."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def ports(self):
        p = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, text=True)
        return p.stdout.split("\n")


def have_jack() -> bool:
    return shutil.which("jackd") is not None
