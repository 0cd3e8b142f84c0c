"""A SOCKS5 server for the network tests (RFC 1928 CONNECT, RFC 1929 username/password), run in the
world's network namespace (stdlib only). Names are resolved from the world's zone file; outgoing
connections leave from the server's own address, so the world's HTTP log shows they came this way.
Each CONNECT is logged as a JSON line: {"user", "atyp", "host", "port", "tls"}. Prints "ready".
With --tls, the same server also listens on TLS_PORT with CERT and KEY (SOCKS5 inside TLS, E2B's
egressProxy.tls; a close_notify is a half-close).

    python socks_server.py ADDRESS PORT ZONE_JSON LOG [USER PASSWORD] [--tls TLS_PORT CERT KEY]
"""

from __future__ import annotations

import asyncio
import json
import socket
import selectors
import ssl
import struct
import sys
import threading


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


async def client(reader, writer, address, zone, log, creds, tls):
    try:
        version, n = await reader.readexactly(2)
        methods = await reader.readexactly(n)
        want = 2 if creds else 0
        if version != 5 or want not in methods:
            writer.write(b"\x05\xff")
            return
        writer.write(bytes([5, want]))
        user = None
        if creds:
            _, ulen = await reader.readexactly(2)
            user = (await reader.readexactly(ulen)).decode()
            plen = (await reader.readexactly(1))[0]
            password = (await reader.readexactly(plen)).decode()
            ok = (user, password) == creds
            writer.write(b"\x01" + (b"\x00" if ok else b"\x01"))
            if not ok:
                return
        _, cmd, _, atyp = await reader.readexactly(4)
        if atyp == 1:
            host, kind = socket.inet_ntoa(await reader.readexactly(4)), "ipv4"
        elif atyp == 3:
            host, kind = (await reader.readexactly((await reader.readexactly(1))[0])).decode(), "domain"
        else:
            return
        port = struct.unpack("!H", await reader.readexactly(2))[0]
        with open(log, "a") as f:
            f.write(json.dumps({"user": user, "atyp": kind, "host": host, "port": port,
                                "tls": tls}) + "\n")
        target = zone.get(host, [host])[0] if kind == "domain" else host
        try:
            up_r, up_w = await asyncio.open_connection(target, port, local_addr=(address, 0))
        except OSError:
            writer.write(b"\x05\x05\x00\x01" + bytes(6))  # connection refused
            return
        writer.write(b"\x05\x00\x00\x01" + socket.inet_aton(address) + struct.pack("!H", 0))
        await writer.drain()
        await asyncio.gather(pipe(reader, up_w), pipe(up_r, writer))
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main():
    args, tls = sys.argv[1:], None
    if "--tls" in args:
        at = args.index("--tls")
        args, tls = args[:at], args[at + 1:at + 4]
    address, port, zone_file, log = args[0], int(args[1]), args[2], args[3]
    creds = tuple(args[4:6]) if len(args) > 5 else None
    with open(zone_file) as f:
        zone = json.load(f)
    servers = [await asyncio.start_server(lambda r, w: client(r, w, address, zone, log, creds, False),
                                          address, port)]
    if tls:  # the TLS front relays to a plaintext listener of its own, whose CONNECTs say "tls"
        inner = await asyncio.start_server(lambda r, w: client(r, w, address, zone, log, creds, True),
                                           "127.0.0.1", 0)
        servers.append(inner)
        listener = socket.create_server((address, int(tls[0])))  # listening before "ready"
        threading.Thread(target=tls_front, args=(listener, tls[1], tls[2], inner.sockets[0].getsockname()),
                         daemon=True).start()
    print("ready", flush=True)
    try:  # until the test closes our stdin
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        for server in servers:
            server.close()


def tls_front(listener, cert, key, inner):
    """TLS on `listener`, each connection relayed to `inner` by a thread. Not asyncio's TLS: it
    takes a close_notify for a full close; here it is a half-close (TLS 1.3), passed on as a FIN,
    and the answer still goes back (what E2B's proxies are told to do)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=tls_relay, args=(ctx, conn, inner), daemon=True).start()


def tls_relay(ctx, conn, inner):
    try:
        conn.settimeout(10)
        tls = ctx.wrap_socket(conn, server_side=True)
        plain = socket.create_connection(inner)
    except (OSError, ssl.SSLError):
        conn.close()
        return
    tls.setblocking(False)
    plain.setblocking(False)
    sel = selectors.DefaultSelector()
    for sock in (tls, plain):
        sel.register(sock, selectors.EVENT_READ)
    reading = {tls, plain}
    try:
        while reading:
            ready = [k.fileobj for k, _ in sel.select(300)] + ([tls] if tls in reading and tls.pending() else [])
            if not ready:
                return
            for src in set(ready) & reading:
                dst = plain if src is tls else tls
                try:
                    data = src.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                if data:
                    dst.setblocking(True)
                    dst.sendall(data)
                    dst.setblocking(False)
                    continue
                sel.unregister(src)
                reading.discard(src)
                if dst is plain:
                    plain.shutdown(socket.SHUT_WR)
                else:
                    return  # the upstream ended: close (close_notify)
    except (OSError, ssl.SSLError):
        pass
    finally:
        sel.close()
        plain.close()
        try:
            tls.setblocking(True)
            tls.settimeout(2)
            tls.unwrap().close()
        except (OSError, ssl.SSLError, ValueError):
            tls.close()

if __name__ == "__main__":
    asyncio.run(main())
