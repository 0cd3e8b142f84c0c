
import pytest

from sandlot._exceptions import TemplateError
from sandlot.templates.apt_sources import (
    AptSource, find_mirror, host_suite, parse_deb822, parse_one_line, read_sources, this_host_suite,
)

DEB822 = """\
Types: deb
# a comment between fields
URIs: http://mirror.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main

Enabled: no
Types: deb
URIs: http://disabled.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: https://inline.example/debian
Suites: trixie
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 mQINBF/abc
 -----END PGP PUBLIC KEY BLOCK-----
"""

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [arch=amd64 signed-by=/etc/apt/keyrings/ex.gpg] http://mirror.example/debian bookworm main non-free
deb http://security.example/debian-security bookworm-security main # trailing comment
"""


def test_parse_deb822():
    sources = parse_deb822(DEB822)
    assert sources[0] == AptSource(("deb",), ("http://mirror.example/debian/",), ("bookworm", "bookworm-updates"),
                                   ("main", "contrib"), "/usr/share/keyrings/debian-archive-keyring.gpg")
    assert sources[1].types == ("deb", "deb-src")
    assert [s.uris[0] for s in sources] == ["http://mirror.example/debian/", "http://mirror.example/debian-security",
                                            "https://inline.example/debian"]  # the disabled one is skipped
    assert "BEGIN PGP" in sources[2].signed_by


def test_parse_one_line():
    sources = parse_one_line(ONE_LINE)
    assert [(s.types, s.uris, s.suites) for s in sources] == [
        (("deb-src",), ("http://src.example/debian",), ("bookworm",)),
        (("deb",), ("http://mirror.example/debian",), ("bookworm",)),
        (("deb",), ("http://security.example/debian-security",), ("bookworm-security",)),
    ]
    assert sources[1].components == ("main", "non-free")
    assert sources[1].signed_by == "/etc/apt/keyrings/ex.gpg"
    assert sources[2].components == ("main",)


def test_find_mirror_picks_the_binary_main_suite(tmp_path):
    keyring = tmp_path / "key.gpg"
    keyring.write_bytes(b"k")
    sources = [*parse_one_line(ONE_LINE), AptSource(("deb",), ("http://x.example/debian/",), ("bookworm",),
                                                    ("main",), f"{tmp_path}/missing.gpg {keyring}")]
    assert find_mirror("bookworm", sources).uri == "http://mirror.example/debian"  # not deb-src, not -security
    assert find_mirror("bookworm", sources[-1:]).uri == "http://x.example/debian"
    assert find_mirror("bookworm", sources[-1:]).keyring == str(keyring)
    assert find_mirror("bookworm", parse_deb822(DEB822)).keyring in (None, "/usr/share/keyrings/debian-archive-keyring.gpg")
    assert find_mirror("trixie", parse_deb822(DEB822)).keyring is None  # inline key: debootstrap's default


def test_find_mirror_without_a_match_says_what_it_saw():
    with pytest.raises(TemplateError, match="no apt source for Debian 'bookworm'.*security.example"):
        find_mirror("bookworm", [s for s in parse_one_line(ONE_LINE) if "security" in s.uris[0]])
    unusable = [AptSource(("deb",), ("cdrom:[Debian]/",), ("bookworm",), ("main",))]
    with pytest.raises(TemplateError):
        find_mirror("bookworm", unusable)


def test_read_sources_reads_every_apt_file(tmp_path):
    (tmp_path / "sources.list").write_text("deb http://a.example/debian bookworm main\n")
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d/b.sources").write_text(DEB822)
    (tmp_path / "sources.list.d/c.list").write_text("deb http://c.example/debian bookworm main\n")
    (tmp_path / "sources.list.d/d.sources.disabled").write_text(DEB822.replace("mirror", "d"))
    uris = [s.uris[0] for s in read_sources(tmp_path)]
    assert uris[0] == "http://a.example/debian"
    assert "http://c.example/debian" in uris and "http://mirror.example/debian/" in uris
    assert not any("d.example" in u for u in uris)


def test_host_config_names_a_mirror():
    suite = this_host_suite()
    if not any(suite in s.suites for s in read_sources()):
        pytest.skip(f"this host's apt has no {suite} source")
    assert find_mirror(suite).uri.startswith(("http://", "https://", "ftp://", "file:/"))


def test_host_suite():
    bookworm = parse_one_line(ONE_LINE)
    trixie = parse_deb822("Types: deb\nURIs: http://m.example/debian\nSuites: trixie-updates trixie\n"
                          "Components: main\n")
    assert host_suite("bookworm", bookworm) == "bookworm"
    assert host_suite("trixie", trixie) == "trixie"
    # no codename (or one its apt cannot fetch, e.g. testing named "sid" in sources): the sources' release
    assert host_suite("", trixie) == "trixie"
    assert host_suite("bookworm", trixie) == "trixie"
    assert host_suite("bookworm", []) == "bookworm"  # no sources: find_mirror says what is missing
    with pytest.raises(TemplateError, match="VERSION_CODENAME"):
        host_suite("", parse_one_line("deb http://s.example/debian-security bookworm-security main\n"))
