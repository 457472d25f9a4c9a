"""Interop: JWT identity (docs/security.md) with tokens minted by PyJWT (an independent library) for
each key type — an HMAC secret, an RSA public key (PEM), EC P-256 and Ed25519 keys in a JWKS file
that rotates — and the stock clients of each transport: python-socketio, /ws (websocket-client), TCP.

The test starts a volna of its own that admits signed-in users only (`--anonymous false`) and checks
`aud`. It asserts who each client becomes (user, name, info, granted rooms), that expired, forged
(`alg: none`, wrong key, HS256 signed with the RSA public key, unknown `kid`) and tampered tokens are
refused with a clear reason, that a connection is closed when its token expires unless it sent a
fresh one, and that an anonymous client gets nothing but a refusal.
"""

import base64
import json
import os
import queue
import shutil
import socket
import tempfile
import time
import unittest
import urllib.request
import uuid

import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from certs import make_cert
from volnaproc import ClosingCase, Volna
from wsclient import WsClient

WAIT = 5.0
SECRET = "interop-hmac-secret-0123456789abcdef"
AUDIENCE = "volna-interop"
API_KEY = f"tokens-test-{os.getpid()}-key"


POLICIES = """
[[rooms]]
match = "vip:*"
join = "granted"

[[rooms]]
match = "staff:*"
read_history = "granted"
read_presence = "granted"
"""


def pem_public(key):
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def jwk_of(key, kid, alg, cls):
    jwk = json.loads(cls.to_jwk(key.public_key()))
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return jwk


def claims(user, **extra):
    body = {"sub": user, "aud": AUDIENCE, "exp": int(time.time()) + 300, "name": f"n-{user}"}
    body.update(extra)
    return body


