"""Interop: the backend hooks (docs/applications.md) with a backend started by the test — an HTTP
server in this process speaking Centrifugo's proxy shapes — and the stock clients of each transport:
python-socketio, /ws (websocket-client) and raw TCP.

This test starts its own volna (VOLNA_BIN, set by tests/interop/run.sh) with the three hook URLs
pointing at the backend, and room policies that route `order` events to the rpc hook and publications
in `mod:*` rooms through the publish hook. It checks what each client sees when the backend allows,
refuses, rewrites, is slow (2 s, over the 1 s timeout), answers 500 or garbage, or is down — and that
one client's failing hook never holds up another client.
"""

import json
import os
import queue
import socket
import threading
import time
import unittest
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
import socketio

from volnaproc import ClosingCase, Volna, free_port
from wsclient import WsClient

WAIT = 5.0
API_KEY = f"hooks-test-{os.getpid()}-key"
MAX_PENDING = 3
POLICIES = """
[[rooms]]
match = "mod:*"
publish = "hook"

[[rooms]]
match = "shop:*"
rpc = ["order"]

[[rooms]]
match = "club:*"
join = "hook"
"""


class Backend:
    """The application's backend: decides by what the client sent."""

    def __init__(self):
        self.port = free_port()
        self.calls = queue.Queue()
        self.server = None
        self.start()

    def start(self):
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                backend.calls.put((self.path, body))
                status, answer = backend.answer(self.path, body)
                raw = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def behaviour(word):
        """Shared by every hook: a word in the client's data picks a failure."""
        if word == "slow":
            time.sleep(2)
            return 200, {"result": {}}
        if word == "garbage":
            return 200, b"<html>not a hook answer</html>"
        if word == "500":
            return 500, {"error": "boom"}
        return None

    def answer(self, path, body):
        data = body.get("data")
        if path == "/connect":
            token = (data or {}).get("token") if isinstance(data, dict) else None
            if token is None:
                return 200, {"result": {}}  # anonymous clients are welcome
            failure = self.behaviour(token)
            if failure:
                return failure
            if token == "bad":
                return 200, {"error": {"code": 1000, "message": "invalid token"}}
            if token == "banned":
                return 200, {"disconnect": {"code": 4501, "reason": "banned"}}
            user = token.removeprefix("user-")
            return 200, {
                "result": {
                    "user": user,
                    "name": f"n-{user}",
                    "info": {"role": "tester"},
                    "rooms": [f"inbox-{user}"],
                }
            }
        if path == "/rpc":
            word = data.get("mode") if isinstance(data, dict) else None
            failure = self.behaviour(word)
            if failure:
                return failure
            qty = data.get("qty", 0) if isinstance(data, dict) else 0
            if qty <= 0:
                return 200, {"error": {"code": 1001, "message": "quantity must be positive"}}
            return 200, {"result": {"data": {"accepted": True, "qty": qty, "user": body["user"], "event": body["event"]}}}
        if path == "/publish":
            text = data.get("text", "") if isinstance(data, dict) else ""
            failure = self.behaviour(text)
            if failure:
                return failure
            if "badword" in text:
                return 200, {"error": {"code": 1002, "message": "mind your language"}}
            if text.startswith("shout "):
                return 200, {"result": {"data": {"text": text.upper()}}}
            return 200, {"result": {}}
        if path == "/subscribe":
            if body.get("user", "").startswith("member"):
                return 200, {"result": {}}
            if body.get("user") == "banned-joiner":
                return 200, {"disconnect": {"code": 4502, "reason": "not welcome here"}}
            return 200, {"error": {"code": 1003, "message": "members only"}}
        return 404, {}


def hooked_volna(backend):
    """A volna with the three hooks pointing at the backend."""
    base = f"http://127.0.0.1:{backend.port}"
    return Volna(
        [
            "--connect-hook-url", f"{base}/connect",
            "--rpc-hook-url", f"{base}/rpc",
            "--publish-hook-url", f"{base}/publish",
            "--subscribe-hook-url", f"{base}/subscribe",
            "--api-key", API_KEY,
            "--max-pending-per-connection", str(MAX_PENDING),
        ],
        POLICIES,
    )


