"""A small upstream for the test world, run inside the inet namespace.

HTTP on :80 and HTTPS on :443 (any method):
  /echo        JSON: method, path, version, headers, body_len, body_sha256
  /sha256      the sha256 (hex) of the request body (Content-Length or chunked)
  /chunked?n=N a chunked response: lines "chunk I" for I in 0..N-1
  /close?n=N   a close-delimited response (no Content-Length): N lines "line I"
  /slow?s=S    100 lines trickled over about S seconds (Content-Length framed)
  /broken/*    malformed responses (see BROKEN)
TCP :7, the half-close service: reads until EOF, answers the sha256 of what it
read, then closes. Every request or connection is logged (one line) to --log.
"""

import argparse
import hashlib
import http.server
import json
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse

LOG_LOCK = threading.Lock()
LOG_PATH = None
MAX_BODY = 256 * 1024 * 1024


def log(line):
    with LOG_LOCK, open(LOG_PATH, "a") as f:
        f.write(line + "\n")


# Responses a strict proxy must not pass on as they are.
BROKEN = {
    "/broken/truncated": b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly ten b",
    "/broken/two-cl": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"
                      b"hello!!",
    "/broken/cl-te": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
                     b"\r\n5\r\nhello\r\n0\r\n\r\n",
    "/broken/bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"zz\r\nhello\r\n0\r\n\r\n",
    "/broken/garbage": b"this is not HTTP at all\r\n\r\n",
}


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sluice-test-upstream"
    timeout = 60

    def log_message(self, fmt, *args):
        pass

    def _read_body(self):
        h = hashlib.sha256()
        n = 0
        te = self.headers.get("Transfer-Encoding")
        if te is not None:
            if te.strip().lower() != "chunked":
                raise ValueError("unsupported transfer-encoding %r" % te)
            while True:
                line = self.rfile.readline(1024)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                left = size
                while left:
                    chunk = self.rfile.read(min(left, 65536))
                    if not chunk:
                        raise ValueError("short chunk")
                    h.update(chunk)
                    left -= len(chunk)
                n += size
                if n > MAX_BODY:
                    raise ValueError("body too large")
                self.rfile.readline(16)
        elif self.headers.get("Content-Length") is not None:
            left = int(self.headers["Content-Length"])
            if left > MAX_BODY:
                raise ValueError("body too large")
            while left:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    raise ValueError("short body")
                h.update(chunk)
                n += len(chunk)
                left -= len(chunk)
        return n, h.hexdigest()

    def _send(self, status, body, ctype="text/plain"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        log("%s %s %s %s" % (self.client_address[0], self.command, self.path,
                             self.headers.get("Host", "-")))
        try:
            body_len, body_sha = self._read_body()
        except (ValueError, OSError) as e:
            self.close_connection = True
            self._send(400, ("bad body: %s\n" % e).encode())
            return
        if url.path == "/echo":
            doc = {"method": self.command, "path": self.path, "version": self.request_version,
                   "headers": [[k, v] for k, v in self.headers.items()],
                   "body_len": body_len, "body_sha256": body_sha}
            self._send(200, json.dumps(doc).encode() + b"\n", "application/json")
        elif url.path == "/sha256":
            self._send(200, (body_sha + "\n").encode())
        elif url.path == "/chunked":
            n = int(q.get("n", ["10"])[0])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if self.command != "HEAD":
                for i in range(n):
                    piece = ("chunk %d\n" % i).encode()
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
        elif url.path == "/close":
            n = int(q.get("n", ["10"])[0])
            self.close_connection = True
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                for i in range(n):
                    self.wfile.write(("line %d\n" % i).encode())
        elif url.path == "/slow":
            seconds = float(q.get("s", ["2"])[0])
            lines = [("slow %02d\n" % i).encode() for i in range(100)]
            self.send_response(200)
            self.send_header("Content-Length", str(sum(len(x) for x in lines)))
            self.end_headers()
            if self.command != "HEAD":
                for x in lines:
                    self.wfile.write(x)
                    self.wfile.flush()
                    time.sleep(seconds / 100)
        elif url.path in BROKEN:
            # Malformed answers, written raw; the connection ends after them.
            self.close_connection = True
            self.wfile.write(BROKEN[url.path])
            self.wfile.flush()
        else:
            self._send(404, b"not here\n")

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


class TLSServer(Server):
    def __init__(self, addr, handler, ctx):
        self.ctx = ctx
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # The handshake runs on the connection's own thread, never in accept.
        request.settimeout(30)
        try:
            tls = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(tls, client_address)


class HalfCloseHandler(socketserver.BaseRequestHandler):
    """Reads until the client's FIN, then answers: proves half-close works."""

    def handle(self):
        log("%s HALFCLOSE" % self.client_address[0])
        self.request.settimeout(30)
        h = hashlib.sha256()
        while True:
            data = self.request.recv(65536)
            if not data:
                break
            h.update(data)
        self.request.sendall((h.hexdigest() + "\n").encode())


class HalfCloseServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


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
    servers = [Server((args.addr, 80), Handler), TLSServer((args.addr, 443), Handler, ctx),
               HalfCloseServer((args.addr, 7), HalfCloseHandler)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for t in threads:
        t.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
