#!/usr/bin/env python3
"""A Socket.IO client of the price feed: prints the ticks it receives, as the page shows them.

  python3 examples/price-feed/socketio_client.py                    # every symbol, for 10 s
  python3 examples/price-feed/socketio_client.py --symbols BTC --seconds 60
  python3 examples/price-feed/socketio_client.py --try-publish --order BTC:buy:0.5

It is the same feed the page gets over /ws: the backend publishes once, volna delivers to every
transport. Uses python-socketio (pip install "python-socketio[client]"). Prints one line per event:

  tick prices.BTC 64012.35 (+0.02%) offset 17
  headline news: BTC trades at 64,012.35 as volumes pick up

--try-publish shows that a client cannot publish into a price room (`publish-forbidden`); --order
sends one order (at the last price it saw) to the backend through the `orders` room and prints the
verdict.
"""

import argparse
import sys
import threading

import socketio

DEFAULT_SYMBOLS = "BTC,ETH,SOL,XAU"


def out(*parts):
    print(*parts, flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:3000", help="volna's HTTP address [%(default)s]")
    p.add_argument("--symbols", default=DEFAULT_SYMBOLS, help="comma-separated symbols [%(default)s]")
    p.add_argument("--seconds", type=float, default=10.0, help="how long to listen once joined [%(default)s]")
    p.add_argument("--max-ticks", type=int, default=0, help="stop after this many ticks (0: no limit)")
    p.add_argument("--try-publish", action="store_true", help="try to publish into prices.<first symbol>")
    p.add_argument("--order", metavar="SYM:SIDE:QTY", help="send one order at the last price seen, at the end")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the server's answers [%(default)s]")
    args = p.parse_args()
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()]

    sio = socketio.Client(reconnection=False)
    last = {}  # symbol -> last price
    count = 0
    enough = threading.Event()

    @sio.on("tick")
    def on_tick(e):
        nonlocal count
        tick = e.get("data") or {}
        sym, price = tick.get("symbol"), tick.get("price")
        if not isinstance(price, (int, float)):
            return
        last[sym] = price
        count += 1
        change = ""
        if isinstance(tick.get("open"), (int, float)) and tick["open"]:
            change = f" ({(price / tick['open'] - 1) * 100:+.2f}%)"
        out(f"tick {e.get('room')} {price}{change} offset {e.get('offset')}")
        if args.max_ticks and count >= args.max_ticks:
            enough.set()

    @sio.on("headline")
    def on_headline(*a):
        # From the API: one envelope {room, data, …}; from a Redis emitter: the emitted arguments.
        e = a[0] if a else {}
        data = e.get("data", e) if isinstance(e, dict) else e
        text = data.get("text") if isinstance(data, dict) else data
        out(f"headline {e.get('room', 'news') if isinstance(e, dict) else 'news'}: {text}")

    @sio.on("disconnect")
    def on_disconnect(*_a):
        enough.set()

    try:
        sio.connect(args.url, auth={"name": "py-ticker"}, wait_timeout=args.timeout)
    except socketio.exceptions.ConnectionError as e:
        out(f"cannot connect to {args.url}: {e}")
        return 1
    status = 0
    try:
        for room in [f"prices.{s}" for s in symbols] + ["news"]:
            ack = sio.call("join", room, timeout=args.timeout)
            if not ack.get("ok"):
                out(f"join {room} refused: {ack.get('code')}: {ack.get('error')}")
                return 1
        out(f"joined {', '.join(f'prices.{s}' for s in symbols)} and news as {sio.sid}")

        if args.try_publish:
            room = f"prices.{symbols[0]}"
            for what, ack in [
                ("message", sio.call("message", {"room": room, "data": "pump it!"}, timeout=args.timeout)),
                ("tick", sio.call("tick", {"room": room, "data": {"symbol": symbols[0], "price": 1}},
                                  timeout=args.timeout)),
            ]:
                if ack.get("ok"):
                    out(f"publish {what} into {room} was ACCEPTED (offset {ack.get('offset')})")
                    status = 1
                else:
                    out(f"publish {what} into {room} refused: {ack.get('code')}: {ack.get('error')}")

        enough.wait(args.seconds)

        if args.order:
            sym, side, qty = (args.order.split(":") + ["", "", ""])[:3]
            sym = sym.upper()
            if sym not in last:
                out(f"order: no {sym} price seen, not sent")
                status = 1
            else:
                ack = sio.call("join", "orders", timeout=args.timeout)
                order = {"symbol": sym, "side": side, "qty": float(qty or 0), "price": last[sym]}
                ack = sio.call("order", {"room": "orders", "data": order}, timeout=args.timeout)
                if ack.get("ok"):
                    d = ack.get("data") or {}
                    out(f"order accepted: {d.get('order_id')} {d.get('side')} {d.get('qty')} {d.get('symbol')} "
                        f"at {d.get('price')}")
                else:
                    out(f"order refused: {ack.get('code')}: {ack.get('error')}")
    except socketio.exceptions.TimeoutError:
        out("the server did not answer in time")
        status = 1
    finally:
        out(f"received {count} ticks")
        sio.disconnect()
    return status


if __name__ == "__main__":
    sys.exit(main())