class TokensTest(ClosingCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="volna-tokens-")
        cls.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        cls.ec = ec.generate_private_key(ec.SECP256R1())
        cls.ed = ed25519.Ed25519PrivateKey.generate()
        cls.rsa_pem_path = os.path.join(cls.dir, "rsa.pem")
        with open(cls.rsa_pem_path, "wb") as f:
            f.write(pem_public(cls.rsa))
        cls.jwks_path = os.path.join(cls.dir, "jwks.json")
        cls.write_jwks([jwk_of(cls.ec, "ec-1", "ES256", ECAlgorithm), jwk_of(cls.ed, "ed-1", "EdDSA", OKPAlgorithm)])
        cls.volna = Volna([
            "--jwt-secret", SECRET,
            "--jwt-public-key", cls.rsa_pem_path,
            "--jwks", cls.jwks_path,
            "--jwt-audience", AUDIENCE,
            "--anonymous", "false",
            "--api-key", API_KEY,
        ], POLICIES)

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def write_jwks(cls, keys):
        tmp = cls.jwks_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"keys": keys}, f)
        os.replace(tmp, cls.jwks_path)

    # --- clients ---

    def sio(self, token=None):
        sio = socketio.Client(reconnection=False, request_timeout=WAIT)
        sio.got = {"disconnect": queue.Queue(), "connect_error": queue.Queue()}
        sio.on("disconnect", lambda *r: sio.got["disconnect"].put(r))
        sio.on("connect_error", sio.got["connect_error"].put)
        try:
            sio.connect(self.volna.http, auth={"token": token} if token else {}, transports=["websocket"], wait_timeout=WAIT)
        except socketio.exceptions.ConnectionError:
            pass
        self.closers.append(sio.disconnect)
        return sio

    def refused(self, token):
        """The connect_error of a Socket.IO client presenting `token`."""
        s = self.sio(token)
        self.assertFalse(s.connected, "refused")
        return s.got["connect_error"].get(timeout=WAIT)

    def ws(self, query=""):
        c = WsClient(self.volna.http, query, WAIT)
        self.closers.append(c.close)
        return c

    def tcp(self):
        _, f = self.tcp_connect(self.volna.tcp, WAIT)
        self.assertTrue(f.readline().startswith("welcome "))
        return f

    def api(self, method, body):
        req = urllib.request.Request(
            f"{self.volna.http}/api/{method}", data=json.dumps(body).encode(), headers={"X-API-Key": API_KEY}
        )
        return json.load(urllib.request.urlopen(req, timeout=WAIT))["result"]

    # --- each key type ---

    def test_hs256_over_socketio_gives_user_name_and_info(self):
        user = uuid.uuid4().hex[:8]
        token = jwt.encode(claims(user, info={"team": "red"}), SECRET, algorithm="HS256")
        s = self.sio(token)
        self.assertTrue(s.connected)
        room = f"r-{user}"
        ack = s.call("join", room, timeout=WAIT)
        self.assertEqual(ack["members"], [f"n-{user}"], "the token's name")
        presence = self.api("presence", {"channel": room})["presence"]
        (info,) = presence.values()
        self.assertEqual((info["user"], info["conn_info"]), (user, {"team": "red"}))

    def test_rs256_over_ws_query(self):
        user = uuid.uuid4().hex[:8]
        token = jwt.encode(claims(user), self.rsa, algorithm="RS256")
        w = self.ws(f"?token={token}")
        self.assertEqual(w.recv(lambda m: m.get("type") == "welcome")["name"], f"n-{user}")
        self.assertEqual(w.request("join", room=f"r-{user}")["ok"], True)

    def test_es256_and_eddsa_from_jwks_over_tcp_and_ws_auth(self):
        user = uuid.uuid4().hex[:8]
        es = jwt.encode(claims(user), self.ec, algorithm="ES256", headers={"kid": "ec-1"})
        t = self.tcp()
        t.write(f"/auth {es}\n")
        t.flush()
        self.assertEqual(t.readline().strip(), f"ok auth {user} n-{user}")
        ed = jwt.encode(claims(user + "e"), self.ed, algorithm="EdDSA", headers={"kid": "ed-1"})
        w = self.ws()
        w.recv(lambda m: m.get("type") == "welcome")
        reply = w.request("auth", token=ed)
        self.assertEqual((reply["type"], reply["user"]), ("reply", user + "e"))

    def test_jwks_rotation(self):
        new = ec.generate_private_key(ec.SECP256R1())
        user = uuid.uuid4().hex[:8]
        token = jwt.encode(claims(user), new, algorithm="ES256", headers={"kid": "ec-2"})
        self.assertIn("no key", self.refused(token)["message"], "not in the JWKS yet")
        time.sleep(1.1)  # the file is read again at most once a second
        self.write_jwks([jwk_of(new, "ec-2", "ES256", ECAlgorithm), jwk_of(self.ed, "ed-1", "EdDSA", OKPAlgorithm)])
        self.assertTrue(self.sio(token).connected, "the rotated key is picked up")
        time.sleep(1.1)
        old = jwt.encode(claims(user), self.ec, algorithm="ES256", headers={"kid": "ec-1"})
        self.assertIn("no key", self.refused(old)["message"], "the retired key is gone")

    # --- refusals ---

    def test_bad_tokens_are_refused_with_a_reason(self):
        user = uuid.uuid4().hex[:8]
        expired = jwt.encode(claims(user, exp=int(time.time()) - 10), SECRET, algorithm="HS256")
        err = self.refused(expired)
        self.assertTrue(err["message"].startswith("token-expired"), err)
        self.assertEqual(err["data"]["code"], 4401)
        header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
        payload = base64.urlsafe_b64encode(json.dumps(claims(user)).encode()).rstrip(b"=").decode()
        forged = {
            "alg none": f"{header}.{payload}.",
            "another secret": jwt.encode(claims(user), "a-different-secret-0123456789", algorithm="HS256"),
            "HS256 keyed with the RSA public key": self.hs256_with_public_key(claims(user)),
            "unknown kid": jwt.encode(claims(user), self.ec, algorithm="ES256", headers={"kid": "nope"}),
            "wrong audience": jwt.encode(claims(user, aud="someone-else"), SECRET, algorithm="HS256"),
            "no sub": jwt.encode({"aud": AUDIENCE, "exp": int(time.time()) + 60}, SECRET, algorithm="HS256"),
            "garbage": "not.a.token",
        }
        good = jwt.encode(claims(user), SECRET, algorithm="HS256")
        h, p, sig = good.split(".")
        other = base64.urlsafe_b64encode(json.dumps(claims("admin")).encode()).rstrip(b"=").decode()
        forged["tampered payload"] = f"{h}.{other}.{sig}"
        for what, token in forged.items():
            err = self.refused(token)
            self.assertTrue(err["message"].startswith("invalid token"), f"{what}: {err}")
            self.assertEqual(err["data"]["code"], 4401, what)
        t = self.tcp()
        t.write(f"/auth {forged['tampered payload']}\n")
        t.flush()
        self.assertTrue(t.readline().startswith("error unauthorized invalid token"))

    def hs256_with_public_key(self, body):
        """An HS256 token whose secret is the server's RSA public key (algorithm confusion)."""
        def b64(raw):
            return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

        import hashlib
        import hmac

        signing = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(body).encode())
        sig = hmac.new(pem_public(self.rsa), signing.encode(), hashlib.sha256).digest()
        return f"{signing}.{b64(sig)}"

    def test_anonymous_clients_get_nothing_but_a_refusal(self):
        err = self.refused(None)
        self.assertTrue(err["message"].startswith("unauthorized"), err)
        self.assertEqual(err["data"]["code"], 4401)
        w = self.ws()
        w.recv(lambda m: m.get("type") == "welcome")
        w.ws.send(json.dumps({"op": "join", "room": "lobby", "id": 1}))
        error = w.recv(lambda m: m.get("type") == "error")
        self.assertIn("unauthorized", error["message"])
        self.assertEqual(w.close_code(), 4401, "and closed")
        t = self.tcp()
        t.write("/join lobby\n")
        t.flush()
        said = t.readline()
        self.assertIn("unauthorized", said)
        self.assertTrue(said.startswith(("error unauthorized", "bye disconnected")), said)
        rest = t.read()  # then closed by the server
        self.assertNotIn("ok join", rest)

    # --- expiry, refresh, rooms ---

    def test_a_connection_ends_when_its_token_expires_unless_refreshed(self):
        user = uuid.uuid4().hex[:8]
        short = jwt.encode(claims(user, exp=int(time.time()) + 2), SECRET, algorithm="HS256")
        lapsing, refreshed = self.sio(short), self.sio(short)
        self.assertTrue(lapsing.connected and refreshed.connected)
        fresh = jwt.encode(claims(user, exp=int(time.time()) + 60), SECRET, algorithm="HS256")
        ack = refreshed.call("refresh", fresh, timeout=WAIT)
        self.assertEqual((ack["ok"], ack["user"]), (True, user))
        stranger = jwt.encode(claims("someone-else"), SECRET, algorithm="HS256")
        self.assertEqual(refreshed.call("refresh", stranger, timeout=WAIT)["code"], "forbidden")
        reason = lapsing.got["disconnect"].get(timeout=6)
        if reason:
            self.assertEqual(reason[0], socketio.Client.reason.SERVER_DISCONNECT)
        time.sleep(0.5)
        self.assertTrue(refreshed.connected, "a fresh token keeps it")

    def test_the_rooms_claim_limits_joins(self):
        user = uuid.uuid4().hex[:8]
        token = jwt.encode(claims(user, rooms=["team:*"]), SECRET, algorithm="HS256")
        s = self.sio(token)
        self.assertTrue(s.call("join", "team:blue", timeout=WAIT)["ok"])
        ack = s.call("join", "elsewhere", timeout=WAIT)
        self.assertEqual((ack["ok"], ack["code"]), (False, "forbidden"))


    # --- room policies: who may join and read ---

    def test_who_may_join_and_read(self):
        user = uuid.uuid4().hex[:8]
        plain = jwt.encode(claims(user), SECRET, algorithm="HS256")
        vip = jwt.encode(claims(user + "v", rooms=["vip:*", "staff:*"]), SECRET, algorithm="HS256")
        s = self.sio(plain)
        ack = s.call("join", "vip:1", timeout=WAIT)
        self.assertEqual((ack["ok"], ack["code"]), (False, "forbidden"))
        self.assertTrue(s.call("join", "staff:1", timeout=WAIT)["ok"], "anyone may join staff rooms")
        self.assertEqual(s.call("history", "staff:1", timeout=WAIT)["code"], "forbidden")
        self.assertEqual(s.call("who", "staff:1", timeout=WAIT)["code"], "forbidden")
        w = self.ws(f"?token={plain}")
        w.recv(lambda m: m.get("type") == "welcome")
        self.assertEqual(w.request("join", room="vip:2")["code"], "forbidden")
        t = self.tcp()
        t.write(f"/auth {plain}\n/join vip:3\n")
        t.flush()
        t.readline()  # ok auth
        self.assertTrue(t.readline().startswith("error forbidden"))
        v = self.sio(vip)
        self.assertTrue(v.call("join", "vip:1", timeout=WAIT)["ok"])
        self.assertTrue(v.call("join", "staff:1", timeout=WAIT)["ok"])
        self.assertTrue(v.call("history", "staff:1", timeout=WAIT)["ok"])
        self.assertTrue(v.call("who", "staff:1", timeout=WAIT)["ok"])



