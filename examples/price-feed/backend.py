#!/usr/bin/env python3
"""The price feed's backend: publishes ticks through volna's server API and answers orders.

  python3 examples/price-feed/backend.py                      # settings from volna.toml next to it
  python3 examples/price-feed/backend.py --rate 20 --duration 10 --linger 60

It does two things at once:

* publishes a random walk of prices for a few symbols: every tick is one `POST /api/publish` (with the
  `cent` client, Centrifugo's Python client) to the room `prices.<SYMBOL>` with `"event": "tick"`, so
  members receive a `tick` event; now and then a headline goes to the room `news` (event `headline`);
* serves volna's rpc hook: volna POSTs every `order` event a client sends to the room `orders`, and the
  answer (accepted with an order id, or refused with a reason) is what the client gets back.

Needs Python 3.11+ (tomllib) and `cent` (pip install cent). Stops on Ctrl-C / SIGTERM, or once
publishing is over (--duration, --count) and --linger seconds have passed.
"""

import argparse
import json
import math
import random
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

try:
    import tomllib
except ImportError:  # Python < 3.11: flags only
    tomllib = None

from cent import Client, PublishRequest
from cent.exceptions import CentError, CentUnauthorizedError

HERE = Path(__file__).resolve().parent

# Symbol -> (opening price, decimals shown).
INSTRUMENTS = {
    "BTC": (64000.0, 2),
    "ETH": (3400.0, 2),
    "SOL": (150.0, 3),
    "XAU": (2350.0, 2),
}
# How far an order's price may be from the last tick.
PRICE_BAND = 0.05
# Per-tick volatility of the random walk (log-normal steps).
VOLATILITY = 0.0015
# Largest request body the hook reads.
MAX_BODY = 64 * 1024

HEADLINES = [
    "{sym} trades at {price} as volumes pick up",
    "Analysts watch {sym} near {price}",
    "{sym} moves {pct} since the open",
    "Desk note: liquidity in {sym} is thin around {price}",
]


def log(*parts):
    print(*parts, flush=True)


class Market:
    """The random walk and the last price of every symbol, shared by the publisher and the hook."""

    def __init__(self, symbols, seed):
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.open = {s: INSTRUMENTS[s][0] for s in symbols}
        self.last = {}  # symbol -> last price published
        self.seq = 0
        self.orders = 0

    def step(self, sym):
        """The next price of `sym` (not yet published)."""
        with self.lock:
            base = self.last.get(sym, self.open[sym])
            price = base * math.exp(self.rng.gauss(0.0, VOLATILITY))
            return round(price, INSTRUMENTS[sym][1])

    def published(self, sym, price):
        with self.lock:
            self.last[sym] = price
            self.seq += 1
            return self.seq

    def last_price(self, sym):
        with self.lock:
            return self.last.get(sym)

    def next_order_id(self):
        with self.lock:
            self.orders += 1
            return f"ord-{self.orders:06d}"


class Refused(Exception):
    """An order the backend refuses: `code` and the message the client sees."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def validate_order(market, max_qty, body):
    """The answer to one rpc hook call: the client's order is `body["data"]`."""
    if body.get("event") != "order":
        raise Refused(1000, f"unknown method {body.get('event')!r}")
    order = body.get("data")
    if not isinstance(order, dict):
        raise Refused(1001, "an order is an object {symbol, side, qty, price}")
    sym = order.get("symbol")
    if not isinstance(sym, str) or sym not in market.open:
        raise Refused(1002, f"unknown symbol {sym!r}; known: {', '.join(sorted(market.open))}")
    side = order.get("side")
    if side not in ("buy", "sell"):
        raise Refused(1003, f"side must be buy or sell, not {side!r}")
    qty = number(order.get("qty"))
    if qty is None or qty <= 0:
        raise Refused(1004, "quantity must be a positive number")
    if qty > max_qty:
        raise Refused(1005, f"quantity {qty:g} is over the limit of {max_qty:g}")
    price = number(order.get("price"))
    if price is None or price <= 0:
        raise Refused(1006, "price must be a positive number")
    last = market.last_price(sym)
    if last is None:
        raise Refused(1007, f"no price for {sym} yet; try again in a moment")
    if abs(price - last) > PRICE_BAND * last:
        raise Refused(
            1008,
            f"price {price:g} is more than {PRICE_BAND:.0%} away from the last {sym} price {last:g}",
        )
    order_id = market.next_order_id()
    log(f"order {order_id}: {side} {qty:g} {sym} at {price:g} (last {last:g}) from client {body.get('client')}")
    return {
        "accepted": True,
        "order_id": order_id,
        "symbol": sym,
        "side": side,
        "qty": qty,
        "price": price,
        "last": last,
    }


