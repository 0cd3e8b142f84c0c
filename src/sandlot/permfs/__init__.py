"""The permission filesystem: one FUSE daemon per server that serves every sandbox's workspace
(its codebase, with the sandbox's own copy-on-write layer) under a directory of its own, and decides
every request with sandlot/permissions.py.

    daemon.py     the process: mounts, serves FUSE requests and a control socket (root only)
    fs.py         the FUSE operations: a passthrough confined below each workspace's root
    workspace.py  one sandbox's workspace in the daemon: its root, rules, uid range, denials
    reports.py    the daemon's connection to the server for denial reports (server/denials.py)
    client.py     the server's side: starts or adopts the daemon, adds, changes and removes
                  workspaces

The daemon runs as host root outside every sandbox. It opens nothing by path: each file is reached
from the workspace's root with openat2 (no symlink, magic link, mount crossing or `..` on the way),
and only a process of the sandbox's own uid range may reach that sandbox's directory.
"""
