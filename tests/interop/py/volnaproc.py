"""A volna of a test's own: started from VOLNA_BIN (set by tests/interop/run.sh) on free ports with
the flags the test needs, its addresses read from its banner, stopped after. For tests whose server
needs settings the shared one has not (hooks, token keys)."""

import os
import socket
import subprocess
import tempfile
import time
import unittest

VOLNA_BIN = os.environ.get("VOLNA_BIN", os.path.join(os.path.dirname(__file__), "../../../target/debug/volna"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Volna:
    def __init__(self, args, config=""):
        """Starts `volna serve` with `args` and, when given, this TOML as its settings file."""
        self.dir = tempfile.mkdtemp(prefix="volna-test-")
        extra = []
        if config:
            path = os.path.join(self.dir, "volna.toml")
            with open(path, "w") as f:
                f.write(config)
            extra = ["--config", path]
        self.proc = subprocess.Popen(
            [VOLNA_BIN, "serve", *extra, "--tcp-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--log", "warn", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        deadline = time.monotonic() + 20
        banner = ""
        while time.monotonic() < deadline and " serving: " not in banner:
            banner = self.proc.stdout.readline()
            if not banner and self.proc.poll() is not None:
                raise RuntimeError("volna exited before its banner")
        # tcp://… http://…, or tls://… https://… when it serves TLS.
        scheme = "https" if " tls://" in banner else "http"
        self.tcp = banner.split("://", 1)[1].split(" ", 1)[0].rstrip(",")
        self.http = f"{scheme}://" + banner.split(f" {scheme}://", 1)[1].split()[0].rstrip(",")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class ClosingCase(unittest.TestCase):
    """A test case whose clients are closed after each test: `self.closers.append(client.close)`."""

    def setUp(self):
        self.closers = []

    def tcp_connect(self, addr, wait=5.0):
        """A TCP connection to `HOST:PORT` as (socket, line file), closed after the test."""
        host, _, port = addr.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=wait)
        self.closers.append(sock.close)
        return sock, sock.makefile("rw", encoding="utf-8", newline="\n")

    def tearDown(self):
        for close in self.closers:
            try:
                close()
            except Exception:  # noqa: BLE001 - teardown
                pass
