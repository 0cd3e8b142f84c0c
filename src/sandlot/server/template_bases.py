"""What a template build starts from (its `fromTemplate` / `fromImage`, or a Dockerfile's FROM), as a
stack {"template", "layers", "envs"} the build's steps go on (docs/templates.md, "Sources"):

    a sandlot template (base, code-interpreter...)     its built root filesystem
    a snapshot or a custom template of the team        its stack (name, name:tag or id)
    e2bdev/base (the SDK's default image)              sandlot's `base`
    debian:<the host's release>, debian:stable          the `debian` recipe: debootstrap from the
                                                       host's mirror, built once and cached
    docker-archive:<path> or a path to a `docker save` the image's layers as one layer over the
    archive on the server, upload:<files hash>         empty `scratch` template (image_archive.py)

Anything else names a registry image, which this server cannot pull: refused, saying which
sources work.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .. import _exceptions as E
from ..templates.build_spec import DEFAULT_USER, DEFAULT_WORKDIR, BuildSpec
from .build_log import BuildLog, State

if TYPE_CHECKING:
    from .custom_templates import CustomTemplates
    from .service import SandboxService

E2B_BASE_IMAGES = ("e2bdev/base", "e2bdev/base:latest", "docker.io/e2bdev/base", "docker.io/e2bdev/base:latest")
DEBIAN_RECIPE = "debian"
SCRATCH_RECIPE = "scratch"
SOURCES = ("a sandlot template ({templates}), a snapshot or template of your team, debian:{release} "
           "(built here from the host's Debian mirror), or a local `docker save` archive "
           "(docker-archive:/path/on/server.tar, or upload:<files hash> of an uploaded one)")


class Bases:
    def __init__(self, service: SandboxService, store: CustomTemplates):
        self.service = service
        self.store = store

    def sources(self) -> str:
        from ..templates.apt_sources import this_host_suite

        try:
            release = this_host_suite()
        except E.SandlotError:
            release = "<host release>"
        return SOURCES.format(templates=", ".join(n for n in self.service.templates.list()
                                                 if n not in (SCRATCH_RECIPE,)), release=release)

    async def resolve(self, spec: BuildSpec, team: str, out: BuildLog, holder: str) -> tuple[dict, str, State]:
        """(stack, identity for the cache, the state steps start with); layers made for it (an
        image's) are held by `holder`."""
        if spec.registry:
            raise E.InvalidArgument("registry credentials were given, but this server cannot pull from a "
                                    f"registry. Bases that work: {self.sources()}")
        ref = spec.from_template or spec.from_image or ""
        if spec.from_image and spec.from_image in E2B_BASE_IMAGES:
            ref = "base"
        found = self._named(ref, team)
        if found is not None:
            stack, state = found
            return stack, json.dumps(["stack", stack, self._recipe_id(stack["template"])]), state
        if spec.from_image:
            image = await self._image(spec.from_image, team, out, holder)
            if image is not None:
                stack, identity = image
                return stack, identity, State()
        what = "template" if spec.from_template else "image"
        raise E.NotFound(f"{what} \"{ref}\" not found, and this server cannot pull images from a registry. "
                         f"Bases that work: {self.sources()}")

    def _named(self, ref: str, team: str) -> tuple[dict, State] | None:
        svc = self.service
        custom = self.store.resolve(ref, team) if self.store.find(ref, team) else None
        if custom is not None:
            result = custom[1].result
            return ({"template": result["template"], "layers": result["layers"], "envs": result["envs"]},
                    State(result.get("user") or DEFAULT_USER, result.get("workdir") or DEFAULT_WORKDIR))
        snap = svc.snapshots.find(ref, team) if svc.snapshots is not None else None
        if snap is not None:
            return ({"template": snap.stack["template"], "layers": list(snap.stack.get("layers", [])),
                     "envs": dict(snap.stack.get("envs", {}))}, State())
        if ref in svc.templates.list() and ref not in (SCRATCH_RECIPE,):
            return {"template": ref, "layers": [], "envs": {}}, State()
        return None

    def _recipe_id(self, name: str) -> str:
        manifest = self.service.templates.manifest(name) or {}
        return f"{manifest.get('recipe')}@{manifest.get('built_at')}"

    async def built(self, name: str, out: BuildLog) -> None:
        """Wait for the recipe template `name` (built in a worker when missing: minutes for Debian)."""
        if self.service.builds.ready(name) is None:
            out.add(f"building the {name} root filesystem (once; later builds reuse it)")
        await self.service.builds.get(name)

    async def _image(self, image: str, team: str, out: BuildLog, holder: str) -> tuple[dict, str] | None:
        name, _, variant = image.partition(":")
        if name in ("debian", "docker.io/debian", "docker.io/library/debian", "library/debian"):
            return await self._debian(variant or "stable", out)
        from . import image_archive

        archive = image_archive.archive_path(image, team, self.store)
        if archive is None:
            return None
        out.add(f"reading the image archive {image}")
        await self.built(SCRATCH_RECIPE, out)
        digest, envs = await image_archive.import_archive(self.service, self.store, archive, team, holder, out)
        stack = {"template": SCRATCH_RECIPE, "layers": [digest], "envs": envs}
        return stack, json.dumps(["image", digest, envs])

    async def _debian(self, variant: str, out: BuildLog) -> tuple[dict, str]:
        from ..templates.apt_sources import this_host_suite

        release = this_host_suite()
        if variant not in ("stable", "latest", release, release.split("-")[0]):
            raise E.InvalidArgument(f"debian:{variant} cannot be built here: only the host's release "
                                    f"(debian:{release} or debian:stable) comes from its mirror")
        await self.built(DEBIAN_RECIPE, out)
        return {"template": DEBIAN_RECIPE, "layers": [], "envs": {}}, json.dumps(
            ["debian", self._recipe_id(DEBIAN_RECIPE)])
