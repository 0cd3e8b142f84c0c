"""Run by test_ports_tls.py in a process of its own, with the environment a user of a TLS sandlot
server sets (SSL_CERT_FILE: the CA to trust; E2B_* variables): the official e2b SDK creates a
sandbox, starts sandbox_server.py in it on port 8000 and prints what the test checks, as JSON.
A process of its own because the SDK's transport reads the trust store once per process.

    python tls_sdk_client.py SANDBOX_SERVER_PY [kill]
"""

import json
import sys

from e2b import Sandbox

sbx = Sandbox.create(timeout=120)
sbx.files.write("/tmp/sandbox_server.py", open(sys.argv[1]).read())
sbx.commands.run("python3 /tmp/sandbox_server.py 8000 0.0.0.0", background=True)
sbx.commands.run("for i in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:8000/ && exit 0; sleep 0.05; done; "
                 "exit 1")
found = {"id": sbx.sandbox_id, "host": sbx.get_host(8000), "mcp_url": sbx.get_mcp_url(),
         "echo": sbx.commands.run("echo over tls").stdout, "file": sbx.files.read("/tmp/sandbox_server.py")[:40],
         "envd_url": sbx.envd_api_url}
if sys.argv[2:] == ["kill"]:
    found["killed"] = sbx.kill()
print(json.dumps(found))
