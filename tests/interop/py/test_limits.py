"""Interop: per-connection limits (docs/security.md) on every transport, with a volna of the test's own
started with small limits: rooms per connection, and the request rate (a token bucket: over it a
request is refused `rate-limited`; a client that keeps sending is disconnected, close code 4429). The
other clients never notice: a client that stays within its rate keeps being answered."""

import queue
import socket
import time
import unittest

import socketio

from volnaproc import ClosingCase, Volna
from wsclient import WsClient

WAIT = 5.0
BURST = 10


class LimitsTest(ClosingCase):
    @classmethod
    def setUpClass(cls):
        cls.volna = Volna(["--max-rooms-per-connection", "3", "--messages-per-second", "5",
                           "--messages-burst", str(BURST), "--http-header-timeout-ms", "500",
                           "--tcp-first-line-timeout-ms", "700"])

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()

    def sio(self):
        sio = socketio.Client(reconnection=False, request_timeout=WAIT)
        sio.gone = queue.Queue()
        sio.on("disconnect", lambda *r: sio.gone.put(r))
        sio.connect(self.volna.http, transports=["websocket"], wait_timeout=WAIT)
        self.closers.append(sio.disconnect)
        return sio

    def tcp(self):
        _, f = self.tcp_connect(self.volna.tcp, WAIT)
        f.readline()  # welcome
        return f

    def test_rooms_per_connection(self):
        s = self.sio()
        for i in range(3):
            self.assertTrue(s.call("join", f"lim-s{i}", timeout=WAIT)["ok"])
        ack = s.call("join", "lim-s3", timeout=WAIT)
        self.assertEqual((ack["ok"], ack["code"]), (False, "too-many-rooms"))
        self.assertTrue(s.call("join", "lim-s0", timeout=WAIT)["ok"], "a room it is in already is fine")
        w = WsClient(self.volna.http, wait=WAIT)
        self.closers.append(w.close)
        for i in range(3):
            self.assertEqual(w.request("join", room=f"lim-w{i}")["type"], "reply")
        self.assertEqual(w.request("join", room="lim-w3")["code"], "too-many-rooms")
        t = self.tcp()
        for i in range(4):
            t.write(f"/join lim-t{i}\n")
        t.flush()
        lines = [t.readline().strip() for _ in range(4)]
        self.assertTrue(lines[3].startswith("error too-many-rooms"), lines)

    def test_rate_refuses_then_disconnects_a_flooder_only(self):
        calm = self.sio()
        flood = self.sio()
        answers = [flood.call("echo", i, timeout=WAIT) for i in range(BURST + 3)]
        refused = [a for a in answers if isinstance(a, dict) and a.get("code") == "rate-limited"]
        self.assertEqual(len(answers) - len(refused), BURST, "the burst passes, then refusals")
        self.assertEqual(calm.call("echo", "still here", timeout=WAIT), "still here", "others are answered")
        w = WsClient(self.volna.http, wait=WAIT)
        self.closers.append(w.close)
        for i in range(3 * BURST):  # keeps sending while refused
            w.ws.send('{"op":"echo","data":1,"id":%d}' % i)
        self.assertEqual(w.close_code(), 4429, "disconnected for flooding")
        t = self.tcp()
        t.write("".join(f"/echo {i}\n" for i in range(3 * BURST)))
        t.flush()
        seen = t.read()  # until the server closes it
        self.assertIn("error rate-limited", seen)
        time.sleep(1.2)
        self.assertEqual(calm.call("echo", "after", timeout=WAIT), "after")


    def test_slow_and_silent_clients_are_dropped(self):
        host, _, port = self.volna.http.removeprefix("http://").rpartition(":")
        loris = socket.create_connection((host, int(port)), timeout=WAIT)
        self.closers.append(loris.close)
        loris.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # and never the rest of the head
        started = time.monotonic()
        self.assertEqual(loris.recv(100), b"", "the server hangs up on a slow head")
        self.assertLess(time.monotonic() - started, 3)
        big = socket.create_connection((host, int(port)), timeout=WAIT)
        self.closers.append(big.close)
        big.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 300_000 + b"\r\n\r\n")
        answer = b""
        while True:
            try:
                chunk = big.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        self.assertTrue(answer.startswith(b"HTTP/1.1 431") or answer == b"", answer[:40])
        t = self.tcp()
        started = time.monotonic()
        rest = t.read()  # nothing sent: closed after the first-line timeout
        self.assertIn("idle", rest)
        self.assertLess(time.monotonic() - started, 3)
        calm = self.sio()
        self.assertEqual(calm.call("echo", "ok", timeout=WAIT), "ok", "the others are unaffected")


