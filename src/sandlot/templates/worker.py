"""Build one template in a child process, reporting progress as JSON lines on stdout.

    python -m sandlot.templates.worker HOME NAME

A running server builds this way (server/builds.py) so that it can stop a build at once, whatever
step it is in: it kills the worker's process group (debootstrap, apt, pip and all) and removes the
half-built directory. Lines: `{"done": int, "total": int, "message": str}` as the build advances,
`{"error": str}` before a failing exit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .._exceptions import SandlotError
from .store import TemplateStore


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main(home: str, name: str) -> int:
    try:
        TemplateStore(Path(home)).build(name, progress=lambda done, total, message: _say(
            done=done, total=total, message=message))
    except SandlotError as e:
        _say(error=e.message)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
