"""Hostile names and files inside a sandbox, through the official SDK and raw HTTP: names with CR
and LF, a FIFO planted where an upload goes, and a stream asking for keepalives every 1e-7 s."""

from __future__ import annotations

import json
import os
import time
from urllib.parse import quote

import httpx
import pytest
from e2b import InvalidArgumentException
from e2b_support import envd_headers
from support import access_token, unique

NAMES = ["a\nb.txt", "c\r\nd.txt", "e\rf.txt", 'q"uote\\back.txt']


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.mark.parametrize("name", NAMES, ids=repr)
def test_names_with_cr_lf_are_written_read_and_signed(sandbox, workdir, name):
    path = f"{workdir}/{name}"
    assert sandbox.files.write(path, b"payload").path == path
    assert sandbox.files.read(path, format="bytes") == b"payload"
    r = httpx.get(sandbox.download_url(path), timeout=30)  # a signed URL, no headers
    assert r.status_code == 200 and r.content == b"payload"
    disposition = r.headers["content-disposition"]
    assert "\r" not in disposition and "\n" not in disposition
    assert disposition.endswith("filename*=UTF-8''" + quote(name, safe=""))
    assert [e.name for e in sandbox.files.list(workdir) if e.path == path] == [name]


def test_several_files_with_cr_lf_names_in_one_upload(sandbox, workdir):
    entries = [{"path": f"{workdir}/{name}", "data": name} for name in NAMES]  # WriteEntry
    written = sandbox.files.write_files(entries)  # one multipart body, the names as filenames
    assert [w.path for w in written] == [e["path"] for e in entries]
    for name in NAMES:
        assert sandbox.files.read(f"{workdir}/{name}") == name


def test_raw_http_names_with_cr_lf(http, server, sandbox, workdir):
    token = access_token(server, sandbox.sandbox_id)
    headers = envd_headers(sandbox.sandbox_id, token)
    path = f"{workdir}/raw\r\nname"
    r = http.post("/files", params={"path": path}, content=b"raw", headers={**headers, "Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()[0]["path"] == path, r.text
    r = http.get("/files", params={"path": path}, headers=headers)
    assert r.status_code == 200 and r.content == b"raw"
    assert 'filename="raw__name"' in r.headers["content-disposition"]
    # a multipart filename is read as httpx and browsers escape it (%0D%0A); quotes pass too
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{workdir}/m%0D%0Aline%22"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\nmulti\r\n--{boundary}--\r\n").encode()
    r = http.post("/files", content=body, headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 200 and r.json()[0]["path"] == f'{workdir}/m\r\nline"', r.text
    assert sandbox.files.read(f'{workdir}/m\r\nline"') == "multi"


def test_a_fifo_at_an_upload_path_is_refused_and_the_agent_keeps_answering(sandbox, workdir):
    fifo = f"{workdir}/{unique('pipe')}"
    sandbox.commands.run(f"mkfifo -m 666 {fifo}", user="root")  # planted by root, writable by all
    for _ in range(2):
        started = time.monotonic()
        with pytest.raises(InvalidArgumentException, match="not a regular file"):
            sandbox.files.write(fifo, "data")
        assert time.monotonic() - started < 10
        assert sandbox.commands.run("echo still here", timeout=10).stdout == "still here\n"
    # with a reader holding it open the open succeeds: refused all the same, nothing written into it
    reader = sandbox.commands.run(f"timeout 20 cat {fifo} > {fifo}.out", background=True)
    try:
        time.sleep(0.3)
        with pytest.raises(InvalidArgumentException, match="not a regular file"):
            sandbox.files.write(fifo, "data")
    finally:
        reader.kill()
    assert sandbox.commands.run(f"test -p {fifo} && echo fifo").stdout == "fifo\n"
    with pytest.raises(InvalidArgumentException):  # a device is no file either
        sandbox.files.write("/dev/null", "data")


def _server_cpu_seconds(server) -> float:
    fields = open(f"/proc/{server.proc.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_a_tiny_keepalive_interval_does_not_spin_the_server(http, server, sandbox):
    token = access_token(server, sandbox.sandbox_id)
    payload = json.dumps({"process": {"cmd": "/bin/bash", "args": ["-c", "sleep 3"]}}).encode()
    cpu = _server_cpu_seconds(server)
    r = http.post("/process.Process/Start", content=b"\x00" + len(payload).to_bytes(4, "big") + payload,
                  headers={"Content-Type": "application/connect+json", "Connect-Protocol-Version": "1",
                           "Keepalive-Ping-Interval": "1e-7", **envd_headers(sandbox.sandbox_id, token)})
    used = _server_cpu_seconds(server) - cpu
    assert r.status_code == 200
    messages = []
    data = r.content
    while data:
        length = int.from_bytes(data[1:5], "big")
        messages.append(json.loads(data[5:5 + length]))
        data = data[5 + length:]
    keepalives = sum("keepalive" in m.get("event", {}) for m in messages)
    assert keepalives <= 4, keepalives  # one a second at most, for a 3 s command
    assert messages[-1] == {} and any("end" in m.get("event", {}) for m in messages)
    assert used < 1.0, f"the server used {used:.2f} s of CPU during a 3 s quiet stream"
