"""Templates built from recipes (E2B's Template builder, Dockerfiles): their names, builds, tags,
the step cache and the uploaded build files, per team (docs/templates.md).

    custom_templates   id, team, name (unique within the team)
    template_builds    one per build request: status waiting|building|ready|error, its spec, its
                       result stack {"template", "layers", "envs"} plus start/ready command,
                       user and workdir; its logs once finished
    template_tags      (template, tag) -> build: "default" is the last ready build
    template_steps     step cache key -> the stack after that step (build_cache.py)
    template_uploads   (build, team, files hash): the uploads a started build names (template_files.py
                       keeps them while one does)

Layers: a ready build's stack is held by `tplbuild:<build id>`; the layers a failed build made by
`tplfailed:<template id>` (its successful steps are cache hits for the next attempt). Deleting a
template releases both; a cache entry whose layers are gone is a miss.

Uploaded files (`/templates/{id}/files/{hash}`) live in <home>/template-files/<team digest>/<hash>:
a team never sees whether another team uploaded the same files. How many and how long: template_files.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import string
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .. import _exceptions as E
from ..shared_db import SharedDb
from ..layers import LayerStore

SCHEMA = """
CREATE TABLE IF NOT EXISTS custom_templates (
    id TEXT PRIMARY KEY,
    team TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (team, name)
);
CREATE TABLE IF NOT EXISTS template_builds (
    id TEXT PRIMARY KEY,
    template_id TEXT NOT NULL,
    status TEXT NOT NULL,
    tags TEXT NOT NULL,
    spec TEXT,
    result TEXT,
    reason TEXT,
    logs TEXT,
    limits TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS template_tags (
    template_id TEXT NOT NULL,
    tag TEXT NOT NULL,
    build_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (template_id, tag)
);
CREATE TABLE IF NOT EXISTS template_steps (
    key TEXT PRIMARY KEY,
    stack TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""
UPLOADS_SCHEMA = """
CREATE TABLE template_uploads (
    build_id TEXT NOT NULL,
    team TEXT NOT NULL,
    files_hash TEXT NOT NULL,
    PRIMARY KEY (build_id, files_hash)
);
CREATE INDEX template_uploads_team ON template_uploads (team, files_hash);
"""
# the builds of a database from before template_uploads: what their recipes name (COPY steps'
# filesHash, an `upload:<hash>` image)
UPLOADS_OF_OLD_BUILDS = """
INSERT OR IGNORE INTO template_uploads
SELECT b.id, t.team, json_extract(s.value, '$.filesHash')
  FROM template_builds b JOIN custom_templates t ON t.id = b.template_id, json_each(b.spec, '$.steps') s
  WHERE b.spec IS NOT NULL AND json_type(s.value, '$.filesHash') = 'text'
UNION
SELECT b.id, t.team, substr(json_extract(b.spec, '$.fromImage'), 8)
  FROM template_builds b JOIN custom_templates t ON t.id = b.template_id
  WHERE b.spec IS NOT NULL AND json_extract(b.spec, '$.fromImage') LIKE 'upload:%'
"""
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,127}$")
TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_TAG = "default"
_ALPHABET = string.ascii_lowercase + string.digits


@dataclass
class CustomTemplate:
    id: str
    team: str
    name: str
    created_at: float

    @property
    def failed_holder(self) -> str:
        return f"tplfailed:{self.id}"


@dataclass
class Build:
    id: str
    template_id: str
    status: str
    tags: list[str]
    spec: dict | None
    result: dict | None
    reason: dict | None
    logs: list[dict]
    limits: dict
    created_at: float
    finished_at: float | None

    @property
    def holder(self) -> str:
        return f"tplbuild:{self.id}"


def check_name(name: str, tags: list[str] = ()) -> None:
    """InvalidArgument unless the name and the tags are well formed (before either is looked up)."""
    if not NAME.match(name):
        raise E.InvalidArgument("a template name is 1-128 lower-case letters, digits, '_', '.' or '-', "
                                "starting with a letter or digit")
    for tag in tags:
        if not TAG.match(tag):
            raise E.InvalidArgument(f"invalid tag {tag!r}")


def split_ref(ref: str) -> tuple[str, str]:
    """"name", "name:tag" or "team/name:tag" -> (name, tag)."""
    ref = ref.rsplit("/", 1)[-1]
    name, _, tag = ref.partition(":")
    return name, tag or DEFAULT_TAG


class CustomTemplates:
    def __init__(self, db_path: Path, home: Path, layers: LayerStore):
        self.layers = layers
        self.files_root = Path(home) / "template-files"
        self._db = SharedDb(db_path, SCHEMA)
        self._sql = self._db.sql
        self._add_uploads()

    def _add_uploads(self) -> None:
        """template_uploads, made and filled once on a database from before it."""
        with self._db.locked() as db:
            db.execute("BEGIN IMMEDIATE")  # the CLI may open the database at once
            try:
                if not db.execute("SELECT 1 FROM sqlite_master WHERE name='template_uploads'").fetchall():
                    for statement in filter(str.strip, UPLOADS_SCHEMA.split(";")):  # executescript() would commit
                        db.execute(statement)
                    db.execute(UPLOADS_OF_OLD_BUILDS)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        self._db.close()

    # ---- templates ---------------------------------------------------------------------------

    def _templates(self, where: str, args: tuple) -> list[CustomTemplate]:
        return [CustomTemplate(*r) for r in self._sql(f"SELECT id, team, name, created_at FROM custom_templates {where}",
                                                      args)]

    def find(self, ref: str, team: str) -> CustomTemplate | None:
        """The team's template named or identified by `ref` (a tag, if any, is ignored here)."""
        name, _ = split_ref(ref)
        if not NAME.match(name):  # (ids match it too) names nothing, nor can be looked up ("\udc80")
            return None
        found = self._templates("WHERE team=? AND (id=? OR name=?)", (team, name, name))
        return found[0] if found else None

    def by_id(self, template_id: str) -> CustomTemplate | None:
        found = self._templates("WHERE id=?", (template_id,))
        return found[0] if found else None

    def team_of(self, ref: str) -> str | None:
        """The team of the template whose id `ref` is (auth.py's path check); None otherwise."""
        tpl = self.by_id(split_ref(ref)[0])
        return tpl.team if tpl else None

    def team_of_build(self, build_id: str) -> str | None:
        """The team whose template a build is of (a layer holder's, transfer.py); None if unknown."""
        rows = self._sql("SELECT t.team FROM template_builds b JOIN custom_templates t ON t.id = b.template_id "
                         "WHERE b.id=?", (build_id,))
        return rows[0][0] if rows else None

    def list(self, team: str) -> list[CustomTemplate]:
        return self._templates("WHERE team=? ORDER BY name", (team,))

    def ensure(self, name: str, team: str) -> CustomTemplate:
        """The team's template of that name, made if new."""
        check_name(name)
        self._sql("INSERT OR IGNORE INTO custom_templates VALUES (?,?,?,?)",
                  ("tpl" + "".join(secrets.choice(_ALPHABET) for _ in range(16)), team, name, time.time()))
        found = self.find(name, team)
        assert found is not None
        return found

    def delete(self, tpl: CustomTemplate) -> list[str]:
        """Forget the template and release its layers; the ids of its builds (for their pools)."""
        builds = [r[0] for r in self._sql("SELECT id FROM template_builds WHERE template_id=?", (tpl.id,))]
        with self._db.locked() as db:
            db.execute("DELETE FROM template_uploads WHERE build_id IN (SELECT id FROM template_builds WHERE "
                       "template_id=?)", (tpl.id,))
            db.execute("DELETE FROM template_tags WHERE template_id=?", (tpl.id,))
            db.execute("DELETE FROM template_builds WHERE template_id=?", (tpl.id,))
            db.execute("DELETE FROM custom_templates WHERE id=?", (tpl.id,))
        for build_id in builds:
            self.layers.release(f"tplbuild:{build_id}")
        self.layers.release(tpl.failed_holder)
        self.layers.gc()
        self.prune_cache()
        return builds

    def prune_cache(self) -> None:
        """Forget cache entries whose layers are gone (their templates were deleted)."""
        for key, stack in self._sql("SELECT key, stack FROM template_steps"):
            if not all(self.layers.exists(d) for d in json.loads(stack)["layers"]):
                self._sql("DELETE FROM template_steps WHERE key=?", (key,))

    # ---- builds ------------------------------------------------------------------------------

    def new_build(self, tpl: CustomTemplate, tags: list[str], limits: dict) -> Build:
        for tag in tags:
            if not TAG.match(tag):
                raise E.InvalidArgument(f"invalid tag {tag!r}")
        build = Build(str(uuid.uuid4()), tpl.id, "waiting", tags or [DEFAULT_TAG], None, None, None, [], limits,
                      time.time(), None)
        self._sql("INSERT INTO template_builds VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                  (build.id, tpl.id, build.status, json.dumps(build.tags), None, None, None, "[]",
                   json.dumps(limits), build.created_at, None))
        return build

    def build(self, build_id: str) -> Build | None:
        rows = self._sql("SELECT id, template_id, status, tags, spec, result, reason, logs, limits, created_at, "
                         "finished_at FROM template_builds WHERE id=?", (build_id,))
        if not rows:
            return None
        r = rows[0]
        return Build(r[0], r[1], r[2], json.loads(r[3]), json.loads(r[4]) if r[4] else None,
                     json.loads(r[5]) if r[5] else None, json.loads(r[6]) if r[6] else None, json.loads(r[7] or "[]"),
                     json.loads(r[8]), r[9], r[10])

    def save_build(self, b: Build) -> None:
        self._sql("UPDATE template_builds SET status=?, spec=?, result=?, reason=?, logs=?, finished_at=? WHERE id=?",
                  (b.status, json.dumps(b.spec) if b.spec is not None else None,
                   json.dumps(b.result) if b.result is not None else None,
                   json.dumps(b.reason) if b.reason is not None else None, json.dumps(b.logs), b.finished_at, b.id))

    def interrupted(self) -> list[str]:
        """At start: builds a stopped server left unfinished are errors now (their sandboxes are gone)."""
        rows = self._sql("SELECT id FROM template_builds WHERE status IN ('waiting', 'building')")
        for (build_id,) in rows:
            b = self.build(build_id)
            if b is not None:
                b.status, b.finished_at = "error", time.time()
                b.reason = {"message": "the build was interrupted by a server restart", "step": "base"}
                self.save_build(b)
                self.layers.release(f"tplstep:{build_id}")
        return [r[0] for r in rows]

    # ---- tags --------------------------------------------------------------------------------

    def tag(self, template_id: str, tags: list[str], build_id: str) -> None:
        now = time.time()
        for tag in tags:
            if not TAG.match(tag):
                raise E.InvalidArgument(f"invalid tag {tag!r}")
            self._sql("INSERT OR REPLACE INTO template_tags VALUES (?,?,?,?)", (template_id, tag, build_id, now))

    def untag(self, template_id: str, tags: list[str]) -> None:
        for tag in tags:
            self._sql("DELETE FROM template_tags WHERE template_id=? AND tag=?", (template_id, tag))

    def tags(self, template_id: str) -> list[tuple[str, str, float]]:
        return [tuple(r) for r in self._sql("SELECT tag, build_id, created_at FROM template_tags WHERE template_id=? "
                                            "ORDER BY created_at, tag", (template_id,))]

    def tagged(self, template_id: str, tag: str) -> Build | None:
        rows = self._sql("SELECT build_id FROM template_tags WHERE template_id=? AND tag=?", (template_id, tag))
        return self.build(rows[0][0]) if rows else None

    def unused_builds(self, template_id: str) -> list[str]:
        """Ready builds of the template no tag names any more (their layers can go)."""
        rows = self._sql("SELECT id FROM template_builds WHERE template_id=? AND status='ready' AND id NOT IN "
                         "(SELECT build_id FROM template_tags WHERE template_id=?)", (template_id, template_id))
        return [r[0] for r in rows]

    def resolve(self, ref: str, team: str) -> tuple[CustomTemplate, Build] | None:
        """The ready build a create's templateID names (name, name:tag, or id), of `team`."""
        tpl = self.find(ref, team)
        if tpl is None:
            return None
        build = self.tagged(tpl.id, split_ref(ref)[1])
        if build is None or build.status != "ready":
            raise E.NotFound(f"template \"{ref}\" has no build tagged \"{split_ref(ref)[1]}\"")
        return tpl, build

    # ---- the step cache ----------------------------------------------------------------------

    def cached(self, key: str) -> dict | None:
        rows = self._sql("SELECT stack FROM template_steps WHERE key=?", (key,))
        if not rows:
            return None
        stack = json.loads(rows[0][0])
        if not all(self.layers.exists(d) for d in stack["layers"]):
            self._sql("DELETE FROM template_steps WHERE key=?", (key,))  # its layers went with their templates
            return None
        return stack

    def remember(self, key: str, stack: dict) -> None:
        self._sql("INSERT OR REPLACE INTO template_steps VALUES (?,?,?)", (key, json.dumps(stack), time.time()))

    # ---- uploaded files ----------------------------------------------------------------------

    def name_uploads(self, build: Build, team: str, hashes: set[str]) -> None:
        """Record the uploads a build being started names (kept while it exists)."""
        self._sql("INSERT OR IGNORE INTO template_uploads VALUES (?,?,?)", [(build.id, team, h) for h in hashes],
                  many=True)

    def uploads_named(self, team: str | None = None, template_id: str | None = None) -> set[tuple[str, str]]:
        """(team, files hash) of the uploads builds name: all builds', a team's or a template's."""
        if template_id is not None:
            rows = self._sql("SELECT u.team, u.files_hash FROM template_uploads u JOIN template_builds b "
                             "ON b.id = u.build_id WHERE b.template_id=?", (template_id,))
        elif team is not None:
            rows = self._sql("SELECT team, files_hash FROM template_uploads WHERE team=?", (team,))
        else:
            rows = self._sql("SELECT DISTINCT team, files_hash FROM template_uploads")
        return {(r[0], r[1]) for r in rows}

    def files_folder(self, team: str) -> Path:
        return self.files_root / hashlib.sha256(team.encode()).hexdigest()[:32]

    def files_path(self, team: str, files_hash: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{64}", files_hash):
            raise E.InvalidArgument("a files hash is 64 hex digits")
        return self.files_folder(team) / files_hash
