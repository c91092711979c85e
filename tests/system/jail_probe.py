"""One escape attempt from inside (or, as the control, outside) `sluice run`.

    python3 jail_probe.py KIND [ARG...]

prints one line: "ok [detail]" when the attempt got through, "errno NAME"
when a call failed (NAME from errno.errorcode, e.g. EAFNOSUPPORT), or
"timeout". Each kind makes one attempt; nothing is retried.

Kinds:
  raw                      socket(AF_INET, SOCK_RAW, ICMP)
  packet                   socket(AF_PACKET, SOCK_RAW)
  vsock                    socket(AF_VSOCK, SOCK_STREAM); no packet is sent
  dns SERVER NAME          one DNS query over UDP to SERVER:53; ok with the answers
  io_uring                 io_uring_setup(4, params) through syscall(2)
  i386                     getpid through the 32-bit `int 0x80` entry point
  unix PATH                connect to a path-named unix socket, read its greeting
  abstract NAME            connect to an abstract unix socket, read its greeting
"""

import ctypes
import errno
import mmap
import os
import socket
import struct
import sys

TIMEOUT = 3.0
NR_IO_URING_SETUP = 425  # x86_64 and every architecture with the unified table
IO_URING_PARAMS_SIZE = 120

libc = ctypes.CDLL(None, use_errno=True)


def new_socket(family, kind, proto=0):
    s = socket.socket(family, kind, proto)
    s.close()
    return "ok"


def dns_query(server, name):
    qid = 0x5151
    q = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    for label in name.rstrip(".").split("."):
        q += bytes([len(label)]) + label.encode()
    q += b"\0" + struct.pack("!HH", 1, 1)
    with socket.socket(socket.AF_INET6 if ":" in server else socket.AF_INET,
                       socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT)
        s.sendto(q, (server, 53))
        data = s.recv(512)
    rcode = data[3] & 0xF
    return "ok rcode=%d id=%s" % (rcode, struct.unpack("!H", data[:2])[0] == qid)


def io_uring():
    params = ctypes.create_string_buffer(IO_URING_PARAMS_SIZE)
    fd = libc.syscall(NR_IO_URING_SETUP, 4, params)
    if fd < 0:
        raise OSError(ctypes.get_errno(), "io_uring_setup")
    os.close(fd)
    return "ok"


def i386_getpid():
    # mov eax, 20 (i386 getpid); int 0x80; ret
    code = b"\xb8\x14\x00\x00\x00\xcd\x80\xc3"
    m = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    m.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    fn = ctypes.CFUNCTYPE(ctypes.c_int)(addr)
    pid = fn()
    return "ok" if pid == os.getpid() else "errno %s" % errno.errorcode.get(-pid, pid)


def unix_connect(address):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(TIMEOUT)
        s.connect(address)
        return "ok " + s.recv(64).decode("ascii", "replace").strip()


def main():
    kind, args = sys.argv[1], sys.argv[2:]
    probes = {
        "raw": lambda: new_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP),
        "packet": lambda: new_socket(socket.AF_PACKET, socket.SOCK_RAW),
        "vsock": lambda: new_socket(socket.AF_VSOCK, socket.SOCK_STREAM),
        "dns": lambda: dns_query(args[0], args[1]),
        "io_uring": io_uring,
        "i386": i386_getpid,
        "unix": lambda: unix_connect(args[0]),
        "abstract": lambda: unix_connect("\0" + args[0]),
    }
    try:
        out = probes[kind]()
    except socket.timeout:
        out = "timeout"
    except OSError as e:
        out = "errno %s" % errno.errorcode.get(e.errno, e.errno)
    print(out, flush=True)


if __name__ == "__main__":
    main()
