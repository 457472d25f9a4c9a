"""The abuse suite (docs/security.md): while a sentinel room receives a steady stream, attack a volna of
the test's own on every transport — floods of connections, joins, messages and malformed packets,
slow-loris HTTP, attachment-count bombs, huge and deeply nested JSON, forged and expired tokens,
cross-origin upgrades — then check that the sentinel got every message in order, that the server's
memory came back near where it was, and that every attack was refused and counted.

Loopback only, every loop bounded; run by tests/interop/run.sh (python -m unittest).
"""

import base64
import json
import os
import socket
import threading
import time
import unittest
import urllib.request

import jwt
import socketio

from volnaproc import ClosingCase, Volna
from wsclient import WsClient

WAIT = 5.0
SECRET = "abuse-suite-hmac-secret-0123456789abcdef"
API_KEY = f"abuse-{os.getpid()}-key"


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class AbuseTest(ClosingCase):
    @classmethod
    def setUpClass(cls):
        cls.volna = Volna([
            "--jwt-secret", SECRET, "--api-key", API_KEY,
            "--messages-per-second", "200", "--messages-burst", "400",
            "--http-header-timeout-ms", "1000", "--tcp-first-line-timeout-ms", "2000",
        ])
        host, _, port = cls.volna.http.removeprefix("http://").rpartition(":")
        cls.http_addr = (host, int(port))
        host, _, port = cls.volna.tcp.rpartition(":")
        cls.tcp_addr = (host, int(port))

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()

    def health(self):
        return json.load(urllib.request.urlopen(f"{self.volna.http}/health", timeout=WAIT))

    def publish(self, room, data):
        req = urllib.request.Request(f"{self.volna.http}/api/publish", data=json.dumps({"channel": room, "data": data}).encode(),
                                     headers={"X-API-Key": API_KEY})
        return json.load(urllib.request.urlopen(req, timeout=WAIT))

    # --- the attacks, each bounded ---

    def flood_connections(self, n=300):
        socks = []
        for _ in range(n):
            try:
                socks.append(socket.create_connection(self.tcp_addr, timeout=WAIT))
            except OSError:
                break
        for s in socks:
            s.close()

    def flood_joins_and_messages(self):
        s = socket.create_connection(self.tcp_addr, timeout=WAIT)
        s.sendall("".join(f"/join flood-{i}\n" for i in range(300)).encode())
        s.sendall(b"".join(b"spam\n" for _ in range(2000)))
        time.sleep(0.5)
        s.close()

    def malformed(self):
        s = socket.create_connection(self.tcp_addr, timeout=WAIT)
        s.sendall(b"\xff\xfe\x00garbage\n" + b"x" * 10000 + b"\n/nosuchcommand\n/emit bad\n")
        s.close()
        w = WsClient(self.volna.http, wait=WAIT)
        for bad in ("{", "[]", '{"op":42}', '{"op":"join"}', "x" * 5000, "[" * 20000 + "]" * 20000):
            w.ws.send(bad)
        w.ws.send('{"op":"echo","data":' + "[" * 5000 + "]" * 5000 + "}")
        w.close()
        sio = socket.create_connection(self.http_addr, timeout=WAIT)
        sio.sendall(b"POST /socket.io/?EIO=4&transport=polling&sid=nope HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello")
        sio.recv(1000)
        sio.close()

    def attachment_bomb(self):
        c = socketio.Client(reconnection=False)
        try:
            c.connect(self.volna.http, transports=["websocket"], wait_timeout=WAIT)
            # A BINARY_EVENT that announces 1000 attachments (the reference parser caps them at 10).
            c.eio.send("51000-[\"message\",{\"room\":\"x\"}]")
            time.sleep(0.3)
        except Exception:  # noqa: BLE001 - the server may close it: that is the point
            pass
        finally:
            try:
                c.disconnect()
            except Exception:  # noqa: BLE001
                pass

    def huge_bodies(self):
        for body in (b"{" + b'"a":1,' * 300_000 + b'"b":1}', b"[" * 100_000 + b"]" * 100_000):
            req = urllib.request.Request(f"{self.volna.http}/api/publish", data=body, headers={"X-API-Key": API_KEY})
            try:
                urllib.request.urlopen(req, timeout=WAIT)
            except urllib.error.HTTPError:
                pass

    def slow_loris(self, n=20):
        socks = []
        for _ in range(n):
            s = socket.create_connection(self.http_addr, timeout=WAIT)
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            socks.append(s)
        time.sleep(1.5)
        for s in socks:
            s.close()

    def bad_tokens(self):
        user = {"sub": "mallory", "exp": int(time.time()) + 60}
        header = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
        payload = base64.urlsafe_b64encode(json.dumps(user).encode()).rstrip(b"=").decode()
        tokens = [
            f"{header}.{payload}.",
            jwt.encode(user, "not-the-secret-0123456789abcdefghij", algorithm="HS256"),
            jwt.encode({"sub": "x", "exp": int(time.time()) - 5}, SECRET, algorithm="HS256"),
            "a.b.c",
        ]
        for t in tokens:
            c = socketio.Client(reconnection=False)
            try:
                c.connect(self.volna.http, auth={"token": t}, transports=["websocket"], wait_timeout=WAIT)
            except socketio.exceptions.ConnectionError:
                pass
            finally:
                c.disconnect()

    def cross_origin(self):
        for path in ("/ws", "/socket.io/?EIO=4&transport=websocket"):
            s = socket.create_connection(self.http_addr, timeout=WAIT)
            s.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {self.http_addr[0]}:{self.http_addr[1]}\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                "Origin: https://evil.example\r\n\r\n".encode()
            )
            self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 403"), path)
            s.close()

    # --- the run ---

    def test_the_sentinel_gets_everything_while_the_server_is_attacked(self):
        room = f"sentinel-{os.getpid()}"
        sentinel = WsClient(self.volna.http, wait=WAIT)
        self.closers.append(sentinel.close)
        sentinel.recv(lambda m: m.get("type") == "welcome")
        self.assertEqual(sentinel.request("join", room=room)["type"], "reply")
        before = self.health()
        rss_before = rss_kib(self.volna.proc.pid)

        stop = threading.Event()
        sent = []

        def stream():
            i = 0
            while not stop.is_set() and i < 2000:
                self.publish(room, {"n": i, "t": time.time()})
                sent.append(i)
                i += 1
                time.sleep(0.01)

        got, lateness = [], []

        def listen():
            # The sentinel reads as it goes: each message's lateness is measured when it arrives.
            while len(got) < 2000 and not (stop.is_set() and len(got) >= len(sent)):
                try:
                    m = sentinel.recv(lambda m: m.get("type") == "message" and m.get("room") == room, timeout=3)
                except AssertionError:
                    if stop.is_set():
                        return
                    continue
                got.append(m["data"]["n"])
                lateness.append(time.time() - m["data"]["t"])

        publisher = threading.Thread(target=stream)
        listener = threading.Thread(target=listen)
        publisher.start()
        listener.start()
        attacks = [self.flood_connections, self.flood_joins_and_messages, self.malformed, self.attachment_bomb,
                   self.huge_bodies, self.slow_loris, self.bad_tokens, self.cross_origin]
        try:
            for attack in attacks:
                attack()
        finally:
            stop.set()
            publisher.join(30)
            listener.join(15)
        self.assertGreater(len(sent), 50, "the stream ran through the attacks")
        self.assertEqual(got, sent, "every message, in order")
        worst = max(lateness)
        self.assertLess(worst, 2.0, f"a message took {worst:.2f} s to arrive under attack")

        after = self.health()
        self.assertGreater(after["bad_input"], before["bad_input"] + 20, "the attacks were refused and counted")
        self.assertGreater(after["rate_limited"], before["rate_limited"])
        self.assertGreater(after["api_errors"], before["api_errors"])
        time.sleep(1.0)
        rss_after = rss_kib(self.volna.proc.pid)
        self.assertLess(rss_after, rss_before + 64 * 1024, f"RSS {rss_before} KiB -> {rss_after} KiB")
        self.assertIsNone(self.volna.proc.poll(), "the server is still running")
        print(f"\nabuse: sentinel got {len(got)}/{len(sent)} in order, worst lateness {worst * 1000:.0f} ms; "
              f"bad_input +{after['bad_input'] - before['bad_input']}, rate_limited +"
              f"{after['rate_limited'] - before['rate_limited']}; RSS {rss_before} -> {rss_after} KiB")


if __name__ == "__main__":
    unittest.main()