def sio_client(http, auth=None):
    """A connected python-socketio client, or the connect_error it got."""
    sio = socketio.Client(reconnection=False, request_timeout=WAIT)
    got = {"message": queue.Queue(), "disconnect": queue.Queue(), "connect_error": queue.Queue()}
    sio.on("message", got["message"].put)
    sio.on("disconnect", lambda *r: got["disconnect"].put(r))
    sio.on("connect_error", got["connect_error"].put)
    sio.got = got
    try:
        sio.connect(http, auth=auth or {}, transports=["websocket"], wait_timeout=WAIT)
    except socketio.exceptions.ConnectionError:
        pass
    return sio


class Tcp:
    def __init__(self, addr):
        host, _, port = addr.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=WAIT)
        self.buf = b""

    def line(self, pred=lambda _l: True):
        deadline = time.monotonic() + WAIT
        while True:
            while b"\n" in self.buf:
                l, self.buf = self.buf.split(b"\n", 1)
                l = l.decode()
                if pred(l):
                    return l
            if time.monotonic() > deadline:
                raise AssertionError("TCP timed out")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError("TCP closed")
            self.buf += chunk

    def send(self, line):
        self.sock.sendall(line.encode() + b"\n")


class HooksTest(ClosingCase):
    @classmethod
    def setUpClass(cls):
        cls.backend = Backend()
        cls.volna = hooked_volna(cls.backend)

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()
        cls.backend.stop()

    def sio(self, auth=None):
        c = sio_client(self.volna.http, auth)
        self.closers.append(c.disconnect)
        return c

    def ws(self, query=""):
        c = WsClient(self.volna.http, query, WAIT)
        self.closers.append(c.close)
        return c

    def tcp(self):
        c = Tcp(self.volna.tcp)
        self.closers.append(c.sock.close)
        return c

    def last_call(self, path, pred=lambda _b: True):
        """The next call to `path` the backend got for which pred holds (calls of earlier tests,
        such as slow ones finishing late, are skipped)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            p, body = self.backend.calls.get(timeout=WAIT)
            if p == path and pred(body):
                return body
        raise AssertionError(f"no call to {path}")

    # --- connect ---

    def test_connect_hook_names_the_user_of_every_transport(self):
        user = uuid.uuid4().hex[:8]
        s = self.sio({"token": f"user-{user}"})
        self.assertTrue(s.connected)
        body = self.last_call("/connect", lambda b: b["data"] == {"token": f"user-{user}"})
        self.assertEqual(body["protocol"], "socketio")
        self.assertEqual(body["client"], s.get_sid("/"), "the client id is the socket id")
        self.assertIn("127.0.0.1", body["remote_addr"])
        self.assertIn("origin", body["headers"], "allow-listed headers are passed on")
        # The grant joined it to its room and named it.
        ack = s.call("who", f"inbox-{user}", timeout=WAIT)
        self.assertEqual(ack["members"], [f"n-{user}"])
        w = self.ws(f"?token=user-{user}w")
        welcome = w.recv(lambda m: m.get("type") == "welcome")
        self.assertEqual(welcome["name"], f"n-{user}w")
        self.assertEqual(self.last_call("/connect", lambda b: b["data"] == {"token": f"user-{user}w"})["protocol"], "json")
        # TCP: anonymous at connect (data null), then /auth through the same hook.
        t = self.tcp()
        t.line(lambda l: l.startswith("welcome "))
        self.assertEqual(self.last_call("/connect", lambda b: b["data"] is None)["protocol"], "line")
        t.send(f"/auth user-{user}t")
        self.assertEqual(t.line(lambda l: l.startswith("ok auth")), f"ok auth {user}t n-{user}t")
        self.last_call("/connect", lambda b: b["data"] == {"token": f"user-{user}t"})

    def test_connect_refusals_reach_each_client_in_its_terms(self):
        s = self.sio({"token": "bad"})
        self.assertFalse(s.connected)
        err = s.got["connect_error"].get(timeout=WAIT)
        self.assertEqual(err["message"], "invalid token")
        self.assertEqual(err["data"]["code"], 4403)
        w = self.ws("?token=banned")
        error = w.recv(lambda m: m.get("type") == "error")
        self.assertIn("banned", error["message"])
        self.assertEqual(w.close_code(), 4501, "closed with the backend's code")
        w = self.ws("?token=bad")
        self.assertIn("invalid token", w.recv(lambda m: m.get("type") == "error")["message"])
        self.assertEqual(w.close_code(), 4403)
        t = self.tcp()
        t.send("/auth bad")
        self.assertEqual(t.line(lambda l: l.startswith("error")), "error refused invalid token")

    def test_a_slow_or_broken_connect_hook_refuses_that_client_only(self):
        fine = {}

        def quick_client():
            start = time.monotonic()
            c = self.sio({"token": "user-quick"})
            fine["connected"] = c.connected
            fine["seconds"] = time.monotonic() - start

        slow = threading.Thread(target=lambda: fine.setdefault("slow", self.sio({"token": "slow"})))
        slow.start()
        time.sleep(0.1)
        quick_client()
        slow.join(WAIT)
        self.assertTrue(fine["connected"])
        self.assertLess(fine["seconds"], 0.9, "a slow backend call for one client holds up no other")
        self.assertFalse(fine["slow"].connected, "over the 1 s timeout: refused")
        err = fine["slow"].got["connect_error"].get(timeout=WAIT)
        self.assertIn("did not answer in time", err["message"])
        self.assertEqual(err["data"]["code"], 4503)
        for word, why in (("garbage", "not a hook answer"), ("500", "HTTP 500")):
            c = self.sio({"token": word})
            self.assertFalse(c.connected, word)
            self.assertIn(why, c.got["connect_error"].get(timeout=WAIT)["message"])

    def test_a_users_personal_room_reaches_all_its_connections(self):
        user = uuid.uuid4().hex[:8]
        a, b = self.sio({"token": f"user-{user}"}), self.sio({"token": f"user-{user}"})
        w = self.ws(f"?token=user-{user}")
        w.recv(lambda m: m.get("type") == "welcome")
        other = self.sio({"token": "user-someone-else"})
        api = lambda method, body: json.load(  # noqa: E731
            __import__("urllib.request").request.urlopen(
                __import__("urllib.request").request.Request(
                    f"{self.volna.http}/api/{method}",
                    data=json.dumps(body).encode(),
                    headers={"X-API-Key": API_KEY},
                ),
                timeout=WAIT,
            )
        )
        self.assertEqual(api("publish", {"channel": f"#{user}", "data": "for you"}), {"result": {}})
        for c in (a, b):
            m = c.got["message"].get(timeout=WAIT)
            self.assertEqual((m["room"], m["data"]), (f"#{user}", "for you"))
        self.assertEqual(w.recv(lambda m: m.get("type") == "message")["data"], "for you")
        time.sleep(0.2)
        self.assertTrue(other.got["message"].empty(), "another user's connection got nothing")
        stats = api("presence_stats", {"channel": f"inbox-{user}"})["result"]
        self.assertEqual((stats["num_clients"], stats["num_users"]), (3, 1))
        presence = api("presence", {"channel": f"inbox-{user}"})["result"]["presence"]
        self.assertEqual({p["user"] for p in presence.values()}, {user})
        self.assertEqual({json.dumps(p["conn_info"]) for p in presence.values()}, {'{"role": "tester"}'})
        api("disconnect", {"user": user})
        for c in (a, b):
            reason = c.got["disconnect"].get(timeout=WAIT)
            if reason:  # python-socketio >= 5.12 says why
                self.assertEqual(reason[0], socketio.Client.reason.SERVER_DISCONNECT)
        self.assertEqual(w.close_code(), 4000)
        self.assertTrue(other.connected, "only that user's connections")

    # --- rpc ---

    def test_rpc_events_are_answered_by_the_backend(self):
        s = self.sio({"token": "user-rpc"})
        room = f"shop:{uuid.uuid4().hex[:6]}"
        self.assertTrue(s.call("join", room, timeout=WAIT)["ok"])
        ack = s.call("order", {"room": room, "data": {"qty": 3}}, timeout=WAIT)
        self.assertEqual(ack, {"ok": True, "event": "order", "data": {"accepted": True, "qty": 3, "user": "rpc", "event": "order"}})
        body = self.last_call("/rpc", lambda b: b["room"] == room)
        self.assertEqual((body["event"], body["method"], body["room"], body["user"]), ("order", "order", room, "rpc"))
        refused = s.call("order", {"room": room, "data": {"qty": 0}}, timeout=WAIT)
        self.assertEqual(refused["ok"], False)
        self.assertEqual(refused["code"], "refused")
        self.assertEqual(refused["error"], "quantity must be positive")
        self.assertEqual(refused["backend_code"], 1001, "the backend's own code comes along")
        for mode, why in (("slow", "did not answer in time"), ("garbage", "not a hook answer"), ("500", "HTTP 500")):
            ack = s.call("order", {"room": room, "data": {"qty": 1, "mode": mode}}, timeout=WAIT)
            self.assertEqual(ack["code"], "hook-unavailable", mode)
            self.assertIn(why, ack["error"], mode)
        # The same over /ws and TCP.
        w = self.ws("?token=user-rpcw")
        w.recv(lambda m: m.get("type") == "welcome")
        self.assertEqual(w.request("join", room=room)["ok"], True)
        reply = w.request("emit", event="order", room=room, data={"qty": 2})
        self.assertEqual(reply["data"]["qty"], 2)
        t = self.tcp()
        t.send(f"/join {room}")
        t.line(lambda l: l.startswith("ok join"))
        t.send('/emit order {"qty": 5}')
        answer = t.line(lambda l: l.startswith("ok emit"))
        self.assertTrue(answer.startswith("ok emit order "), answer)
        self.assertEqual(json.loads(answer.split(" ", 3)[3])["qty"], 5)

    def test_answers_a_connection_waits_for_are_bounded(self):
        room = f"shop:{uuid.uuid4().hex[:6]}"
        w = self.ws("?token=user-pending")
        w.recv(lambda m: m.get("type") == "welcome")
        self.assertEqual(w.request("join", room=room)["ok"], True)
        # Slow orders sent without waiting: MAX_PENDING go to the backend, the rest are refused at once.
        n = MAX_PENDING + 2
        for i in range(n):
            w.ws.send(json.dumps({"op": "emit", "id": 9000 + i, "event": "order", "room": room,
                                  "data": {"qty": 1, "mode": "slow"}}))
        started = time.monotonic()
        answers = [w.recv(lambda m, i=i: m.get("id") == 9000 + i, timeout=3 * WAIT) for i in range(n)]
        codes = sorted(a.get("code") for a in answers)
        self.assertEqual(codes, ["hook-unavailable"] * MAX_PENDING + ["too-many-pending"] * 2, answers)
        self.assertLess(time.monotonic() - started, 3 * WAIT)
        # Their places are free again once answered.
        reply = w.request("emit", event="order", room=room, data={"qty": 2})
        self.assertEqual(reply["data"]["qty"], 2)
        health = requests.get(self.volna.http + "/health", timeout=WAIT).json()
        self.assertGreaterEqual(health["too_many_pending"], 2)
        # Socket.IO acks the same way.
        s = self.sio({"token": "user-pending-s"})
        self.assertTrue(s.call("join", room, timeout=WAIT)["ok"])
        got = queue.Queue()
        for i in range(n):
            s.emit("order", {"room": room, "data": {"qty": 1, "mode": "slow"}}, callback=got.put)
        codes = sorted(got.get(timeout=3 * WAIT)["code"] for _ in range(n))
        self.assertEqual(codes, ["hook-unavailable"] * MAX_PENDING + ["too-many-pending"] * 2)

    def test_the_subscribe_hook_decides_joins(self):
        room = f"club:{uuid.uuid4().hex[:6]}"
        member, guest = self.sio({"token": "user-member1"}), self.sio({"token": "user-guest1"})
        ok = member.call("join", room, timeout=WAIT)
        self.assertTrue(ok["ok"], ok)
        body = self.last_call("/subscribe", lambda b: b["room"] == room)
        self.assertEqual((body["user"], body["channel"], body["transport"]), ("member1", room, "websocket"))
        refused = guest.call("join", room, timeout=WAIT)
        self.assertEqual((refused["ok"], refused["code"], refused["error"], refused["backend_code"]),
                         (False, "refused", "members only", 1003))
        # Refused: not in the room, so it neither sends there nor gets what is sent there.
        self.assertEqual(guest.call("message", {"room": room, "data": "hi"}, timeout=WAIT)["ok"], False)
        # /ws and TCP ask the same hook.
        w = self.ws("?token=user-member2")
        w.recv(lambda m: m.get("type") == "welcome")
        self.assertEqual(w.request("join", room=room)["ok"], True)
        g = self.ws("?token=user-guest2")
        g.recv(lambda m: m.get("type") == "welcome")
        self.assertEqual(g.request("join", room=room)["code"], "refused")
        t = self.tcp()
        t.send("/join " + room)
        self.assertTrue(t.line(lambda l: l.startswith(("ok join", "error"))).startswith("error refused"))
        # A member's message reaches the members only.
        self.assertTrue(member.call("message", {"room": room, "data": "members"}, timeout=WAIT)["ok"])
        self.assertEqual(w.recv(lambda m: m.get("type") == "message")["data"], "members")
        # A disconnect answer disconnects.
        b = self.ws("?token=user-banned-joiner")
        b.recv(lambda m: m.get("type") == "welcome")
        b.ws.send(json.dumps({"op": "join", "room": room, "id": 1}))
        self.assertEqual(b.close_code(), 4502)

    # --- publish ---

    def test_the_publish_hook_allows_rewrites_or_refuses(self):
        room = f"mod:{uuid.uuid4().hex[:6]}"
        a, b = self.sio({"token": "user-pa"}), self.sio({"token": "user-pb"})
        for c in (a, b):
            self.assertTrue(c.call("join", room, timeout=WAIT)["ok"])
        ok = a.call("message", {"room": room, "data": {"text": "hello"}}, timeout=WAIT)
        self.assertTrue(ok["ok"])
        self.assertEqual(b.got["message"].get(timeout=WAIT)["data"], {"text": "hello"})
        a.call("message", {"room": room, "data": {"text": "shout hi"}}, timeout=WAIT)
        self.assertEqual(b.got["message"].get(timeout=WAIT)["data"], {"text": "SHOUT HI"})
        bad = a.call("message", {"room": room, "data": {"text": "a badword"}}, timeout=WAIT)
        self.assertEqual((bad["ok"], bad["code"], bad["error"]), (False, "refused", "mind your language"))
        slow = a.call("message", {"room": room, "data": {"text": "slow"}}, timeout=WAIT)
        self.assertEqual(slow["code"], "hook-unavailable")
        time.sleep(0.3)
        got = []
        while not b.got["message"].empty():
            got.append(b.got["message"].get_nowait()["data"])
        self.assertEqual(got, [], "refused and failed publications never reach the room")

    def test_a_backend_that_is_down(self):
        room = f"shop:{uuid.uuid4().hex[:6]}"
        s = self.sio({"token": "user-down"})
        s.call("join", room, timeout=WAIT)
        self.backend.stop()
        try:
            ack = s.call("order", {"room": room, "data": {"qty": 1}}, timeout=WAIT)
            self.assertEqual(ack["code"], "hook-unavailable")
            self.assertIn("unreachable", ack["error"])
            refused = self.sio({"token": "user-x"})
            self.assertFalse(refused.connected, "no backend, no admission")
            health = json.load(__import__("urllib.request").request.urlopen(f"{self.volna.http}/health", timeout=WAIT))
            self.assertGreater(health["hooks"]["failures"], 0)
        finally:
            self.backend.start()
        ack = s.call("order", {"room": room, "data": {"qty": 1}}, timeout=WAIT)
        self.assertTrue(ack["ok"], "the backend is back")


if __name__ == "__main__":
    unittest.main()
