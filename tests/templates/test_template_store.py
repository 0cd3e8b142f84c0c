"""The store's contract, with cheap fake recipes: build once, rebuild on force or a changed recipe,
never leave a half-built template behind."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from sandlot._exceptions import NotFound, TemplateError
from sandlot.templates import Template, TemplateStore, progress_bar
from sandlot.templates import debootstrap as debootstrap_module
from sandlot.templates.debian import DebianRecipe
from sandlot.templates.debootstrap import Meter, prune_cache


class FakeRecipe:
    def __init__(self, fail: Exception | None = None):
        self.version, self.builds, self.fail = "1", 0, fail

    def fingerprint(self) -> str:
        return self.version

    def build(self, rootfs: Path, cache: Path, progress) -> dict:
        self.builds += 1
        (rootfs / "marker").write_text(f"{self.version}.{self.builds}")
        progress(1, 2, "half way")
        if self.fail:
            raise self.fail
        return {"packages": ["fake=1"]}

    def template(self, name: str, rootfs: Path) -> Template:
        return Template(name=name, rootfs=rootfs)


@pytest.fixture
def fake():
    return FakeRecipe()


@pytest.fixture
def store(tmp_path, fake):
    return TemplateStore(tmp_path, {"fake": fake})


def test_get_builds_once(store, fake, tmp_path):
    assert not store.is_built("fake") and store.manifest("fake") is None
    template = store.get("fake")
    assert template.rootfs == tmp_path / "templates/fake/rootfs"
    assert (template.rootfs / "marker").read_text() == "1.1"
    assert store.get("fake") == template and fake.builds == 1
    manifest = store.manifest("fake")
    assert manifest["recipe"] == "1" and manifest["packages"] == ["fake=1"] and manifest["built_at"]
    assert store.list() == ["fake"]


def test_rebuilds_when_forced_or_the_recipe_changes(store, fake):
    store.get("fake")
    store.build("fake")
    assert fake.builds == 1
    store.build("fake", force=True)
    assert fake.builds == 2
    fake.version = "2"
    assert not store.is_built("fake")
    assert (store.get("fake").rootfs / "marker").read_text() == "2.3"
    assert store.manifest("fake")["recipe"] == "2"


def test_replaced_versions_are_swept(store, fake):
    store.get("fake")
    store.build("fake", force=True)
    assert sorted(p.name for p in store.root.iterdir()) == [".lock", "fake"]


def test_failed_build_leaves_the_old_template_and_no_debris(store, fake):
    store.get("fake")
    fake.version, fake.fail = "2", OSError("disk on fire")
    with pytest.raises(TemplateError, match="building template 'fake' failed: disk on fire"):
        store.get("fake")
    assert sorted(p.name for p in store.root.iterdir()) == [".lock", "fake"]
    assert (store.root / "fake/rootfs/marker").read_text() == "1.1"
    assert store.manifest("fake")["recipe"] == "1"


def test_progress_reaches_the_caller(store):
    seen = []
    store.get("fake", progress=lambda *a: seen.append(a))
    assert seen == [(1, 2, "half way")]


def test_unknown_template_is_not_found(store):
    for call in (store.get, store.build, store.is_built, store.manifest):
        with pytest.raises(NotFound, match="unknown template 'nope'.*fake"):
            call("nope")


def test_missing_debootstrap_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(debootstrap_module.shutil, "which", lambda *a, **k: None)
    store = TemplateStore(tmp_path, {"base": DebianRecipe()})
    with pytest.raises(TemplateError, match=r"apt-get install -y debootstrap|needs root"):
        store.get("base")
    assert not store.is_built("base")


def test_recipe_fingerprint_follows_the_recipe():
    base = DebianRecipe()
    assert base.fingerprint() == DebianRecipe().fingerprint()
    assert base.fingerprint() != DebianRecipe(packages=(*base.packages, "vim")).fingerprint()
    assert base.fingerprint() != DebianRecipe(revision=base.revision + 1).fingerprint()
    assert base.fingerprint() == DebianRecipe(expected_packages=1).fingerprint()


DEBOOTSTRAP_LINES = """\
I: Retrieving InRelease
I: Checking Release signature
I: Retrieving bash 5.2.15-2+b2
I: Validating bash 5.2.15-2+b2
I: Validating libc6 2.36-9
I: Validating python3 3.11.2-1
I: Chosen extractor for .deb packages: dpkg-deb
I: Extracting bash...
I: Unpacking bash...
I: Unpacking libc6:amd64...
I: Configuring libc6:amd64...
I: Configuring bash...
I: Configuring python3...
I: Base system installed successfully.
"""


def test_meter_turns_debootstrap_lines_into_progress():
    seen = []
    meter = Meter(expected_packages=2, extra_steps=1, progress=lambda *a: seen.append(a))
    for line in DEBOOTSTRAP_LINES.splitlines():
        meter.feed(line)
    assert [m for *_, m in seen][:9] == [
        "retrieving InRelease", "Checking Release signature", "retrieving bash", "validating bash",
        "validating libc6", "validating python3", "Chosen extractor for .deb packages: dpkg-deb",
        "extracting bash", "unpacking bash"]
    dones = [d for d, _, _ in seen]
    assert dones == sorted(dones) and all(d <= t for d, t, _ in seen)
    assert seen[-1][1] == 10  # three packages were validated: 3 x 3 + 1
    meter.debootstrap_done()
    meter.step("adding user")
    assert seen[-1] == (10, 10, "adding user")


def test_prune_cache_keeps_installed_versions(tmp_path):
    for name in ("bsdutils_1%3a2.38.1-5+deb12u3_amd64.deb", "bsdutils_1%3a2.38.1-5+deb12u1_amd64.deb",
                 "bash_5.2.15-2+b2_amd64.deb", "gone_1.0_all.deb"):
        (tmp_path / name).touch()
    prune_cache(tmp_path, {"bsdutils=1:2.38.1-5+deb12u3", "bash=5.2.15-2+b2", "curl=7.88"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bash_5.2.15-2+b2_amd64.deb",
                                                          "bsdutils_1%3a2.38.1-5+deb12u3_amd64.deb"]


def test_progress_bar_draws():
    out = io.StringIO()
    with progress_bar("building base", console=Console(file=out, force_terminal=True, width=100)) as report:
        report(5, 10, "unpacking bash")
    assert "building base" in out.getvalue()


@pytest.mark.parametrize("link", ["dangling", "missing"])
def test_a_dangling_or_missing_cache_link_does_not_break_a_build(tmp_path, link):
    """A home whose `cache` links to a directory that does not exist yet (a shared cache on a fresh
    machine), or has no cache at all: recipes get a cache directory they can write into."""
    target = tmp_path / "shared" / "cache"
    home = tmp_path / "home"
    home.mkdir()
    if link == "dangling":
        (home / "cache").symlink_to(target)

    class Caching(FakeRecipe):
        def build(self, rootfs, cache, progress):
            (cache / "debs").mkdir(parents=True, exist_ok=True)
            (cache / "debs" / "a.deb").write_text("x")
            return super().build(rootfs, cache, progress)

    store = TemplateStore(home, {"fake": Caching()})
    store.get("fake")
    kept = (target if link == "dangling" else home / "cache") / "debs" / "a.deb"
    assert kept.read_text() == "x"
    from sandlot.wheels import WheelCache
    assert WheelCache(home / "cache" / "wheels").root == (target if link == "dangling" else home / "cache").resolve() / "wheels"
