"""Interop: resumable rooms (docs/recovery.md). A client that was away joins again with where it left
off (the last offset it has, and the room's epoch from its join reply): the messages it missed come
first, in order and once each, then the join reply; when the room no longer keeps them all (a short
history here) or it is another life of the room, the join is refused `unrecoverable` and the client
joins afresh. /ws (websocket-client), TCP lines and python-socketio (`join(room, {since})`)."""

import queue
import time
import unittest
import uuid

import socketio

from volnaproc import ClosingCase, Volna
from wsclient import WsClient

WAIT = 5.0
HISTORY = 8


class ResumeTest(ClosingCase):
    @classmethod
    def setUpClass(cls):
        cls.volna = Volna(["--history", str(HISTORY)])

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()

    def ws(self):
        c = WsClient(self.volna.http, wait=WAIT)
        self.closers.append(c.close)
        c.recv(lambda m: m.get("type") == "welcome")
        return c

    def publisher(self, room):
        p = self.ws()
        self.assertEqual(p.request("join", room=room)["type"], "reply")
        return p

    def publish(self, p, room, texts):
        for t in texts:
            self.assertEqual(p.request("message", room=room, data=t)["type"], "reply")

    def test_ws_resumes_what_it_missed_in_order_then_replies(self):
        room = f"resume-{uuid.uuid4().hex[:6]}"
        p = self.publisher(room)
        b = self.ws()
        joined = b.request("join", room=room)
        epoch = joined["epoch"]
        self.assertEqual((joined["offset"], joined["missed"]), (0, 0))
        self.publish(p, room, ["one", "two"])
        last = [b.recv(lambda m: m.get("type") == "message")["offset"] for _ in range(2)][-1]
        b.close()
        self.publish(p, room, ["three", "four", "five"])
        c = self.ws()
        c.ws.send('{"op":"join","id":7,"room":"%s","since":{"offset":%d,"epoch":"%s"}}' % (room, last, epoch))
        frames = []
        while True:
            m = c.recv(lambda m: True)
            frames.append(m)
            if m.get("id") == 7:
                break
        self.assertEqual([f["data"] for f in frames if f.get("type") == "message"], ["three", "four", "five"])
        reply = frames[-1]
        self.assertEqual((reply["type"], reply["missed"], reply["offset"], reply["epoch"]), ("reply", 3, 5, epoch))
        # From then on, a member as any other.
        self.publish(p, room, ["six"])
        self.assertEqual(c.recv(lambda m: m.get("type") == "message")["data"], "six")
        # Nothing missed: nothing sent, the reply at once.
        d = self.ws()
        self.assertEqual(d.request("join", room=room, since={"offset": 6, "epoch": epoch})["missed"], 0)

    def test_unrecoverable_when_not_kept_or_another_life(self):
        room = f"gone-{uuid.uuid4().hex[:6]}"
        p = self.publisher(room)
        joined = p.request("join", room=room)
        epoch = joined["epoch"]
        self.publish(p, room, [f"m{i}" for i in range(HISTORY + 3)])
        c = self.ws()
        err = c.request("join", room=room, since={"offset": 1, "epoch": epoch})
        self.assertEqual((err["type"], err["code"]), ("error", "unrecoverable"), err)
        self.assertEqual(c.request("message", room=room, data="?")["code"], "not-member",
                         "not joined by a refused resume")
        err = c.request("join", room=room, since={"offset": HISTORY, "epoch": "another-life"})
        self.assertEqual(err["code"], "unrecoverable")
        err = c.request("join", room=f"never-{uuid.uuid4().hex[:6]}", since={"offset": 0})
        self.assertEqual(err["code"], "unrecoverable", "a room that does not exist has no past")
        # Still kept: the last HISTORY - 1 are.
        ok = c.request("join", room=room, since={"offset": 4 + 1, "epoch": epoch})
        self.assertEqual(ok["missed"], HISTORY + 3 - 5)

    def test_tcp_join_since(self):
        room = f"tcp-resume-{uuid.uuid4().hex[:6]}"
        p = self.publisher(room)
        epoch = p.request("join", room=room)["epoch"]
        self.publish(p, room, ["a", "b", "c"])
        _, f = self.tcp_connect(self.volna.tcp, WAIT)
        f.readline()  # welcome
        f.write(f"/join {room} since 1 {epoch}\n")
        f.flush()
        lines = [f.readline().strip() for _ in range(3)]
        self.assertTrue(lines[0].startswith(f"msg {room} 2 ") and lines[0].endswith(": b"), lines)
        self.assertTrue(lines[1].startswith(f"msg {room} 3 ") and lines[1].endswith(": c"), lines)
        self.assertTrue(lines[2].startswith(f"ok join {room}"), lines)
        f.write(f"/join {room}x since 1\n")
        f.flush()
        self.assertTrue(f.readline().startswith("error unrecoverable"))

    def test_socketio_join_since(self):
        room = f"sio-resume-{uuid.uuid4().hex[:6]}"
        p = self.publisher(room)
        epoch = p.request("join", room=room)["epoch"]
        self.publish(p, room, ["x", "y"])
        sio = socketio.Client(reconnection=False, request_timeout=WAIT)
        got = queue.Queue()
        sio.on("message", lambda m: got.put(("message", m["data"])))
        sio.connect(self.volna.http, transports=["websocket"], wait_timeout=WAIT)
        self.closers.append(sio.disconnect)
        ack = sio.call("join", (room, {"since": {"offset": 0, "epoch": epoch}}), timeout=WAIT)
        self.assertEqual((ack["ok"], ack["missed"], ack["epoch"]), (True, 2, epoch))
        self.assertEqual([got.get(timeout=WAIT) for _ in range(2)], [("message", "x"), ("message", "y")])
        time.sleep(0.1)
        self.assertTrue(got.empty())


if __name__ == "__main__":
    unittest.main()