class JwksServer:
    """An HTTPS server of a JWKS document that can change, counting its requests."""

    def __init__(self, folder):
        make_cert(folder, "jwks-test")
        self.ca = os.path.join(folder, "ca.pem")
        self.keys = []
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args):
                pass

            def do_GET(self):
                server.requests += 1
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class JwksUrlTest(ClosingCase):
    """A JWKS fetched over HTTPS (its certificate checked against --jwks-ca): keys picked up as they
    rotate, a spray of unknown kids costing at most one fetch per interval, keys kept when the
    server is gone."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="volna-jwks-")
        cls.jwks = JwksServer(cls.dir)
        cls.k1 = ec.generate_private_key(ec.SECP256R1())
        cls.jwks.keys = [jwk_of(cls.k1, "url-1", "ES256", ECAlgorithm)]
        cls.started = time.monotonic()
        cls.volna = Volna(["--jwks", cls.jwks.url, "--jwks-ca", cls.jwks.ca, "--jwt-audience", AUDIENCE,
                           "--anonymous", "false"])

    @classmethod
    def tearDownClass(cls):
        cls.volna.stop()
        cls.jwks.stop()
        shutil.rmtree(cls.dir, ignore_errors=True)

    def welcome(self, token):
        """The /ws client's first frame for `token`: its welcome or its error."""
        c = WsClient(self.volna.http, "?token=" + token, WAIT)
        self.closers.append(c.close)
        return c.recv(lambda m: m.get("type") in ("welcome", "error"))

    def test_keys_rotate_sprays_are_bounded_and_outages_survived(self):
        user = uuid.uuid4().hex[:8]
        t1 = jwt.encode(claims(user), self.k1, algorithm="ES256", headers={"kid": "url-1"})
        w = self.welcome(t1)
        self.assertEqual((w["type"], w.get("name")), ("welcome", f"n-{user}"), w)
        # A new key: served, and picked up when a token names it (once the refetch interval since
        # the start is over).
        k2 = ec.generate_private_key(ec.SECP256R1())
        self.jwks.keys = self.jwks.keys + [jwk_of(k2, "url-2", "ES256", ECAlgorithm)]
        time.sleep(max(0.0, self.started + 5.5 - time.monotonic()))
        t2 = jwt.encode(claims(user), k2, algorithm="ES256", headers={"kid": "url-2"})
        self.assertEqual(self.welcome(t2)["type"], "welcome", "the rotated key is fetched")
        # Unknown kids sprayed at it: refused, and at most one more fetch.
        before = self.jwks.requests
        for i in range(20):
            forged = jwt.encode(claims(user), k2, algorithm="ES256", headers={"kid": f"spray-{i}"})
            err = self.welcome(forged)
            self.assertEqual(err["type"], "error")
            self.assertIn("no key", err["message"])
        self.assertLessEqual(self.jwks.requests - before, 1, "a spray of kids must not become a spray of fetches")
        # The JWKS server goes away: the keys fetched stay.
        self.jwks.stop()
        self.assertEqual(self.welcome(t1)["type"], "welcome")

if __name__ == "__main__":
    unittest.main()
