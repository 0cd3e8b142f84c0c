"""A SOCKS5 server for the network tests (RFC 1928 CONNECT, RFC 1929 username/password), run in the
world's network namespace (stdlib only). Names are resolved from the world's zone file; outgoing
connections leave from the server's own address, so the world's HTTP log shows they came this way.
Each CONNECT is logged as a JSON line: {"user", "atyp", "host", "port", "tls"}. Prints "ready".
With --tls, the same server also listens on TLS_PORT with CERT and KEY (SOCKS5 inside TLS, E2B's
egressProxy.tls).

    python socks_server.py ADDRESS PORT ZONE_JSON LOG [USER PASSWORD] [--tls TLS_PORT CERT KEY]
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import struct
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        else:  # TLS has no half-close
            writer.close()
    except (ConnectionError, OSError):
        writer.close()


async def client(reader, writer, address, zone, log, creds):
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
                                "tls": writer.get_extra_info("sslcontext") is not None}) + "\n")
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
    serve = lambda r, w: client(r, w, address, zone, log, creds)  # noqa: E731
    servers = [await asyncio.start_server(serve, address, port)]
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tls[1], tls[2])
        servers.append(await asyncio.start_server(serve, address, int(tls[0]), ssl=ctx))
    print("ready", flush=True)
    try:  # until the test closes our stdin
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    finally:
        for server in servers:
            server.close()


if __name__ == "__main__":
    asyncio.run(main())
