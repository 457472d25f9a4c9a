"""Interop: the application's own events (docs/operations.md, op `emit`) with the stock python-socketio
client, over websocket-only, polling-only and the default polling->websocket upgrade.

An event emitted under a name the server does not know reaches every member of the room, the sender
too, under that name and with the message envelope plus `event`; it is acked like a message, kept in
the history, and refused for a reserved or malformed name.

Run by tests/interop/run.sh (python -m unittest), which starts volna and sets VOLNA_HTTP / VOLNA_TCP.
"""

import os
import queue
import threading
import time
import unittest
import uuid

from test_socketio import WAIT, Client, ClientsCase, TcpClient, unique_name, unique_room

EVENTS = ("cursor", "ink")
ENVELOPE_KEYS = ["data", "event", "from", "id", "offset", "room", "ts"]


class _EventCase(ClientsCase):
    """The checks, run once per transport setting by the subclasses below."""

    def connect(self, **kw):
        c = super().connect(events=EVENTS, **kw)
        # Every other event (the catch-all sees those without a handler of their own).
        c.others = queue.Queue()
        c.sio.on("*", lambda event, *args: c.others.put((event, *args)))
        return c

    def pair(self):
        room = unique_room("pyev")
        name_a, name_b = unique_name("ann"), unique_name("bob")
        a, b = self.connect(auth={"name": name_a}), self.connect(auth={"name": name_b})
        self.assertIs(a.call("join", room).get("ok"), True)
        self.assertIs(b.call("join", room).get("ok"), True)
        return room, a, b, name_a

    def assert_emit_ack(self, ack, room):
        self.assertIsInstance(ack, dict, f"emit ack: {ack!r}")
        self.assertEqual(sorted(ack), ["offset", "ok", "room", "ts"], f"emit ack: {ack!r}")
        self.assertIs(ack["ok"], True, f"emit ack: {ack!r}")
        self.assertEqual(ack["room"], room)
        self.assertIsInstance(ack["offset"], int)
        self.assertGreaterEqual(ack["offset"], 1)
        self.assertLess(abs(ack["ts"] - time.time() * 1000), 60_000, "ts is server time in ms")

    def assert_error_ack(self, ack, code):
        self.assertIsInstance(ack, dict, f"error ack: {ack!r}")
        self.assertIs(ack.get("ok"), False, f"error ack: {ack!r}")
        self.assertIsInstance(ack.get("error"), str, f"error ack says why: {ack!r}")
        self.assertTrue(ack["error"], f"error ack says why: {ack!r}")
        self.assertEqual(ack.get("code"), code, f"error ack code: {ack!r}")

    def assert_envelope(self, ev, room, event, sender, offset=None):
        self.assertIsInstance(ev, dict, f"event payload: {ev!r}")
        self.assertEqual(sorted(ev), ENVELOPE_KEYS, f"event payload: {ev!r}")
        self.assertEqual(ev["room"], room)
        self.assertEqual(ev["event"], event)
        self.assertEqual(ev["from"], sender, f"from is the sender's name: {ev!r}")
        self.assertIsInstance(ev["id"], int, f"id is the sender's connection id: {ev!r}")
        self.assertIsInstance(ev["offset"], int)
        if offset is not None:
            self.assertEqual(ev["offset"], offset)
        self.assertLess(abs(ev["ts"] - time.time() * 1000), 60_000, "ts is server time in ms")

    def stray(self, c):
        """Whatever else `c` received: messages, presence, other events."""
        time.sleep(0.2)
        out = [("message", m) for m in c.drain("message")]
        while True:
            try:
                out.append(c.others.get_nowait())
            except queue.Empty:
                return out

    # --- the tests ---

    def test_custom_event_reaches_every_member_with_the_envelope(self):
        room, a, b, name_a = self.pair()
        data = {"x": 10, "y": -3.5, "label": "ü€😀", "list": [1, None, {"deep": True}]}
        ack = a.call("cursor", {"room": room, "data": data})
        self.assert_emit_ack(ack, room)
        seen = []
        for c in (a, b):
            ev = c.next("cursor", lambda e: e.get("room") == room)
            self.assert_envelope(ev, room, "cursor", name_a, ack["offset"])
            self.assertEqual(ev["ts"], ack["ts"], "the ack carries the event's timestamp")
            self.assertEqual(ev["data"], data, "data arrives unchanged")
            seen.append(ev)
        self.assertEqual(seen[0]["id"], seen[1]["id"])

        # Without an ack, and sharing the room's offsets with messages.
        a.sio.emit("ink", {"room": room, "data": "no ack"})
        msg_ack = a.call("message", {"room": room, "data": "plain"})
        ink = b.next("ink", lambda e: e.get("room") == room)
        self.assert_envelope(ink, room, "ink", name_a, ack["offset"] + 1)
        self.assertEqual(ink["data"], "no ack")
        self.assertEqual(msg_ack["offset"], ack["offset"] + 2)
        m = b.next("message", lambda m: m.get("room") == room)
        self.assertNotIn("event", m, f"a plain message has no event field: {m!r}")
        self.assertEqual(b.drain("cursor"), [], "each event arrives once")
        self.assertEqual(self.stray(b), [])

    def test_binary_inside_event_data_arrives_intact(self):
        room, a, b, _ = self.pair()
        blob = bytes([0, 255, 1, 254, 10, 13, 0x5B, 0x22])
        big = bytes([0xCD]) * 70_000
        data = {"caption": "bin", "blob": blob, "nested": {"list": [big, "after"]}}
        ack = a.call("cursor", {"room": room, "data": data})
        self.assert_emit_ack(ack, room)
        for c in (b, a):
            ev = c.next("cursor", lambda e: e.get("room") == room)
            self.assertEqual(ev["offset"], ack["offset"])
            self.assertIsInstance(ev["data"]["blob"], bytes)
            self.assertIsInstance(ev["data"]["nested"]["list"][0], bytes)
            self.assertEqual(ev["data"], data)
        a.call("cursor", {"room": room, "data": b"raw bytes"})
        whole = b.next("cursor", lambda e: e.get("room") == room)
        self.assertEqual(whole["data"], b"raw bytes")

    def test_reserved_and_malformed_names_are_refused_and_reach_no_one(self):
        room, a, b, _ = self.pair()
        # The server's own names (Socket.IO's are a protocol error: see the test below).
        for name in ("presence", "welcome", "reply", "event", "error", "emit"):
            self.assert_error_ack(a.call(name, {"room": room, "data": {"fake": True}}), "reserved-event")
        for name in ("", "x" * 65, "cur\nsor", "é" * 33):
            self.assert_error_ack(a.call(name, {"room": room, "data": 1}), "bad-event")
        self.assert_error_ack(a.call("cursor", "not an object"), "bad-request")
        self.assert_error_ack(a.call("cursor", {"data": 1}), "bad-request")
        self.assert_error_ack(a.call("cursor", {"room": unique_room("missing"), "data": 1}), "no-such-room")
        self.assertEqual(a.call("echo", "still here"), "still here")
        self.assertTrue(a.sio.connected, "a reserved name does not cost the connection")
        ack = a.call("cursor", {"room": room, "data": "after"})
        self.assertEqual(ack["offset"], 1, "refusals take no offset")
        self.assertEqual(b.next("cursor", lambda e: e.get("room") == room)["data"], "after")
        self.assertEqual(self.stray(b), [])
        self.assertTrue(b.sio.connected)

    def test_a_name_socketio_reserves_closes_the_connection_as_the_reference_server_does(self):
        # python-socketio (unlike socket.io-client) sends `connect`, `disconnect`, … as event names; the
        # reference parser rejects such a packet, and so does volna: the sender is dropped, no one else
        # sees anything.
        for name in ("connect", "disconnect", "connect_error", "disconnecting", "newListener"):
            with self.subTest(name=name):
                room, a, b, _ = self.pair()
                dropped = threading.Event()
                a.sio.on("disconnect", lambda *_args: dropped.set())
                a.sio.emit(name, {"room": room, "data": {"fake": True}})
                self.assertTrue(dropped.wait(WAIT), f"{name!r}: the connection is closed")
                self.assertFalse(a.sio.connected)
                self.assertEqual(b.call("echo", "fine"), "fine")
                left = b.next("presence", lambda p: p.get("room") == room and p.get("event") == "leave")
                self.assertEqual(left.get("members"), 1, f"presence: {left!r}")
                self.assertEqual(self.stray(b), [])

    def test_non_member_is_refused(self):
        room, _a, b, _ = self.pair()
        outsider = self.connect()
        self.assert_error_ack(outsider.call("cursor", {"room": room, "data": "intruder"}), "not-member")
        self.assertEqual(b.drain("cursor"), [])

    def test_history_lists_custom_events(self):
        room, a, _b, name_a = self.pair()
        a.call("message", {"room": room, "data": "first"})
        e1 = a.call("cursor", {"room": room, "data": {"x": 1}})
        e2 = a.call("ink", {"room": room, "data": {"stroke": b"\x04\x05\x06"}})
        h = a.call("history", room)
        self.assertIs(h.get("ok"), True, h)
        self.assertEqual(
            [(m["offset"], m.get("event")) for m in h["messages"]],
            [(1, None), (e1["offset"], "cursor"), (e2["offset"], "ink")],
        )
        self.assertEqual(h["messages"][0]["data"], "first")
        self.assert_envelope(h["messages"][1], room, "cursor", name_a, e1["offset"])
        self.assertEqual(h["messages"][1]["data"], {"x": 1})
        self.assertEqual(h["messages"][1]["ts"], e1["ts"])
        self.assertEqual(h["messages"][2]["data"], {"stroke": b"\x04\x05\x06"})
        last = a.sio.call("history", (room, 1), timeout=WAIT)
        self.assertEqual([m.get("event") for m in last["messages"]], ["ink"])

    def test_tcp_member_sees_events_and_can_emit(self):
        room, a, _b, _ = self.pair()
        tcp = TcpClient()
        self._clients.append(tcp)
        nick = f"pyev{os.getpid() % 10000}x{uuid.uuid4().hex[:6]}"
        self.assertEqual(tcp.command(f"/nick {nick}", "ok nick"), f"ok nick {nick}")
        self.assertTrue(tcp.command(f"/join {room}", "ok join").startswith(f"ok join {room} "))
        a.call("cursor", {"room": room, "data": {"x": 1}})
        self.assertEqual(tcp.line(lambda l: l.startswith(f"event {room} ")), f'event {room} cursor: {{"x":1}}')
        tcp.send('/emit cursor {"x": 2}')
        ev = a.next("cursor", lambda e: e.get("room") == room and e.get("from") == nick)
        self.assert_envelope(ev, room, "cursor", nick)
        self.assertEqual(ev["data"], {"x": 2})


class WebSocketOnly(_EventCase, unittest.TestCase):
    TRANSPORTS = ["websocket"]


class PollingOnly(_EventCase, unittest.TestCase):
    TRANSPORTS = ["polling"]


class PollingUpgradedToWebSocket(_EventCase, unittest.TestCase):
    TRANSPORTS = None


if __name__ == "__main__":
    unittest.main()
