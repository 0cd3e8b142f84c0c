"""The sandlot SDK: an async implementation, and its blocking form produced from it (see _sync.py).

    _http.py      transport to the server, and the one place errors are translated
    _config.py    which server: arguments, environment, else _embedded.py
    _sandbox.py   AsyncSandbox (control plane) and the list paginator
    _snapshots.py snapshots, fork and volumes (AsyncVolume)
    _commands.py  sandbox.commands and command handles
    _files.py     sandbox.files and watch handles
    _pty.py       sandbox.pty
    _packages.py  sandbox.packages
    _code.py      the code interpreter: sandbox.run_code() and code contexts
    _models.py    plain data shared by both forms
"""

from ._commands import AsyncCommandHandle, AsyncCommands
from ._files import AsyncFiles, AsyncWatchHandle
from ._packages import AsyncPackages
from ._pty import AsyncPty
from ._sandbox import AsyncSandbox, AsyncSandboxPaginator
from ._snapshots import AsyncVolume, SnapshotInfo, VolumeInfo
from ._sync import synchronize

Sandbox = synchronize(AsyncSandbox, "Sandbox", """An isolated Linux machine for running untrusted code.

    from sandlot import Sandbox

    with Sandbox.create() as sandbox:                  # killed when the block ends
        sandbox.files.write("hello.py", "print('hi')")
        result = sandbox.commands.run("python3 hello.py")
        print(result.stdout, result.success, result.duration)

The blocking form of `AsyncSandbox`: the same methods, without `await`. The server is `api_url` /
$SANDLOT_API_URL with `api_key` / $SANDLOT_API_KEY; with neither URL, a server embedded in this
process is started on first use.
""")
SandboxPaginator = synchronize(AsyncSandboxPaginator, "SandboxPaginator")
Commands = synchronize(AsyncCommands, "Commands")
CommandHandle = synchronize(AsyncCommandHandle, "CommandHandle", """A started command (or PTY).

    handle = sandbox.commands.run("for i in 1 2 3; do echo $i; sleep 1; done", background=True)
    for stdout, stderr, _ in handle:                   # live output
        print(stdout or stderr, end="")
    result = handle.wait()                             # CommandResult, or CommandExitError

Blocking form of `AsyncCommandHandle`.
""")
Files = synchronize(AsyncFiles, "Files")
WatchHandle = synchronize(AsyncWatchHandle, "WatchHandle")
Pty = synchronize(AsyncPty, "Pty")
Packages = synchronize(AsyncPackages, "Packages")
Volume = synchronize(AsyncVolume, "Volume")

__all__ = [
    "AsyncCommandHandle", "AsyncCommands", "AsyncFiles", "AsyncPackages", "AsyncPty", "AsyncSandbox",
    "AsyncSandboxPaginator", "AsyncWatchHandle", "CommandHandle", "Commands", "Files", "Packages", "Pty", "Sandbox",
    "SandboxPaginator", "WatchHandle",
    # snapshots and volumes (_snapshots.py)
    "AsyncVolume", "SnapshotInfo", "Volume", "VolumeInfo",
]
