"""Interop: volna's server API (docs/applications.md) driven by `cent`, the stock Python client of
Centrifugo's HTTP server API, with python-socketio, /ws (websocket-client) and TCP clients as the
receivers.

A Centrifugo channel is a volna room (or a personal room: a Socket.IO socket id, a client id of the
other transports, `#user`). Run by tests/interop/run.sh, which starts volna with `--api-key` and sets
VOLNA_HTTP / VOLNA_TCP / VOLNA_API_KEY_FOR_TESTS. Every wait is bounded.
"""

import base64
import os
import queue
import time
import unittest

import requests
import socketio
from cent import (
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    Client as Cent,
    CentApiResponseError,
    CentTransportError,
    CentUnauthorizedError,
    DisconnectRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    StreamPosition,
)

from test_socketio import HTTP, WAIT, ClientsCase, unique_name, unique_room
from wsclient import WsClient

KEY = os.environ.get("VOLNA_API_KEY_FOR_TESTS", "interop-api-key")
API = f"{HTTP}/api"


class ServerApiTest(ClientsCase, unittest.TestCase):
    def setUp(self):
        super().setUp()
        self.cent = Cent(API, KEY, timeout=WAIT)

    def ws(self):
        c = WsClient(HTTP, wait=WAIT)
        c.recv(lambda m: m.get("type") == "welcome")
        self._clients.append(c)
        return c

    def sio(self, room=None, name=None):
        c = self.connect(auth={"name": name or unique_name("api")}, events=("tick",))
        c.disconnects = queue.Queue()
        c.sio.on("disconnect", lambda *reason: c.disconnects.put(reason))
        if room:
            self.assertIs(c.call("join", room).get("ok"), True)
        return c

    def test_publish_reaches_every_transport_as_a_message_from_the_server(self):
        room = unique_room("api")
        s = self.sio(room)
        w = self.ws()
        self.assertEqual(w.request("join", room=room)["type"], "reply")
        t = self.tcp()
        t.command(f"/join {room}", "ok join")
        result = self.cent.publish(PublishRequest(channel=room, data={"text": "hello"}))
        self.assertGreaterEqual(result.offset, 1)
        self.assertTrue(result.epoch, "a room has an epoch")
        m = s.next("message", lambda m: m["room"] == room)
        self.assertEqual(m["from"], "server")
        self.assertEqual(m["data"], {"text": "hello"})
        self.assertEqual(m["offset"], result.offset)
        wm = w.recv(lambda m: m.get("type") == "message" and m.get("room") == room)
        self.assertEqual(wm["from"]["name"], "server")
        self.assertEqual(wm["data"], {"text": "hello"})
        self.assertEqual(wm["offset"], result.offset)
        line = t.line(lambda l: l.startswith(f"msg {room} "))
        self.assertIn(f" {result.offset} ", line)
        # The data goes out as the backend wrote it (cent sends json.dumps' spacing).
        self.assertTrue(line.endswith('server: {"text": "hello"}'), line)
        # The next publish takes the next offset of the same stream.
        again = self.cent.publish(PublishRequest(channel=room, data="two"))
        self.assertEqual((again.offset, again.epoch), (result.offset + 1, result.epoch))

    def test_publish_an_event_and_binary(self):
        room = unique_room("api")
        s = self.sio(room)
        # `event` is volna's extra field: members get that event instead of a message.
        self.cent.publish(PublishRequest(channel=room, data={"bid": 101.5}, event="tick"))
        ev = s.next("tick", lambda e: e["room"] == room)
        self.assertEqual(ev["data"], {"bid": 101.5})
        self.assertEqual(ev["event"], "tick")
        self.assertEqual(ev["from"], "server")
        blob = bytes(range(256))
        self.cent.publish(PublishRequest(channel=room, data=None, b64data=base64.b64encode(blob).decode()))
        m = s.next("message", lambda m: m["room"] == room and isinstance(m["data"], bytes))
        self.assertEqual(m["data"], blob)

    def test_broadcast_publishes_into_each_channel(self):
        rooms = [unique_room("apib"), unique_room("apib")]
        a, b = self.sio(rooms[0]), self.sio(rooms[1])
        result = self.cent.broadcast(BroadcastRequest(channels=rooms + ["bad\x01name"], data="all"))
        self.assertEqual(len(result.responses), 3)
        self.assertGreaterEqual(result.responses[0].result.offset, 1)
        self.assertGreaterEqual(result.responses[1].result.offset, 1)
        self.assertEqual(result.responses[2].error.code, 107, "a bad channel fails alone")
        self.assertEqual(a.next("message", lambda m: m["room"] == rooms[0])["data"], "all")
        self.assertEqual(b.next("message", lambda m: m["room"] == rooms[1])["data"], "all")

    def test_presence_lists_clients_by_their_ids(self):
        room = unique_room("apip")
        a, b = self.sio(room), self.sio(room)
        t = self.tcp()
        t.command(f"/join {room}", "ok join")
        presence = self.cent.presence(PresenceRequest(channel=room)).presence
        self.assertEqual(len(presence), 3)
        sids = {a.sio.get_sid("/"), b.sio.get_sid("/")}
        self.assertTrue(sids <= set(presence), f"socket ids are client ids: {sorted(presence)}")
        for client, info in presence.items():
            self.assertEqual(info.client, client)
            self.assertEqual(info.user, "", "anonymous clients have no user")
        names = sorted(info.model_extra["name"] for info in presence.values())
        self.assertIn(t.name, names)
        stats = self.cent.presence_stats(PresenceStatsRequest(channel=room))
        self.assertEqual((stats.num_clients, stats.num_users), (3, 0))
        empty = self.cent.presence(PresenceRequest(channel=unique_room("nobody"))).presence
        self.assertEqual(empty, {})

    def test_history_with_limit_since_and_reverse(self):
        room = unique_room("apih")
        self.sio(room)
        offsets = [self.cent.publish(PublishRequest(channel=room, data={"n": i})).offset for i in range(3)]
        whole = self.cent.history(HistoryRequest(channel=room, limit=-1))
        self.assertEqual([p.offset for p in whole.publications], offsets)
        self.assertEqual([p.data for p in whole.publications], [{"n": 0}, {"n": 1}, {"n": 2}])
        self.assertEqual(whole.offset, offsets[-1])
        self.assertEqual(whole.publications[0].tags["from"], "server")
        only_position = self.cent.history(HistoryRequest(channel=room))
        self.assertEqual((only_position.publications, only_position.offset), ([], offsets[-1]))
        since = StreamPosition(offset=offsets[0], epoch=whole.epoch)
        after = self.cent.history(HistoryRequest(channel=room, limit=10, since=since))
        self.assertEqual([p.offset for p in after.publications], offsets[1:])
        newest = self.cent.history(HistoryRequest(channel=room, limit=1, reverse=True))
        self.assertEqual([p.offset for p in newest.publications], offsets[-1:])
        with self.assertRaises(CentApiResponseError) as e:
            self.cent.history(
                HistoryRequest(channel=room, limit=10, since=StreamPosition(offset=1, epoch="other"))
            )
        self.assertEqual(e.exception.code, 112)

    def test_channels_with_a_pattern_and_info(self):
        prefix = unique_room("apic")
        rooms = [f"{prefix}-x", f"{prefix}-y"]
        self.sio(rooms[0])
        self.sio(rooms[1]).call("join", rooms[0])
        channels = self.cent.channels(ChannelsRequest(pattern=f"{prefix}-*")).channels
        self.assertEqual(sorted(channels), rooms)
        self.assertEqual(channels[rooms[0]].num_clients, 2)
        self.assertEqual(channels[rooms[1]].num_clients, 1)
        nodes = self.cent.info(InfoRequest()).nodes
        self.assertEqual(len(nodes), 1)
        node = nodes[0]
        self.assertTrue(node.uid and node.name and node.version)
        self.assertGreaterEqual(node.num_clients, 2)
        self.assertGreaterEqual(node.num_channels, 2)

    def test_a_clients_personal_room_reaches_that_client_only(self):
        room = unique_room("apiq")
        a, b = self.sio(room), self.sio(room)
        sid = a.sio.get_sid("/")
        self.cent.publish(PublishRequest(channel=sid, data="just you"))
        m = a.next("message", lambda m: m["room"] == sid)
        self.assertEqual((m["data"], m["from"]), ("just you", "server"))
        time.sleep(0.3)
        self.assertEqual([m for m in b.drain("message") if m["data"] == "just you"], [])
        # Clients cannot join personal rooms of users.
        ack = b.call("join", "#somebody")
        self.assertIs(ack.get("ok"), False)
        self.assertEqual(ack.get("code"), "reserved-room")

    def test_disconnect_a_client_of_any_transport(self):
        room = unique_room("apid")
        s = self.sio(room)
        t = self.tcp()
        t.command(f"/join {room}", "ok join")
        sid = s.sio.get_sid("/")
        self.cent.disconnect(DisconnectRequest(user="", client=sid))
        reason = s.disconnects.get(timeout=WAIT)
        if reason:  # python-socketio >= 5.12 says why: the server's DISCONNECT, not a lost transport
            self.assertEqual(reason[0], socketio.Client.reason.SERVER_DISCONNECT)
        presence = self.cent.presence(PresenceRequest(channel=room)).presence
        self.assertEqual(len(presence), 1, "the socket is gone from the room")
        (tcp_client,) = presence
        self.cent.disconnect(
            DisconnectRequest(user="", client=tcp_client, disconnect={"code": 4100, "reason": "maintenance"})
        )
        bye = t.line(lambda l: "maintenance" in l)
        self.assertIn("disconnected", bye)

    def test_batch_answers_each_command_in_order(self):
        room = unique_room("apix")
        self.sio(room)
        result = self.cent.batch(
            BatchRequest(
                requests=[
                    PublishRequest(channel=room, data=1),
                    PresenceStatsRequest(channel=room),
                    PublishRequest(channel=room, data=2),
                ]
            )
        )
        first, stats, second = result.replies
        self.assertEqual(stats.num_clients, 1)
        self.assertEqual(second.offset, first.offset + 1)

    def test_refusals(self):
        with self.assertRaises(CentUnauthorizedError):
            Cent(API, KEY + "-wrong", timeout=WAIT).info(InfoRequest())
        r = requests.post(f"{API}/info", timeout=WAIT)
        self.assertEqual(r.status_code, 401, "no key")
        headers = {"X-API-Key": KEY}
        r = requests.post(f"{API}/no_such_method", json={}, headers=headers, timeout=WAIT)
        self.assertEqual((r.status_code, r.json()["error"]["code"]), (404, 104))
        r = requests.post(f"{API}/publish", data=b"{not json", headers=headers, timeout=WAIT)
        self.assertEqual((r.status_code, r.json()["error"]["code"]), (400, 107))
        r = requests.post(f"{API}/publish", data=b"x" * (2 << 20), headers=headers, timeout=WAIT)
        self.assertEqual(r.status_code, 413, "bodies over the limit are refused")
        for bad in (
            {"channel": "r"},  # no data
            {"channel": "", "data": 1},
            {"channel": "r" * 300, "data": 1},
            {"channel": "r", "data": 1, "event": "presence"},  # reserved
            {"channel": "r", "data": 1, "b64data": "%%%"},
        ):
            r = requests.post(f"{API}/publish", json=bad, headers=headers, timeout=WAIT)
            self.assertEqual(r.status_code, 200, bad)
            self.assertEqual(r.json()["error"]["code"], 107, bad)
        with self.assertRaises(CentApiResponseError) as e:
            self.cent.disconnect(DisconnectRequest(user=""))
        self.assertEqual(e.exception.code, 107)
        with self.assertRaises(CentTransportError):
            Cent(f"{HTTP}/nowhere", KEY, timeout=WAIT).info(InfoRequest())
        health = requests.get(f"{HTTP}/health", timeout=WAIT).json()
        self.assertGreater(health["api_errors"], 0)
        self.assertGreater(health["api_requests"], 0)


if __name__ == "__main__":
    unittest.main()
