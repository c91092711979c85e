"""A byte-exact HTTP/1.1 client for talking to the proxy port.

curl and friends normalise what they send; the host-trick and smuggling tests
need to put exact bytes on the wire and read exact answers back.
"""

import socket
import ssl
import time

MAX_HEAD = 256 * 1024
MAX_BODY = 128 * 1024 * 1024


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers      # list of (name, value), order kept
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")

    def __repr__(self):
        return "<Response %s %r %r body=%r>" % (self.status, self.reason, self.headers,
                                                self.body[:300])


class Closed(Exception):
    """The peer closed (or reset) before a complete response arrived."""


class Conn:
    """One client connection with its own read buffer."""

    def __init__(self, sock, timeout=15.0):
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(262144)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def read_until(self, marker, limit=MAX_HEAD):
        while marker not in self.buf:
            if len(self.buf) > limit:
                raise ValueError("no %r within %d bytes" % (marker, limit))
            if not self._fill():
                raise Closed("closed before %r; got %r" % (marker, self.buf[:500]))
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self._fill():
                raise Closed("closed after %d of %d bytes" % (len(self.buf), n))
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_close(self, limit=MAX_BODY):
        while self._fill():
            if len(self.buf) > limit:
                raise ValueError("body over %d bytes" % limit)
        out, self.buf = self.buf, b""
        return out

    def read_response(self, method="GET"):
        """Read one response; 1xx interim responses are skipped."""
        while True:
            head = self.read_until(b"\r\n\r\n")
            lines = head[:-4].split(b"\r\n")
            parts = lines[0].decode("latin-1").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/"):
                raise ValueError("bad status line %r" % lines[0])
            version, status = parts[0], int(parts[1])
            reason = parts[2] if len(parts) > 2 else ""
            headers = []
            for line in lines[1:]:
                k, _, v = line.decode("latin-1").partition(":")
                headers.append((k, v.strip()))
            if 100 <= status < 200 and status != 101:
                continue
            resp = Response(version, status, reason, headers, b"", head)
            resp.body = self._read_body(resp, method)
            return resp

    def _read_body(self, resp, method):
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return b""
        if method == "CONNECT" and 200 <= resp.status < 300:
            return b""
        te = resp.header("Transfer-Encoding")
        if te is not None and te.lower() == "chunked":
            body = b""
            while True:
                line = self.read_until(b"\r\n")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self.read_until(b"\r\n") != b"\r\n":
                        pass
                    return body
                body += self.read_exact(size)
                self.read_exact(2)
        cl = resp.header("Content-Length")
        if cl is not None:
            return self.read_exact(int(cl))
        return self.read_to_close()

    def closed_within(self, seconds):
        """True if the peer closes (EOF or reset) within `seconds`; bytes it
        sends meanwhile are kept in the buffer."""
        deadline = time.monotonic() + seconds
        old = self.sock.gettimeout()
        try:
            while not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.sock.settimeout(left)
                try:
                    self._fill()
                except socket.timeout:
                    return False
            return True
        finally:
            if not self.eof:
                self.sock.settimeout(old)

    def start_tls(self, server_hostname, cafile):
        """Wrap the (tunnelled) connection in TLS, verified against cafile."""
        if self.buf:
            raise ValueError("unread bytes before TLS: %r" % self.buf[:200])
        ctx = ssl.create_default_context(cafile=cafile)
        self.sock = ctx.wrap_socket(self.sock, server_hostname=server_hostname)
        return self


def request_bytes(method, target, host=None, headers=(), body=b"", version="HTTP/1.1"):
    """Build a request head (and body) with the given exact fields."""
    lines = ["%s %s %s" % (method, target, version)]
    if host is not None:
        lines.append("Host: " + host)
    for k, v in headers:
        lines.append("%s: %s" % (k, v))
    if isinstance(body, str):
        body = body.encode()
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
