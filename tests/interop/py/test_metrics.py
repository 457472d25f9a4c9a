"""Interop: `GET /metrics` (docs/operations.md) read by the Prometheus project's own Python client,
whose OpenMetrics parser refuses anything the format does not allow. Traffic from a TCP client, a /ws
client, python-socketio and the server API (cent's shapes over requests) must move the counters by
exactly what was sent, and the gauges must come back when the clients go."""

import json
import time
import unittest
import uuid

import requests
import socketio
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from volnaproc import ClosingCase, Volna
from wsclient import WsClient

WAIT = 5.0
KEY = "metrics-test-key"


class MetricsTest(ClosingCase):
    @classmethod
    def setUpClass(cls):
        cls.volna = Volna(["--api-key", KEY, "--recovery", "true"])

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()

    def scrape(self):
        """Every sample as {(name, sorted labels): value}, through the strict OpenMetrics parser."""
        r = requests.get(self.volna.http + "/metrics", timeout=WAIT)
        self.assertEqual(r.status_code, 200)
        self.assertTrue(r.headers["content-type"].startswith("application/openmetrics-text"), r.headers)
        samples = {}
        for family in text_string_to_metric_families(r.text):
            for s in family.samples:
                samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return samples

    def value(self, samples, name, **labels):
        return samples.get((name, tuple(sorted(labels.items()))), 0)

    def until(self, check, what):
        deadline = time.monotonic() + WAIT
        while True:
            samples = self.scrape()
            if check(samples):
                return samples
            if time.monotonic() > deadline:
                self.fail(f"{what}: {json.dumps({f'{k[0]}{dict(k[1])}': v for k, v in samples.items() if k[0].startswith('volna_')}, indent=0)[:3000]}")
            time.sleep(0.05)

    def test_traffic_moves_the_counters_by_what_was_sent(self):
        room = f"m-{uuid.uuid4().hex[:6]}"
        before = self.scrape()
        v = lambda s, name, **l: self.value(s, name, **l)  # noqa: E731

        sock, tcp = self.tcp_connect(self.volna.tcp)
        tcp.readline()  # welcome
        tcp.write(f"/join {room}\n")
        tcp.flush()
        ws = WsClient(self.volna.http, wait=WAIT)
        self.closers.append(ws.close)
        ws.recv(lambda m: m.get("type") == "welcome")
        self.assertEqual(ws.request("join", room=room)["type"], "reply")
        sio = socketio.Client()
        self.closers.append(sio.disconnect)
        sio.connect(self.volna.http, transports=["websocket"], wait_timeout=WAIT)
        self.assertTrue(sio.call("join", room, timeout=WAIT)["ok"])
        s = self.until(lambda s: v(s, "volna_room_members") - v(before, "volna_room_members") == 3, "three members")
        for protocol in ("tcp", "ws", "socketio"):
            self.assertEqual(v(s, "volna_connections", protocol=protocol) - v(before, "volna_connections", protocol=protocol), 1, protocol)
            self.assertEqual(
                v(s, "volna_connections_accepted_total", protocol=protocol)
                - v(before, "volna_connections_accepted_total", protocol=protocol),
                1,
                protocol,
            )
            self.assertEqual(v(s, "volna_requests_total", protocol=protocol, op="join"), v(before, "volna_requests_total", protocol=protocol, op="join") + 1)

        # 3 + 2 + 1 messages from the clients, 1 from the server API: 7 published, each to 3 members.
        for i in range(3):
            tcp.write(f"line {i}\n")
        tcp.flush()
        for i in range(2):
            self.assertEqual(ws.request("message", room=room, data=f"ws {i}")["type"], "reply")
        sio.call("message", {"room": room, "data": "sio"}, timeout=WAIT)
        api = requests.post(self.volna.http + "/api/publish", headers={"X-API-Key": KEY},
                            json={"channel": room, "data": {"from": "api"}}, timeout=WAIT)
        self.assertIn("result", api.json())
        refused = requests.post(self.volna.http + "/api/publish", headers={"X-API-Key": "wrong-key"},
                                json={"channel": room, "data": 1}, timeout=WAIT)
        self.assertEqual(refused.status_code, 401)
        s = self.until(lambda s: v(s, "volna_messages_total") - v(before, "volna_messages_total") == 7, "7 messages")
        self.assertEqual(v(s, "volna_requests_total", protocol="tcp", op="message") - v(before, "volna_requests_total", protocol="tcp", op="message"), 3)
        self.assertEqual(v(s, "volna_requests_total", protocol="ws", op="message") - v(before, "volna_requests_total", protocol="ws", op="message"), 2)
        self.assertEqual(v(s, "volna_requests_total", protocol="socketio", op="message") - v(before, "volna_requests_total", protocol="socketio", op="message"), 1)
        delivered = lambda s, p: v(s, "volna_deliveries_total", kind="message", protocol=p)  # noqa: E731
        s = self.until(
            lambda s: all(delivered(s, p) - delivered(before, p) == 7 for p in ("tcp", "ws", "socketio")),
            "7 deliveries of messages to each protocol's member",
        )
        for p in ("tcp", "ws", "socketio"):
            self.assertGreater(v(s, "volna_received_bytes_total", protocol=p), v(before, "volna_received_bytes_total", protocol=p), p)
        self.assertGreater(v(s, "volna_broadcast_bytes_total"), v(before, "volna_broadcast_bytes_total"))
        self.assertEqual(v(s, "volna_api_requests_total", method="publish", code="0") - v(before, "volna_api_requests_total", method="publish", code="0"), 1)
        self.assertEqual(v(s, "volna_api_requests_total", method="-", code="401") - v(before, "volna_api_requests_total", method="-", code="401"), 1)
        self.assertGreater(v(s, "volna_history_bytes"), 0)
        self.assertGreater(v(s, "volna_recovery_logged"), 0)

        # Bad input is counted by reason.
        ws.ws.send("{not json")
        self.until(lambda s: v(s, "volna_refused_requests_total", reason="bad_input") > v(before, "volna_refused_requests_total", reason="bad_input"), "bad input counted")

        # The clients go: the gauges come back.
        sio.disconnect()
        ws.close()
        tcp.close()
        sock.close()
        s = self.until(
            lambda s: all(v(s, "volna_connections", protocol=p) == v(before, "volna_connections", protocol=p) for p in ("tcp", "ws", "socketio")),
            "connections back to where they were",
        )
        self.assertEqual(v(s, "volna_room_members"), v(before, "volna_room_members"))
        # Every close is counted with its reason: the three clients went.
        gone = lambda s: sum(val for (name, _), val in s.items() if name == "volna_disconnects_total")  # noqa: E731
        self.assertEqual(gone(s) - gone(before), 3)

    def test_the_event_loop_lag_histogram_grows(self):
        first = self.scrape()
        time.sleep(0.3)
        s = self.scrape()
        count = self.value(s, "volna_event_loop_lag_seconds_count")
        self.assertGreater(count, self.value(first, "volna_event_loop_lag_seconds_count"))
        self.assertEqual(self.value(s, "volna_event_loop_lag_seconds_bucket", le="+Inf"), count)


if __name__ == "__main__":
    unittest.main()
