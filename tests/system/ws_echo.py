"""A WebSocket echo upstream for the TLS tests, run inside the inet namespace.

wss:// on ADDR:443 (and ws:// on ADDR:80): every message, text or binary,
is sent back unchanged. Built on python3-websockets (Debian), so the
handshake the proxy relays is checked by an independent implementation.
Each accepted handshake is logged (one line: path and the Host header).
"""

import argparse
import asyncio
import ssl
import sys

import websockets

LOG_PATH = None


def log(line):
    with open(LOG_PATH, "a") as f:
        f.write(line + "\n")


async def echo(ws, path=None):
    log("%s %s" % (getattr(ws, "path", path), ws.request_headers.get("Host", "-")))
    async for msg in ws:
        await ws.send(msg)


async def serve(addr, ctx):
    async with websockets.serve(echo, addr, 443, ssl=ctx, max_size=4 * 1024 * 1024), \
            websockets.serve(echo, addr, 80, max_size=4 * 1024 * 1024):
        await asyncio.Future()


def main():
    global LOG_PATH
    ap = argparse.ArgumentParser()
    ap.add_argument("--addr", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--log", required=True)
    args = ap.parse_args()
    LOG_PATH = args.log
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    try:
        asyncio.run(serve(args.addr, ctx))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
