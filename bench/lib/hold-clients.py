#!/usr/bin/env python3
"""The slow devices of bench/firmware-server: N downloads held in flight at once.

Each device opens its own connection with the TCP settings of an ESP8266 (lwIP: MSS 1460, a
receive window of a few KB), does a full TLS 1.2 handshake with its client certificate (no
tickets, no resumption), sends ESP8266httpUpdate's HTTP/1.0 request and reads the image at
`readBytesPerSec` (a device writes flash as it downloads). Once all N responses have started
and none has ended, they are held `holdMs`, then read to the end at full speed and checked
(status, Content-Length, byte count, first byte 0xE9, x-MD5, the body's MD5 every
`md5Every`-th download).

Why Python and not the Node.js load generator: the small MSS and receive window must be set on
the socket before connect (TCP_MAXSEG, SO_RCVBUF), which Node.js cannot do. On loopback, with
its 64 KB MSS, the server's kernel would size the send buffer of every connection at ~2.6 MB
(tcp_sndbuf_expand: 2 x initial cwnd x per-MSS size) and swallow the whole 1 MB image at once:
the server would be done with the download while the device still reads it, and nothing would
be in flight in the server. With an ESP8266's MSS the send buffer stays small, as on Wi-Fi,
and the server streams the image for as long as the device reads.

Usage: python3 hold-clients.py CONFIG.json; JSON lines on stdout:
  {"type": "ready"}, {"type": "all-in-flight", "atMs": ...}, {"type": "done", "result": {...}}
"""
import asyncio
import hashlib
import json
import socket
import ssl
import sys
import time


def contexts(cfg):
    out = []
    for device in cfg["devices"]:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(cfg["cipher"])
        ctx.options |= ssl.OP_NO_TICKET
        ctx.load_verify_locations(cadata=cfg["ca"])
        ctx.load_cert_chain(device["certFile"], device["keyFile"])
        out.append(ctx)
    return out


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def run(cfg):
    ctxs = contexts(cfg)
    loop = asyncio.get_running_loop()
    count = cfg["count"]
    rate = float(cfg["readBytesPerSec"])
    size = cfg["imageSize"]
    request = cfg["request"].encode("latin-1")
    released = asyncio.Event()
    slots = asyncio.Semaphore(cfg["connectConcurrency"])
    t0 = time.monotonic()
    state = {"started": 0, "finished": 0, "inFlight": 0, "maxInFlight": 0, "allAt": None, "allUntil": None, "md5Checked": 0, "errors": 0}
    first_errors = []

    def release_later():
        def go():
            if state["allUntil"] is None:
                state["allUntil"] = time.monotonic()
            released.set()
        loop.call_later(cfg["holdMs"] / 1000.0, go)

    async def one(i):
        slot = True
        counted = False
        writer = None
        await slots.acquire()
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, cfg["mss"])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, cfg["rcvbuf"])
            sock.setblocking(False)
            await loop.sock_connect(sock, ("127.0.0.1", cfg["port"]))
            reader, writer = await asyncio.open_connection(sock=sock, ssl=ctxs[i % len(ctxs)], server_hostname="localhost", limit=16384)
            # asyncio's TLS transport buffers up to 256 KB before it stops reading the socket (3.11+):
            # a device has no such buffer, so keep it small and let the TCP window close instead.
            if hasattr(writer.transport, "set_read_buffer_limits"):
                writer.transport.set_read_buffer_limits(high=16384)
            obj = writer.get_extra_info("ssl_object")
            if obj.version() != "TLSv1.2" or obj.session_reused:
                raise RuntimeError("negotiated %s%s" % (obj.version(), " (resumed)" if obj.session_reused else ""))
            writer.write(request)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split(" ")[1])
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            if status != 200:
                raise RuntimeError("status %d, expected 200" % status)
            if headers.get("content-length") != str(size):
                raise RuntimeError("Content-Length %s, expected %d" % (headers.get("content-length"), size))
            state["started"] += 1
            state["inFlight"] += 1
            counted = True
            state["maxInFlight"] = max(state["maxInFlight"], state["inFlight"])
            slots.release()
            slot = False
            if state["started"] == count and state["allAt"] is None:
                if state["finished"] > 0:
                    released.set()
                else:
                    state["allAt"] = time.monotonic()
                    emit({"type": "all-in-flight", "atMs": (state["allAt"] - t0) * 1000})
                    release_later()
            h = hashlib.md5() if cfg["md5Every"] > 0 and i % cfg["md5Every"] == 0 else None
            n = 0
            first = None
            began = time.monotonic()
            while True:
                chunk = await reader.read(65536 if released.is_set() else 4096)
                if not chunk:
                    break
                if first is None:
                    first = chunk[0]
                n += len(chunk)
                if h is not None:
                    h.update(chunk)
                if not released.is_set():
                    ahead = n / rate - (time.monotonic() - began)
                    if ahead > 0:
                        try:
                            await asyncio.wait_for(released.wait(), timeout=ahead)
                        except asyncio.TimeoutError:
                            pass
            if n != size:
                raise RuntimeError("%d body bytes, expected %d" % (n, size))
            if first != 0xE9:
                raise RuntimeError("first byte 0x%02x, expected 0xe9" % (first or 0))
            if "x-md5" in headers and headers["x-md5"] != cfg["md5"]:
                raise RuntimeError("x-MD5 %s, expected %s" % (headers["x-md5"], cfg["md5"]))
            if h is not None:
                if h.hexdigest() != cfg["md5"]:
                    raise RuntimeError("body MD5 %s, expected %s" % (h.hexdigest(), cfg["md5"]))
                state["md5Checked"] += 1
        except Exception as err:  # noqa: BLE001 - every failure is counted and reported
            state["errors"] += 1
            if len(first_errors) < 5:
                first_errors.append("%s: %s" % (type(err).__name__, err))
            # They can never all be in flight now: no point holding the others.
            released.set()
        finally:
            if slot:
                slots.release()
            if counted:
                state["inFlight"] -= 1
            state["finished"] += 1
            if state["allAt"] is not None and state["allUntil"] is None:
                state["allUntil"] = time.monotonic()
            if writer is not None:
                writer.close()

    emit({"type": "ready"})
    await asyncio.gather(*(one(i) for i in range(count)))
    end = time.monotonic()
    emit({
        "type": "done",
        "result": {
            "maxInFlight": state["maxInFlight"],
            "allInFlightAtMs": None if state["allAt"] is None else (state["allAt"] - t0) * 1000,
            "allInFlightForMs": 0 if state["allAt"] is None else ((state["allUntil"] or end) - state["allAt"]) * 1000,
            "completed": state["finished"] - state["errors"],
            "md5Checked": state["md5Checked"],
            "ms": (end - t0) * 1000,
            "errors": state["errors"],
            "firstErrors": first_errors,
        },
    })


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        cfg = json.load(f)
    asyncio.run(run(cfg))


if __name__ == "__main__":
    main()