def number(v):
    """`v` as a finite float, or None (booleans are not numbers here)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def hook_server(addr, market, max_qty):
    """The rpc hook: POST /rpc with volna's body, answered in Centrifugo's proxy shapes."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "price-feed-backend"

        def log_message(self, *_args):
            pass

        def answer(self, status, obj):
            raw = json.dumps(obj).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def do_POST(self):
            if self.path != "/rpc":
                return self.answer(404, {"error": {"code": 404, "message": "not found"}})
            try:
                length = int(self.headers.get("Content-Length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                return self.answer(413, {"error": {"code": 413, "message": "body too large"}})
            try:
                body = json.loads(self.rfile.read(length))
                if not isinstance(body, dict):
                    raise ValueError("not an object")
            except ValueError:
                return self.answer(400, {"error": {"code": 400, "message": "the body is not a JSON object"}})
            try:
                result = validate_order(market, max_qty, body)
            except Refused as r:
                log(f"order refused ({r.code}): {r.message}")
                return self.answer(200, {"error": {"code": r.code, "message": r.message}})
            self.answer(200, {"result": {"data": result}})

    host, port = addr.rsplit(":", 1)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    server.daemon_threads = True
    return server


def publish_loop(args, market, stop):
    """Publishes ticks at `args.rate` per second until stopped, `args.duration` or `args.count`."""
    client = Client(args.api, args.api_key, timeout=5.0)
    symbols = list(market.open)
    interval = 1.0 / args.rate
    started = time.monotonic()
    deadline = started + args.duration if args.duration > 0 else math.inf
    next_at = started
    next_headline = started + args.headline_every if args.headline_every > 0 else math.inf
    sent = failures = 0
    i = 0
    while not stop.is_set() and (args.count <= 0 or sent < args.count):
        now = time.monotonic()
        if now >= deadline:
            break
        if next_at > now:
            stop.wait(min(next_at - now, deadline - now))
            continue
        next_at += interval
        if next_at < now - 1.0:  # fell far behind (the server was slow): do not burst to catch up
            next_at = now
        sym = symbols[i % len(symbols)]
        i += 1
        price = market.step(sym)
        tick = {
            "symbol": sym,
            "price": price,
            "open": market.open[sym],
            "decimals": INSTRUMENTS[sym][1],
            "ts": int(time.time() * 1000),
        }
        try:
            client.publish(PublishRequest(channel=f"prices.{sym}", data=tick, event="tick"))
        except CentUnauthorizedError:
            log(f"volna refused the API key (401): check --api-key / api_key in {args.config}")
            stop.set()
            return 2
        except CentError as e:
            failures += 1
            if failures == 1 or failures % 50 == 0:
                log(f"publish failed ({failures} so far): {e}")
            stop.wait(min(1.0, 0.05 * failures))
            continue
        market.published(sym, price)
        sent += 1
        if sent == 1:
            log(f"publishing: first tick {sym} {price} to {args.api}/publish")
        if time.monotonic() >= next_headline:
            next_headline += args.headline_every
            headline(client, market)
    log(f"publishing done: {sent} ticks in {time.monotonic() - started:.1f} s, {failures} failed")
    return 0


def headline(client, market):
    sym = market.rng.choice(list(market.open))
    last = market.last_price(sym) or market.open[sym]
    pct = (last / market.open[sym] - 1) * 100
    text = market.rng.choice(HEADLINES).format(sym=sym, price=f"{last:,.2f}", pct=f"{pct:+.2f}%")
    try:
        client.publish(PublishRequest(channel="news", data={"text": text, "source": "backend"}, event="headline"))
    except CentError as e:
        log(f"headline failed: {e}")


def settings_file(path):
    if tomllib is None or not path.is_file():
        return {}
    with open(path, "rb") as f:
        return tomllib.load(f)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", type=Path, default=HERE / "volna.toml",
                   help="volna's settings file, read for the defaults below [%(default)s]")
    p.add_argument("--api", help="the server API's URL [http://<http_addr>/api]")
    p.add_argument("--api-key", help="the server API's key [api_key of the settings file]")
    p.add_argument("--hook-addr", help="host:port the rpc hook listens on [from rpc_hook_url]")
    p.add_argument("--symbols", default=",".join(INSTRUMENTS),
                   help="comma-separated symbols to publish [%(default)s]")
    p.add_argument("--rate", type=float, default=5.0, help="ticks per second, all symbols together [%(default)s]")
    p.add_argument("--duration", type=float, default=0.0, help="stop publishing after this many seconds (0: never)")
    p.add_argument("--count", type=int, default=0, help="stop publishing after this many ticks (0: never)")
    p.add_argument("--linger", type=float, default=0.0,
                   help="keep answering orders this many seconds after publishing stops (-1: until interrupted)")
    p.add_argument("--headline-every", type=float, default=4.0, help="seconds between headlines (0: none)")
    p.add_argument("--max-qty", type=float, default=1000.0, help="largest order quantity [%(default)s]")
    p.add_argument("--seed", type=int, default=None, help="seed of the random walk (for repeatable runs)")
    args = p.parse_args()

    conf = settings_file(args.config)
    args.api = args.api or f"http://{conf.get('http_addr', '127.0.0.1:3000')}/api"
    args.api_key = args.api_key or conf.get("api_key")
    if not args.api_key:
        p.error("no API key: pass --api-key or set api_key in the settings file")
    if not args.hook_addr:
        url = urlsplit(conf.get("rpc_hook_url", "http://127.0.0.1:8077/rpc"))
        args.hook_addr = f"{url.hostname}:{url.port or 80}"
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]
    unknown = [s for s in symbols if s not in INSTRUMENTS]
    if unknown or not symbols:
        p.error(f"unknown symbols {unknown}; known: {', '.join(INSTRUMENTS)}")
    if not 0 < args.rate <= 1000:
        p.error("--rate must be above 0 and at most 1000")

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    market = Market(symbols, args.seed)
    server = hook_server(args.hook_addr, market, args.max_qty)
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()
    host, port = server.server_address[:2]
    log(f"rpc hook listening on http://{host}:{port}/rpc")
    status = 0
    try:
        status = publish_loop(args, market, stop)
        if status == 0 and not stop.is_set() and args.linger != 0:
            log("publishing is over; still answering orders" + (
                f" for {args.linger:g} s" if args.linger > 0 else " until interrupted"))
            if args.linger > 0:
                stop.wait(args.linger)
            else:
                while not stop.wait(3600):
                    pass
    finally:
        server.shutdown()
        server.server_close()
        log("backend stopped")
    return status


if __name__ == "__main__":
    sys.exit(main())