class IpLimitsTest(ClosingCase):
    """Connections per client address, TCP and HTTP together (loopback limited for the test)."""

    @classmethod
    def setUpClass(cls):
        cls.volna = Volna(["--max-connections-per-ip", "3", "--limit-loopback", "true",
                           "--connections-per-ip-per-second", "1000"])

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()

    def connect_tcp(self):
        return self.tcp_connect(self.volna.tcp, WAIT)

    def test_connections_per_address_are_bounded_across_transports(self):
        (s1, f1), (s2, f2) = self.connect_tcp(), self.connect_tcp()
        self.assertTrue(f1.readline().startswith("welcome") and f2.readline().startswith("welcome"))
        w = WsClient(self.volna.http, wait=WAIT)  # the third, over HTTP
        self.closers.append(w.close)
        w.recv(lambda m: m.get("type") == "welcome")
        s4, f4 = self.connect_tcp()
        self.assertTrue(f4.readline().startswith("error too-many-connections"))
        host, _, port = self.volna.http.removeprefix("http://").rpartition(":")
        h = socket.create_connection((host, int(port)), timeout=WAIT)
        self.closers.append(h.close)
        h.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(h.recv(100).startswith(b"HTTP/1.1 429"))
        f1.close()
        s1.close()
        time.sleep(0.3)
        s5, f5 = self.connect_tcp()
        self.assertTrue(f5.readline().startswith("welcome"), "a freed place is taken again")


class ProxiedTest(ClosingCase):
    """Behind a trusted reverse proxy (loopback, for the test) the limits count the address the proxy
    forwards, not the proxy's: one client's connections are bounded, another's are not affected, and
    a client cannot escape by sending its own X-Forwarded-For (the proxy appends the real one)."""

    @classmethod
    def setUpClass(cls):
        cls.volna = Volna(["--max-connections-per-ip", "2", "--connections-per-ip-per-second", "1000",
                           "--trusted-proxies", "127.0.0.1"])

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()

    def ws_from(self, forwarded):
        """A /ws upgrade as a proxy sends it for a client at `forwarded`: the status line."""
        host, _, port = self.volna.http.removeprefix("http://").rpartition(":")
        s = socket.create_connection((host, int(port)), timeout=WAIT)
        self.closers.append(s.close)
        s.sendall(("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                   f"X-Forwarded-For: {forwarded}\r\n\r\n").encode())
        return s.recv(200).split(b"\r\n", 1)[0]

    def test_limits_count_the_forwarded_client(self):
        self.assertIn(b"101", self.ws_from("203.0.113.5"))
        self.assertIn(b"101", self.ws_from("203.0.113.5"))
        self.assertIn(b"429", self.ws_from("203.0.113.5"), "the third from one client is refused")
        self.assertIn(b"429", self.ws_from("198.51.100.1, 203.0.113.5"), "a forged first hop changes nothing")
        self.assertIn(b"101", self.ws_from("203.0.113.6"), "another client is not affected")
        # The proxy itself (no forwarding header) is loopback: not limited.
        for _ in range(3):
            self.assertIn(b"101", self.ws_from("127.0.0.1"))


if __name__ == "__main__":
    unittest.main()
