"""Files the control plane reads from a sandbox for itself are the sandbox's: its root user can put
anything there (a sparse file of terabytes costs it no disk) or make its agent send anything. Such
a read is bounded by what the server needs, never by what the sandbox sends.

The agent is a stand-in on a real unix socket, speaking the wire protocol (protocol/wire.py)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from sandlot.protocol import wire
from sandlot.server import sandbox_networks
from sandlot.server.agent_client import AgentClient
from sandlot.server.sandbox_networks import SandboxNetworks

ENTRY = {"name": "x", "type": "file", "path": "/x", "size": 0, "mode": 0o644, "permissions": "-rw-r--r--",
         "owner": "root", "group": "root", "mtime": 1.0, "symlink_target": None, "metadata": {}}
OFFERED = 256 * 1024 * 1024


def test_trust_ca_reads_no_more_of_the_sandboxs_ca_file_than_its_own_certificate(tmp_path):
    """A live network update compares the CA file the sandbox holds with the server's certificate:
    a file of 256 MiB (or of 1 TiB, sparse) is not read whole into the server's memory."""
    pem = b"-----BEGIN CERTIFICATE-----\n" + b"A" * 1000 + b"\n-----END CERTIFICATE-----\n"
    sent, written = 0, {}

    async def serve(reader, writer):
        nonlocal sent
        head = await reader.readexactly(wire.HEADER_SIZE)
        request = wire.decode_json(await reader.readexactly(int.from_bytes(head[1:], "big")))
        try:
            if request["op"] == "files.read":
                writer.write(wire.encode_json({"entry": {**ENTRY, "size": OFFERED}, "length": None}))
                chunk = b"B" * wire.CHUNK
                while sent < OFFERED:
                    writer.write(wire.encode(wire.DATA, chunk))
                    await writer.drain()
                    sent += len(chunk)
                writer.write(wire.encode(wire.END, b""))
            else:  # files.write: the data, then the entry
                data = b""
                while (frame := await reader.readexactly(wire.HEADER_SIZE))[:1] == wire.DATA:
                    data += await reader.readexactly(int.from_bytes(frame[1:], "big"))
                written[request["path"]] = data
                writer.write(wire.encode_json({"entry": ENTRY}))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main():
        path = str(tmp_path / "agent.sock")
        async with await asyncio.start_unix_server(serve, path):
            networks = SandboxNetworks(None, None, None, None, None)
            networks.egress_tls = SimpleNamespace(ca=SimpleNamespace(cert_pem=pem))
            live = SimpleNamespace(agent=AgentClient(path))
            await asyncio.wait_for(networks.trust_ca(live, SimpleNamespace(rules=[object()])), 60)

    asyncio.run(main())
    assert written[sandbox_networks.CA_FILE] == pem  # it was not the server's: written anew
    assert sent < 16 * 1024 * 1024, f"the server took {sent} bytes of the sandbox's CA file"
