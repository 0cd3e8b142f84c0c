"""Find the Debian release and mirror this host's apt uses, so templates are built from the same place.

apt knows two formats: one-line entries in sources.list / *.list, and deb822 stanzas in *.sources.
"""

from __future__ import annotations

import functools
import re
import platform
from dataclasses import dataclass
from pathlib import Path

from .._exceptions import TemplateError

SCHEMES = ("http://", "https://", "ftp://", "file:/")  # the ones debootstrap can fetch from


@dataclass(frozen=True)
class AptSource:
    types: tuple[str, ...]
    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str = ""


@dataclass(frozen=True)
class Mirror:
    uri: str
    keyring: str | None  # the Signed-By keyring file, if the entry names one that exists


def parse_one_line(text: str) -> list[AptSource]:
    """`deb [opt=val ...] URI SUITE [COMPONENT...]` lines."""
    sources = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        options = {}
        if m := re.match(r"(\S+)\s+\[([^\]]*)\]\s*(.*)", line):
            kind, opts, rest = m.groups()
            options = dict(o.split("=", 1) for o in opts.split() if "=" in o)
            words = [kind, *rest.split()]
        else:
            words = line.split()
        if len(words) < 3 or words[0] not in ("deb", "deb-src"):
            continue
        sources.append(AptSource((words[0],), (words[1],), (words[2],), tuple(words[3:]),
                                 options.get("signed-by", "")))
    return sources


def parse_deb822(text: str) -> list[AptSource]:
    """Stanzas of `Field: value` lines separated by blank lines; indented lines continue a field."""
    sources = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        name = None
        for line in stanza.splitlines():
            if line.startswith("#"):
                continue
            if line[:1].isspace() and name:
                fields[name] += "\n" + line.strip()
            elif ":" in line:
                name, value = line.split(":", 1)
                name = name.strip().lower()
                fields[name] = value.strip()
        if not fields.get("uris") or fields.get("enabled", "yes").lower() == "no":
            continue
        sources.append(AptSource(*(tuple(fields.get(f, "").split()) for f in
                                   ("types", "uris", "suites", "components")),
                                 fields.get("signed-by", "")))
    return sources


def read_sources(etc_apt: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every source entry, in the order apt reads its files."""
    sources = []
    main = etc_apt / "sources.list"
    if main.is_file():
        sources += parse_one_line(main.read_text(errors="replace"))
    for path in sorted((etc_apt / "sources.list.d").glob("*")):
        if path.suffix == ".list":
            sources += parse_one_line(path.read_text(errors="replace"))
        elif path.suffix == ".sources":
            sources += parse_deb822(path.read_text(errors="replace"))
    return sources


def _keyring(signed_by: str) -> str | None:
    if "BEGIN PGP" in signed_by:  # an inline key: debootstrap needs a file, use its default keyring
        return None
    for word in re.split(r"[\s,]+", signed_by):
        if word.startswith("/") and Path(word).is_file():
            return word
    return None


def find_mirror(suite: str, sources: list[AptSource] | None = None) -> Mirror:
    """The first binary source that carries `suite` with its main component."""
    sources = read_sources() if sources is None else sources
    for src in sources:
        if "deb" in src.types and suite in src.suites and "main" in src.components:
            for uri in src.uris:
                if uri.startswith(SCHEMES):
                    return Mirror(uri.rstrip("/"), _keyring(src.signed_by))
    seen = sorted({f"{u} {s}" for src in sources for u in src.uris for s in src.suites})
    raise TemplateError(
        f"no apt source for Debian '{suite}' (main) in /etc/apt: the template is built from the mirror "
        f"the host's apt uses. Found: {', '.join(seen) or 'none'}. Add one, or use the 'host' template."
    )


def _release_suites(sources: list[AptSource]) -> list[str]:
    """Suites of binary main sources that name a release (not bookworm-security, not a path)."""
    found = []
    for src in sources:
        if "deb" in src.types and "main" in src.components:
            found += [s for s in src.suites if s and "-" not in s and "/" not in s and s not in found]
    return found


def host_suite(codename: str, sources: list[AptSource]) -> str:
    """The suite to build templates of: the host's codename (os-release VERSION_CODENAME) if its
    apt can fetch it, else the release its apt sources name (testing/sid hosts, or no codename)."""
    codename = codename.strip()
    suites = _release_suites(sources)
    if codename and (codename in suites or not suites):
        return codename
    if suites:
        return suites[0]
    raise TemplateError("cannot tell which Debian release this host runs: /etc/os-release has no "
                        "VERSION_CODENAME and no apt source names one. Use the 'host' template.")


@functools.lru_cache(maxsize=1)
def this_host_suite() -> str:
    """host_suite() of this machine (read once per process)."""
    try:
        codename = platform.freedesktop_os_release().get("VERSION_CODENAME", "")
    except OSError:  # neither /etc/os-release nor /usr/lib/os-release
        codename = ""
    return host_suite(codename, read_sources())
