"""Docs and code cite only what the repository holds: no file outside it (the notes the E2B wire
protocol and the design were first written down in live outside the repository, and readers of a
checkout cannot open them), and every `docs/NAME.md §N` names a section NAME.md has. Sections are
numbered headings (`### 3.12 Signed file URLs`). The README links every doc."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from support import REPO

THIS = Path(__file__).resolve()
DOCS = REPO / "docs"

# Files that lived beside the repository, never in it.
OUTSIDE = re.compile(r"e2b-protocol\.md|design-notes\.md|(?<![\w/.-])(?:\.\./)*shared/(?:seeds\b|[\w-]+\.md)"
                     r"|/work/(?:main|shared|wt)\b")
SECTION = r"§\d+(?:\.\d+)*"
# "docs/e2b.md §3.8", "e2b.md §3.11, §3.12", "docs/e2b.md §3.8–§3.13", "issue 10 §4"
CITATION = re.compile(rf"(?P<doc>(?:docs/)?[\w-]+\.md|issue \d+)(?P<refs>(?:(?:,\s*|\s*[–-]\s*|\s+and\s+|\s+){SECTION})+)")
HEADING = re.compile(r"^#{1,6} (\d+(?:\.\d+)*)\.? ", re.M)
LINK = re.compile(r"\]\(((?:\.\./|docs/)?[\w-]+\.md)(?:#[^)]*)?\)")


def repository_files() -> list[Path]:
    """Tracked files, and new ones git does not ignore (a citation in an uncommitted file counts)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=REPO, capture_output=True, check=True).stdout.decode()
    return sorted({REPO / name for name in listed.split("\0") if name})


def texts() -> list[tuple[Path, str]]:
    found = []
    for path in repository_files():
        if path == THIS or not path.is_file():
            continue
        try:
            found.append((path, path.read_text()))
        except UnicodeDecodeError:  # binary files cite nothing
            continue
    assert len(found) > 100, "the repository's files were not found"
    return found


def sections(doc: Path) -> set[str]:
    return set(HEADING.findall(doc.read_text()))


def where(path: Path, text: str, offset: int) -> str:
    return f"{path.relative_to(REPO)}:{text.count(chr(10), 0, offset) + 1}"


def test_nothing_cites_files_outside_the_repository():
    cited = [f"{where(path, text, m.start())}: {m.group()}" for path, text in texts() for m in OUTSIDE.finditer(text)]
    assert not cited, "files outside the repository are cited (say it in docs/ instead):\n" + "\n".join(cited)


def test_every_cited_section_exists():
    known = {doc.name: sections(doc) for doc in DOCS.glob("*.md")}
    assert {"1", "2.5", "3.12", "4.3"} <= known["e2b.md"]
    missing, bare = [], []
    for path, text in texts():
        for m in CITATION.finditer(text):
            if m.group("doc").startswith("issue"):
                continue  # the issue tracker's sections
            name = Path(m.group("doc")).name
            for ref in re.findall(SECTION, m.group("refs")):
                if ref[1:] not in known.get(name, ()):
                    missing.append(f"{where(path, text, m.start())}: {name} {ref}")
        # A bare "§N" is a section of the doc it stands in; anywhere else it names nothing.
        rest = CITATION.sub(lambda m: " " * len(m.group()), text)
        for m in re.finditer(SECTION, rest):
            if path.parent == DOCS and path.suffix == ".md":
                if m.group()[1:] not in known[path.name]:
                    missing.append(f"{where(path, text, m.start())}: {path.name} {m.group()}")
            else:
                bare.append(f"{where(path, text, m.start())}: {m.group()}")
    assert not missing, "cited sections that do not exist:\n" + "\n".join(missing)
    assert not bare, "sections cited without their doc (write docs/NAME.md §N):\n" + "\n".join(bare)


def test_links_to_docs_resolve_and_the_readme_links_every_doc():
    broken = []
    for page in [REPO / "README.md", *DOCS.glob("*.md")]:
        for target in LINK.findall(page.read_text()):
            if not (page.parent / target).resolve().is_file():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, "links to missing docs:\n" + "\n".join(broken)
    readme = (REPO / "README.md").read_text()
    unlinked = [doc.name for doc in sorted(DOCS.glob("*.md")) if f"](docs/{doc.name})" not in readme]
    assert not unlinked, f"the README's Docs list misses {unlinked}"
