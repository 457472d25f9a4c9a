"""The server API across two volna nodes behind one Redis, driven by `cent` (Centrifugo's Python
client): what a backend asks of node A reaches, lists and disconnects the clients of node B.

Run by tests/cluster-interop/run.sh, which starts redis-server and the two nodes and sets VOLNA_A,
VOLNA_B and API_KEY. Every wait is bounded.
"""

import os
import queue
import time
import unittest
import uuid

import socketio
from cent import (
    BroadcastRequest,
    Client as Cent,
    DisconnectRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
)

A = os.environ["VOLNA_A"]
B = os.environ["VOLNA_B"]
KEY = os.environ["API_KEY"]
WAIT = 5.0


def unique(prefix):
    return f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class Sio:
    """A python-socketio client of one node, with a queue per event."""

    def __init__(self, url, room=None):
        self.sio = socketio.Client(reconnection=False, request_timeout=WAIT)
        self.got = {"message": queue.Queue(), "tick": queue.Queue(), "disconnect": queue.Queue()}
        for event in ("message", "tick"):
            self.sio.on(event, self.got[event].put)
        self.sio.on("disconnect", lambda *reason: self.got["disconnect"].put(reason))
        self.sio.connect(url, auth={"name": unique("s")}, transports=["websocket"], wait_timeout=WAIT)
        if room:
            assert self.sio.call("join", room, timeout=WAIT)["ok"] is True

    def next(self, event, pred=lambda _x: True):
        deadline = time.monotonic() + WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {event}")
            try:
                item = self.got[event].get(timeout=left)
            except queue.Empty:
                continue
            if pred(item):
                return item

    def close(self):
        try:
            self.sio.disconnect()
        except Exception:  # noqa: BLE001 - teardown
            pass


class TwoNodes(unittest.TestCase):
    def setUp(self):
        self.a = Cent(f"{A}/api", KEY, timeout=WAIT)
        self.clients = []

    def tearDown(self):
        for c in self.clients:
            c.close()

    def client(self, url, room=None):
        c = Sio(url, room)
        self.clients.append(c)
        return c

    def test_info_lists_both_nodes(self):
        deadline = time.monotonic() + 10
        while True:
            nodes = self.a.info(InfoRequest()).nodes
            if len(nodes) == 2 or time.monotonic() > deadline:
                break
            time.sleep(0.2)  # heartbeats come every 2 s
        self.assertEqual(sorted(n.name for n in nodes), ["volna-a", "volna-b"])
        self.assertEqual(len({n.uid for n in nodes}), 2)

    def test_a_publish_on_a_reaches_members_on_b(self):
        room = unique("feed")
        on_b, on_a = self.client(B, room), self.client(A, room)
        self.a.publish(PublishRequest(channel=room, data={"px": 1}))
        self.assertEqual(on_b.next("message", lambda m: m["room"] == room)["data"], {"px": 1})
        self.assertEqual(on_a.next("message", lambda m: m["room"] == room)["data"], {"px": 1})
        self.a.publish(PublishRequest(channel=room, data={"px": 2}, event="tick"))
        self.assertEqual(on_b.next("tick", lambda e: e["room"] == room)["data"], {"px": 2})
        other = unique("feed")
        on_b2 = self.client(B, other)
        result = self.a.broadcast(BroadcastRequest(channels=[room, other], data="both"))
        self.assertEqual(len(result.responses), 2)
        self.assertEqual(on_b2.next("message", lambda m: m["room"] == other)["data"], "both")

    def test_presence_on_a_lists_the_members_on_b(self):
        room = unique("seen")
        on_a, on_b = self.client(A, room), self.client(B, room)
        presence = self.a.presence(PresenceRequest(channel=room)).presence
        self.assertEqual(set(presence), {on_a.sio.get_sid("/"), on_b.sio.get_sid("/")})
        stats = self.a.presence_stats(PresenceStatsRequest(channel=room))
        self.assertEqual(stats.num_clients, 2)

    def test_personal_room_and_disconnect_of_a_client_on_b(self):
        on_b = self.client(B)
        sid = on_b.sio.get_sid("/")
        self.a.publish(PublishRequest(channel=sid, data="only you"))
        self.assertEqual(on_b.next("message", lambda m: m["room"] == sid)["data"], "only you")
        self.a.disconnect(DisconnectRequest(user="", client=sid))
        reason = on_b.next("disconnect")
        if reason:
            self.assertEqual(reason[0], socketio.Client.reason.SERVER_DISCONNECT)


if __name__ == "__main__":
    unittest.main()
