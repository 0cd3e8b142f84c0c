"""A sandbox's workspace on the host (root runtime): a copy-on-write overlay of its codebase, served
to it through the permission filesystem (permfs/), which bwrap binds at the workspace's path.

    <home>/sandboxes/<id>/workspace.json      its path, codebase tree, rules, policy, layer number
    <home>/sandboxes/<id>/disk/ws-upper.N, ws-work.N   the sandbox's changes (overlay upper and work),
                                              on its own disk (disk.py): they count toward its disk_mb
    <home>/sandboxes/<id>/ws.N                the overlay: codebase below, changes above
    <run>/.permfs/<id>                        the same, as the permission filesystem serves it

The codebase itself is never written: many sandboxes share it, each with its own layer, which is
committed back (server/codebase_store.py) or dropped explicitly. Dropping mounts a fresh layer N+1
and points the permission filesystem at it, so the sandbox's mount of its workspace never changes.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ..hostfs import mounted_under, remove_tree
from ..permfs.client import PermFS
from .. import syscalls
from ..permissions import Rule
from .policy import SandboxSpec, SecurityPolicy, Workspace, workspace_rules
from .uids import UID_RANGE

log = logging.getLogger("sandlot.runtime")

DEFAULT_USER = "user"


def user_ids(template, name: str = DEFAULT_USER) -> tuple[int, int]:
    """The uid and gid of the template's default user (as inside the sandbox)."""
    try:
        for line in (template.rootfs / "etc" / "passwd").read_text().splitlines():
            fields = line.split(":")
            if len(fields) > 3 and fields[0] == name:
                return int(fields[2]), int(fields[3])
    except (OSError, ValueError):
        pass
    return 1000, 1000


def _changes(d: Path, state: dict) -> Path:
    """Where a sandbox's workspace layers are: on its disk (beside it for one made before that)."""
    return d / "disk" if state.get("on_disk") else d


