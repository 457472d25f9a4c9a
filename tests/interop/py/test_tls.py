"""Interop: TLS (docs/security.md) with a volna of the test's own started with --tls-cert/--tls-key.
Certificates are made here with `cryptography`; the clients are OpenSSL's (Python's ssl module and
`openssl s_client`), websocket-client over wss, python-socketio over both Engine.IO transports, and
requests. The certificate is replaced on disk while the server runs: new connections get the new one
without a restart. A client that does not speak TLS, or never finishes its handshake, is dropped and
nobody else notices."""

import os
import queue
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

import requests
import socketio

from certs import make_cert
from volnaproc import ClosingCase, Volna
from wsclient import WsClient

WAIT = 5.0


class TlsTest(ClosingCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="volna-tls-")
        cls.first = make_cert(cls.dir, "volna-test-first")
        # The CA the clients trust (replaced with the second's on rotation).
        cls.ca = os.path.join(cls.dir, "ca.pem")
        cls.volna = Volna(["--tls-cert", os.path.join(cls.dir, "cert.pem"),
                           "--tls-key", os.path.join(cls.dir, "key.pem"),
                           "--http-header-timeout-ms", "800"])

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def context(self):
        ctx = ssl.create_default_context(cafile=self.ca)
        return ctx

    def tls_lines(self):
        """A TLS connection to the line port, verified, as (socket, line file) after the welcome."""
        host, _, port = self.volna.tcp.rpartition(":")
        raw = socket.create_connection((host, int(port)), timeout=WAIT)
        sock = self.context().wrap_socket(raw, server_hostname="127.0.0.1")
        self.closers.append(sock.close)
        f = sock.makefile("rw", encoding="utf-8", newline="\n")
        self.assertTrue(f.readline().startswith("welcome volna"))
        return sock, f

    def test_banner_names_tls(self):
        self.assertTrue(self.volna.http.startswith("https://"), self.volna.http)

    def test_tcp_lines_over_tls(self):
        _, a = self.tls_lines()
        _, b = self.tls_lines()
        a.write("/nick tls-alice\n/join tls-lobby\n")
        a.flush()
        self.assertEqual(a.readline().strip(), "ok nick tls-alice")
        self.assertTrue(a.readline().startswith("ok join tls-lobby"))
        b.write("/join tls-lobby\n")
        b.flush()
        self.assertTrue(b.readline().startswith("ok join tls-lobby"))
        # A long line and many lines at once cross TLS records.
        text = "x" * 3000
        a.write("".join(f"{text} {i}\n" for i in range(20)))
        a.flush()
        got = []
        while len(got) < 20:
            line = b.readline()
            self.assertTrue(line, "connection closed")
            if line.startswith("msg tls-lobby"):
                got.append(line.rsplit(" ", 1)[1].strip())
        self.assertEqual(got, [str(i) for i in range(20)])

    def test_openssl_s_client_can_chat(self):
        if shutil.which("openssl") is None:
            self.fail("openssl is not installed (scripts/install-test-deps.sh installs it)")
        proc = subprocess.run(
            ["openssl", "s_client", "-quiet", "-verify_return_error", "-CAfile", self.ca,
             "-connect", self.volna.tcp],
            input="/join s-client-room\nhello from s_client\n/quit\n", capture_output=True, text=True,
            timeout=20)
        self.assertIn("ok join s-client-room", proc.stdout, proc.stderr)
        self.assertIn("hello from s_client", proc.stdout)
        self.assertIn("bye client-quit", proc.stdout)

    def test_https_health(self):
        r = requests.get(self.volna.http + "/health", verify=self.ca, timeout=WAIT)
        self.assertEqual(r.status_code, 200)
        self.assertIn("connections_open", r.json())
        with self.assertRaises(requests.exceptions.SSLError):
            requests.get(self.volna.http + "/health", timeout=WAIT)  # not trusted without the CA

    def test_ws_over_wss(self):
        opt = {"ca_certs": self.ca}
        a = WsClient(self.volna.http, wait=WAIT, sslopt=opt)
        b = WsClient(self.volna.http, wait=WAIT, sslopt=opt)
        self.closers += [a.close, b.close]
        self.assertEqual(a.request("join", room="wss-room")["type"], "reply")
        self.assertEqual(b.request("join", room="wss-room")["type"], "reply")
        big = "y" * 100_000
        self.assertEqual(a.request("message", room="wss-room", data=big)["type"], "reply")
        m = b.recv(lambda m: m.get("type") == "message")
        self.assertEqual(m["data"], big)

    def sio(self, transports):
        # python-engineio asks requests for the default verification on polling requests (which
        # then reads REQUESTS_CA_BUNDLE) and hands a session's CA file to websocket-client.
        os.environ["REQUESTS_CA_BUNDLE"] = self.ca
        self.closers.append(lambda: os.environ.pop("REQUESTS_CA_BUNDLE", None))
        http = requests.Session()
        http.verify = self.ca
        sio = socketio.Client(reconnection=False, request_timeout=WAIT, http_session=http)
        sio.got = queue.Queue()
        sio.on("message", lambda m: sio.got.put(m))
        sio.connect(self.volna.http, transports=transports, wait_timeout=WAIT)
        self.closers.append(sio.disconnect)
        return sio

    def test_socketio_over_https_polling_and_wss(self):
        poll = self.sio(["polling"])
        ws = self.sio(["websocket"])
        upgraded = self.sio(["polling", "websocket"])
        for s in (poll, ws, upgraded):
            self.assertTrue(s.call("join", "sio-tls", timeout=WAIT)["ok"])
        poll.emit("message", {"room": "sio-tls", "data": "from polling"})
        for s in (ws, upgraded):
            m = s.got.get(timeout=WAIT)
            self.assertEqual(m["data"], "from polling")

    def test_plain_and_silent_clients_are_dropped_without_hurting_others(self):
        _, f = self.tls_lines()
        host, _, port = self.volna.tcp.rpartition(":")
        # Plain text on the TLS port: not a handshake, the connection ends.
        plain = socket.create_connection((host, int(port)), timeout=WAIT)
        self.closers.append(plain.close)
        plain.sendall(b"/join nope\n")
        self.assertTrue(self._recv_ends(plain), "a plain client must be dropped")
        # A client that opens TCP and never starts its handshake is dropped after the timeout.
        silent = []
        for addr in (self.volna.tcp, self.volna.http.split("://", 1)[1]):
            h, _, p = addr.rpartition(":")
            s = socket.create_connection((h, int(p)), timeout=WAIT)
            self.closers.append(s.close)
            silent.append(s)
        started = time.monotonic()
        for s in silent:
            self.assertTrue(self._recv_ends(s), "a silent client must be dropped")
        self.assertLess(time.monotonic() - started, WAIT)
        # Meanwhile the verified client is answered as ever.
        f.write("/echo still here\n")
        f.flush()
        self.assertEqual(f.readline().strip(), "ok echo still here")

    def test_a_flood_of_garbage_and_half_handshakes_hurts_no_one(self):
        _, f = self.tls_lines()
        host, _, port = self.volna.tcp.rpartition(":")
        http_host, _, http_port = self.volna.http.split("://", 1)[1].rpartition(":")
        # A ClientHello cut short: a handshake that stalls half way.
        hello = bytes.fromhex("160301020001000200") + os.urandom(40)
        held = []
        started = time.monotonic()
        for i in range(150):
            target = (host, int(port)) if i % 2 else (http_host, int(http_port))
            s = socket.create_connection(target, timeout=WAIT)
            s.sendall(hello if i % 3 else os.urandom(300))
            if i % 3:
                held.append(s)  # kept open, stalled
            else:
                s.close()
            if i % 25 == 0:
                f.write(f"/echo flood {i}\n")
                f.flush()
                self.assertEqual(f.readline().strip(), f"ok echo flood {i}")
        self.closers += [s.close for s in held]
        # Answers stay prompt while the stalled ones wait out their timeout, and they are all dropped.
        f.write("/echo after\n")
        f.flush()
        self.assertEqual(f.readline().strip(), "ok echo after")
        self.assertLess(time.monotonic() - started, 3 * WAIT)
        self.assertTrue(all(self._recv_ends(s) for s in held[:10]), "stalled handshakes are dropped")
        r = requests.get(self.volna.http + "/health", verify=self.ca, timeout=WAIT)
        self.assertEqual(r.status_code, 200)

    def _recv_ends(self, sock):
        """True if the server ends the connection (EOF or reset) within the wait."""
        sock.settimeout(WAIT)
        try:
            while True:
                data = sock.recv(4096)
                if not data:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def test_zz_a_new_certificate_is_served_without_restart(self):
        second = make_cert(self.dir, "volna-test-second")
        loose = ssl.create_default_context()
        loose.check_hostname = False
        loose.verify_mode = ssl.CERT_NONE
        host, _, port = self.volna.tcp.rpartition(":")
        deadline = time.monotonic() + 25
        served = self.first
        while time.monotonic() < deadline:
            with socket.create_connection((host, int(port)), timeout=WAIT) as raw:
                with loose.wrap_socket(raw) as s:
                    served = s.getpeercert(binary_form=True)
            if served == second:
                break
            time.sleep(0.5)
        self.assertEqual(served, second, "the renewed certificate is not served")
        # And it works for a client that trusts only the new one's CA.
        r = requests.get(self.volna.http + "/health", verify=self.ca, timeout=WAIT)
        self.assertEqual(r.status_code, 200)


if __name__ == "__main__":
    unittest.main()
