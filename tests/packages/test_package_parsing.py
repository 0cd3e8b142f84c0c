"""Validation of what callers send and what sandboxes print (no server needed)."""

from __future__ import annotations

import json

import pytest

from sandlot import InvalidArgument
from sandlot.server.packages import (
    Package,
    _changed,
    _parse_list,
    package_names,
)
from sandlot.wheels import (
    PackageError,
    PythonTags,
    parse_requirements_file,
    pip_error,
    requirement,
    requirements,
)

TAGS = {"version": "3.11", "interpreter": "cp311", "abi": "cp311",
        "platforms": ["manylinux_2_36_x86_64", "linux_x86_64"]}


def test_requirements_keep_names_versions_extras_and_markers():
    assert requirements(["six", "six == 1.16.0", "requests[socks]>=2", "tabulate; python_version >= '3'"]) == [
        "six", "six==1.16.0", "requests[socks]>=2", 'tabulate; python_version >= "3"']
    assert requirement("six", "1.16.0") == "six==1.16.0"


@pytest.mark.parametrize("spec", ["", "  ", "-r /etc/passwd", "--index-url=http://127.0.0.1:9/", "-e .",
                                  "pkg @ file:///etc/passwd", "pkg @ https://127.0.0.1/x.whl", "/etc/passwd",
                                  "./dir", "six --hash=sha256:00", "six\n--pre", "x" * 1001, 3])
def test_requirements_refuse_options_urls_and_paths(spec):
    with pytest.raises(InvalidArgument):
        requirements([spec])


def test_requirements_are_bounded():
    with pytest.raises(InvalidArgument, match="no packages"):
        requirements([])
    with pytest.raises(InvalidArgument, match="more than"):
        requirements(["six"] * 1001)
    with pytest.raises(InvalidArgument):
        requirement("six", "1.0; rm")


def test_requirements_file_as_pip_reads_it():
    text = "# header\n\ntabulate  # tables\n\tsix==1.16.0\t# pinned\nrequests \\\n  >=2\n"
    assert parse_requirements_file(text) == ["tabulate", "six==1.16.0", "requests>=2"]
    with pytest.raises(InvalidArgument, match="lists no packages"):
        parse_requirements_file("# only a comment\n\n")
    for bad in ("six\n-r other.txt\n", "--index-url http://127.0.0.1:9/\nsix\n", "-e .\n", "six --hash=sha256:00\n"):
        with pytest.raises(InvalidArgument):
            parse_requirements_file(bad)


def test_tags_from_an_untrusted_sandbox():
    assert PythonTags.parse(json.dumps(TAGS)).platforms == ("manylinux_2_36_x86_64", "linux_x86_64")
    for bad in ("", "not json", "[]", "{}", json.dumps({**TAGS, "version": 3}),
                json.dumps({**TAGS, "platforms": "linux"}),
                json.dumps({**TAGS, "abi": "--index-url=x"}), json.dumps({**TAGS, "platforms": []}),
                json.dumps({**TAGS, "version": "3.11 --pre"}), json.dumps({**TAGS, "platforms": ["a"] * 201})):
        with pytest.raises(PackageError):
            PythonTags.parse(bad)


def test_pip_list_from_an_untrusted_sandbox():
    out = json.dumps([{"name": "Six", "version": "1.16.0"}, {"name": "pip", "version": "23.0.1", "x": 1}]).encode()
    assert _parse_list(out) == [Package("pip", "23.0.1"), Package("Six", "1.16.0")]
    for bad in (b"", b"nope", b"{}", b'[{"name": 1, "version": "1"}]', b'[{"name": "a"}]', b"[1]",
                json.dumps([{"name": "a" * 201, "version": "1"}]).encode()):
        with pytest.raises(PackageError):
            _parse_list(bad)


def test_what_changed_and_names():
    before = [Package("six", "1.16.0"), Package("pip", "23.0.1")]
    after = [Package("six", "1.17.0"), Package("pip", "23.0.1"), Package("Tabulate", "0.9.0")]
    assert _changed(before, after) == [Package("six", "1.17.0"), Package("Tabulate", "0.9.0")]
    assert _changed(after, before) == [Package("six", "1.16.0")]
    # names compare as PEP 503 does: a new spelling of the same project is no change
    assert _changed([Package("Foo_Bar.baz", "1")], [Package("foo-bar-baz", "1")]) == []
    assert package_names(["six", "Foo_Bar.baz"]) == ["six", "Foo_Bar.baz"]
    for bad in ([], ["six==1.0"], ["--all"], ["-r"], ["a b"], [""], ["x" * 201]):
        with pytest.raises(InvalidArgument):
            package_names(bad)


def test_pip_error_keeps_pips_own_words():
    output = "Collecting x\nWARNING: Location 'file:///x' is ignored\nERROR: No matching distribution found for x\n"
    assert pip_error(output, "fallback") == "ERROR: No matching distribution found for x"
    assert pip_error("", "fallback") == "fallback"