class Workspaces:
    """The workspaces of one server's sandboxes (under ``sandboxes``), and its permission
    filesystem daemon, started when the first workspace needs it."""

    def __init__(self, home: Path, sandboxes: Path, run_dir: Path):
        self.sandboxes = sandboxes
        self.permfs = PermFS(run_dir, home / "permfs.log")
        self.permfs.clear_dead()  # a daemon that died (its sandboxes are not adopted) left its mount

    @property
    def denials(self) -> Path:
        """Where the daemon reports denied operations: a unix stream socket the server binds
        (server/denials.py)."""
        return self.permfs.denials

    # ---- what a sandbox's workspace is -------------------------------------------------------

    def _file(self, sandbox_id: str) -> Path:
        return self.sandboxes / sandbox_id / "workspace.json"

    def state(self, sandbox_id: str) -> dict | None:
        """{"path", "source", "codebase", "rules", "security", "owner", "layer"} of the sandbox's
        workspace, or None."""
        try:
            return json.loads(self._file(sandbox_id).read_text())
        except (OSError, ValueError):
            return None

    def _save(self, sandbox_id: str, state: dict) -> None:
        path = self._file(sandbox_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        tmp.replace(path)

    @staticmethod
    def _effective(state: dict) -> list[dict]:
        ws = Workspace(None, state["path"], tuple(Rule.from_json(r) for r in state["rules"]))
        return [r.to_json() for r in workspace_rules(ws, SecurityPolicy(**state["security"]))]

    def layer(self, sandbox_id: str) -> Path:
        """The directory holding the sandbox's changes (an overlay upper layer)."""
        state = self.state(sandbox_id)
        return _changes(self.sandboxes / sandbox_id, state) / f"ws-upper.{state['layer']}"

    # ---- lifecycle ---------------------------------------------------------------------------

    def prepare(self, spec: SandboxSpec, template, d: Path, uid_base: int) -> Path:
        """Mount the sandbox's overlay and add it to the permission filesystem; returns the host
        path bwrap binds at the workspace's path."""
        ws = spec.workspace
        uid, gid = user_ids(template)
        state = {"path": ws.mount_path, "source": str(ws.source) if ws.source else None, "codebase": ws.codebase,
                 "rules": [r.to_json() for r in ws.rules],
                 "security": {"blocked_paths": list(spec.security.blocked_paths),
                              "allow_file_write": spec.security.allow_file_write},
                 "owner": [uid_base + uid, uid_base + gid], "layer": 1, "on_disk": True}
        self._save(spec.sandbox_id, state)
        merged = self._mount(d, state, 1)
        self.permfs.add(spec.sandbox_id, merged, uid_base, UID_RANGE, tuple(state["owner"]), self._effective(state),
                        spec.security.audit_enabled)
        return self.permfs.path(spec.sandbox_id)

    @staticmethod
    def _mount(d: Path, state: dict, n: int) -> Path:
        changes = _changes(d, state)
        upper, work, merged = changes / f"ws-upper.{n}", changes / f"ws-work.{n}", d / f"ws.{n}"
        for path in (upper, work, merged):
            path.mkdir(mode=0o700)
        lower = state["source"]
        if lower is None:
            (d / "ws-empty").mkdir(mode=0o755, exist_ok=True)
            lower = str(d / "ws-empty")
        syscalls.mount("overlay", str(merged), "overlay", syscalls.MS_NODEV | syscalls.MS_NOSUID,
                       f"lowerdir={lower},upperdir={upper},workdir={work}")
        return merged

    def set_rules(self, sandbox_id: str, rules: tuple[Rule, ...]) -> dict:
        """Replace the workspace's rules: they decide every new open from now on."""
        state = self.state(sandbox_id)
        state["rules"] = [r.to_json() for r in rules]
        self._save(sandbox_id, state)
        self.permfs.set_rules(sandbox_id, self._effective(state))
        return state

    def reset(self, sandbox_id: str, source: Path | None = None) -> dict:
        """Start a fresh, empty layer (over ``source`` if given, a newer version of the codebase):
        the sandbox's changes so far are dropped. Its processes keep the files they have open."""
        d = self.sandboxes / sandbox_id
        state = self.state(sandbox_id)
        old = state["layer"]
        if source is not None:
            state["source"] = str(source)
        state["layer"] = old + 1
        merged = self._mount(d, state, old + 1)
        self.permfs.reroot(sandbox_id, merged)
        self._save(sandbox_id, state)
        self._unmount(d, old, state)
        return state

    def known(self, sandbox_id: str) -> bool:
        return sandbox_id in self.permfs.sandboxes()

    def release(self, sandbox_id: str, d: Path) -> None:
        """Take the workspace out of the permission filesystem and unmount its overlays. Idempotent."""
        state = self.state(sandbox_id)
        if state is None:
            return
        try:
            self.permfs.remove(sandbox_id)
        except Exception as e:  # the mounts must still go
            log.error("sandbox %s: the permission filesystem did not drop its workspace: %s", sandbox_id, e)
        for n in range(1, state["layer"] + 1):
            self._unmount(d, n, state)

    @staticmethod
    def _unmount(d: Path, n: int, state: dict) -> None:
        merged = d / f"ws.{n}"
        for _ in range(3):
            if not syscalls.is_mount_root(str(merged)):
                break
            try:
                syscalls.umount(str(merged))
            except OSError:
                break
        changes = _changes(d, state)
        for path in (d / f"ws.{n}", changes / f"ws-upper.{n}", changes / f"ws-work.{n}"):
            if path.exists() and not mounted_under(path):
                remove_tree(path)

    def close(self, sandboxes_left: bool) -> None:
        """At server stop: the daemon goes with the last sandbox (a kept one still needs it); a
        dead daemon's mount goes in any case."""
        if not sandboxes_left:
            self.permfs.stop()
        else:
            self.permfs.clear_dead()
