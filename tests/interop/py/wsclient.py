"""A client of volna's /ws JSON protocol (docs/websocket-protocol.md) on websocket-client, shared by
the interop tests: requests with ids, bounded waits for the frames a test wants, the close code."""

import json
import time

import websocket


class WsClient:
    def __init__(self, http, query="", wait=5.0, sslopt=None):
        self.wait = wait
        self.ws = websocket.create_connection(http.replace("http", "ws", 1) + "/ws" + query, timeout=wait,
                                              sslopt=sslopt)
        self.pending = []
        self.next_id = 0

    def recv(self, pred, timeout=None):
        """The first JSON frame (not yet taken) for which pred holds, consumed."""
        deadline = time.monotonic() + (timeout or self.wait)
        while True:
            for i, m in enumerate(self.pending):
                if pred(m):
                    return self.pending.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"/ws: timed out; have {self.pending[-5:]}")
            self.ws.settimeout(left)
            try:
                frame = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            except websocket.WebSocketConnectionClosedException:
                raise AssertionError(f"/ws: closed; have {self.pending[-5:]}") from None
            if not frame:
                raise AssertionError(f"/ws: closed; have {self.pending[-5:]}")
            if isinstance(frame, str):
                self.pending.append(json.loads(frame))

    def request(self, op, **fields):
        """Sends a request and returns its reply or error."""
        self.next_id += 1
        rid = self.next_id
        self.ws.send(json.dumps({"op": op, "id": rid, **fields}))
        return self.recv(lambda m: m.get("type") in ("reply", "error") and m.get("id") == rid)

    def close_code(self):
        """Reads up to the server's close frame and returns its code."""
        self.ws.settimeout(self.wait)
        while True:
            opcode, frame = self.ws.recv_data_frame(True)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                return int.from_bytes(frame.data[:2], "big")

    def close(self):
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001 - teardown
            pass
