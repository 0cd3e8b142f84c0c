"""The `mcp-gateway` template (E2B's `default_mcp_template`): `base` plus the `mcp-gateway` command.

The gateway itself (sandlot/gateway/) is part of the in-sandbox tree every sandbox has read-only at
/opt/sandlot/sandlot (runtimes/agent_setup.py), so it always matches the server's version; this
template only adds /usr/local/bin/mcp-gateway, a launcher, where E2B's SDK finds it on PATH. The
parent's files are hard links, not copies: a template's rootfs is only ever read (an overlay's
lower layer), and builds always fill a new directory, so sharing inodes with `base` is safe, and
the build takes a second and no space.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._exceptions import TemplateError
from ..protocol import contract
from .spec import Progress, Template

LAUNCHER_PATH = "usr/local/bin/mcp-gateway"
# -S -B as the agent runs (contract.agent_command): stdlib only, from the read-only precompiled tree
LAUNCHER = f"""#!/usr/bin/python3 -SB
import sys
sys.path.insert(0, {contract.CODE_ROOT!r})
from sandlot.gateway.main import main
sys.exit(main())
"""


@dataclass(frozen=True)
class GatewayRecipe:
    parent: str = "base"

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.parent}\n{LAUNCHER}".encode()).hexdigest()[:16]

    def build(self, rootfs: Path, cache: Path, progress: Progress, parent: Path | None = None) -> dict[str, Any]:
        if parent is None:
            raise TemplateError(f"the mcp-gateway template needs its parent '{self.parent}' built first")
        progress(0, 2, f"linking {self.parent}")
        done = subprocess.run(["cp", "-a", "--link", f"{parent}/.", str(rootfs)], capture_output=True, text=True,
                              check=False)
        if done.returncode:
            raise TemplateError(f"linking {parent} failed: {done.stderr.strip()}")
        launcher = rootfs / LAUNCHER_PATH
        launcher.parent.mkdir(parents=True, exist_ok=True)
        launcher.unlink(missing_ok=True)  # a link to the parent's file would change it too
        launcher.write_text(LAUNCHER)
        launcher.chmod(0o755)
        progress(2, 2, "done")
        return {"parent": self.parent}

    def template(self, name: str, rootfs: Path) -> Template:
        return Template(name=name, rootfs=rootfs)
