#!/usr/bin/env python3
"""A tiny raw client for the tutorial game: Python 3, standard library only.

Usage: python3 client.py [HOST:PORT] [NAME ...]   (default 127.0.0.1:14001 Ada)

Connects to the gate, waits for its player entity (the Greeter), calls Hello(NAME) for
each name in turn and prints what the server sends, until the Guestbook has answered the
last one. The wire format is docs/PROTOCOL.md.
"""
import socket
import struct
import sys


def mp_str(s):
    """Encodes a msgpack string."""
    b = s.encode()
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    if len(b) < 256:
        return bytes([0xD9, len(b)]) + b
    return b"\xda" + struct.pack(">H", len(b)) + b


def mp_decode(b, i=0):
    """Decodes one msgpack value at b[i]; returns it and the index after it."""
    t = b[i]
    i += 1
    if t <= 0x7F or t >= 0xE0:
        return (t if t <= 0x7F else t - 0x100), i
    if 0xA0 <= t <= 0xBF or t in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        if 0xA0 <= t <= 0xBF:
            n = t & 0x1F
        else:
            size = {0xD9: 1, 0xC4: 1, 0xDA: 2, 0xC5: 2, 0xDB: 4, 0xC6: 4}[t]
            n = int.from_bytes(b[i:i + size], "big")
            i += size
        raw = b[i:i + n]
        return (raw if t in (0xC4, 0xC5, 0xC6) else raw.decode()), i + n
    if 0x90 <= t <= 0x9F or 0x80 <= t <= 0x8F or t in (0xDC, 0xDD, 0xDE, 0xDF):
        if t <= 0x9F:
            n = t & 0x0F
        else:
            size = 2 if t in (0xDC, 0xDE) else 4
            n = int.from_bytes(b[i:i + size], "big")
            i += size
        is_map = 0x80 <= t <= 0x8F or t in (0xDE, 0xDF)
        items = []
        for _ in range(n * 2 if is_map else n):
            v, i = mp_decode(b, i)
            items.append(v)
        return (dict(zip(items[::2], items[1::2])) if is_map else items), i
    fixed = {0xC0: None, 0xC2: False, 0xC3: True}
    if t in fixed:
        return fixed[t], i
    fmt = {0xCA: ">f", 0xCB: ">d", 0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
           0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q"}[t]
    return struct.unpack_from(fmt, b, i)[0], i + struct.calcsize(fmt)


def call(eid, method, *args):
    """Message 11, framed: calls `method` of entity `eid` with msgpack-encoded args."""
    m = method.encode()
    p = struct.pack("<H", 11) + eid + struct.pack("<I", len(m)) + m
    p += struct.pack("<H", len(args))
    for a in args:
        p += struct.pack("<I", len(a)) + a
    return struct.pack("<I", len(p)) + p


class Reader:
    """Reads the fields of one payload in order."""

    def __init__(self, payload):
        self.p, self.i = payload, 0

    def take(self, n):
        self.i += n
        return self.p[self.i - n:self.i]

    def u16(self):
        return struct.unpack("<H", self.take(2))[0]

    def u32(self):
        return struct.unpack("<I", self.take(4))[0]

    def varstr(self):
        return self.take(self.u32()).decode()

    def data(self):
        return mp_decode(self.take(self.u32()))[0]


def frames(sock):
    """Yields each payload the gate sends (u32 LE length, then that many bytes)."""
    buf = b""
    while True:
        while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from("<I", buf)[0]:
            n = struct.unpack_from("<I", buf)[0]
            yield buf[4:4 + n]
            buf = buf[4 + n:]
        chunk = sock.recv(65536)
        if not chunk:
            return
        buf += chunk


def main():
    addr = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:14001"
    names = sys.argv[2:] or ["Ada"]
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    player, answered = None, 0
    for payload in frames(sock):
        r = Reader(payload)
        msgtype = r.u16()
        if msgtype in (1002, 1003, 1004, 1005, 1006, 1007, 1008, 1009, 1012):
            r.take(2 + 16)  # the gate ID and client ID header
        if msgtype == 1002:  # an entity appears on the client
            is_player = r.take(1)[0] != 0
            eid = r.take(16)
            type_name = r.varstr()
            r.take(16)  # x, y, z, yaw
            attrs = r.data()
            print(f"1002 create {type_name} {eid.decode()} player={is_player} {attrs}")
            if is_player:
                player = eid
                sock.sendall(call(player, "Hello", mp_str(names[0])))
        elif msgtype == 1004:  # an attribute changed
            eid, path, key, val = r.take(16), r.data(), r.varstr(), r.data()
            print(f"1004 attr {key} = {val!r}")
        elif msgtype == 1009:  # the server calls a method of the client's entity
            eid, method = r.take(16), r.varstr()
            args = [r.data() for _ in range(r.u16())]
            print(f"1009 call {method}({', '.join(map(repr, args))})")
            if method == "OnGuestbook":
                answered += 1
                if answered == len(names):
                    break
                sock.sendall(call(player, "Hello", mp_str(names[answered])))
        else:
            print(f"{msgtype} (not used by the tutorial)")
    sock.close()


if __name__ == "__main__":
    main()
