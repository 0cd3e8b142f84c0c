"""The runtime conformance suite: every test runs once per runtime in runtime_support.CASES.

`runtime` is a session's RuntimeDriver per case; `make_sandbox` creates sandboxes with it and, when
the test ends, kills each and fails the test if the host still holds anything of it (processes,
mounts, directories, cgroups, uid claims). At the end of the session the runtime must report no
leftovers, and its log no error.
"""

from __future__ import annotations

import os

import pytest
from host_resources import sandbox_traces
from rootless_support import Account
from runtime_support import CASES, Box, RuntimeCase, RuntimeDriver, remove_driver_home, spec, start_driver

if os.geteuid() != 0:
    pytest.skip("the conformance suite runs each runtime as its own account: run it as root",
                allow_module_level=True)


def pytest_report_header(config):
    return [f"runtime {case.name} ({case.template}, {case.account}) lacks: "
            + (", ".join(sorted(case.lacks)) or "nothing") for case in CASES]


@pytest.fixture(scope="session", params=CASES, ids=lambda case: case.name)
def case(request) -> RuntimeCase:
    if request.param.account == "unprivileged" and (error := Account().userns_error()):
        pytest.skip(f"user namespaces are unavailable to unprivileged users here: {error}")
    return request.param


@pytest.fixture(scope="session")
def runtime(case, tmp_path_factory) -> RuntimeDriver:
    driver = start_driver(case, tmp_path_factory.mktemp("runtime-logs"))  # pytest keeps the last runs
    left = {"the session ended early"}
    try:
        yield driver
        left = driver.leftovers()
        driver.stop()
    finally:
        if driver.proc.poll() is None:
            driver.proc.kill()
        if not left:  # else kept as it is, for a look (and never removed through a sandbox's mounts)
            remove_driver_home(driver)
    assert not left, f"{case.name}: sandboxes left behind in {driver.home}: {left} (its log: {driver.log})"
    log = driver.log_text()
    errors = [line for line in log.splitlines() if " ERROR " in line or line.startswith("Traceback")]
    assert not errors, f"{case.name} logged errors ({driver.log}):\n" + "\n".join(errors)


@pytest.fixture
def make_sandbox(runtime):
    """make(background=False, **limits) -> Box, a sandbox of the case's template; each is killed at
    the end of the test, which fails if the host still holds any of it."""
    made: list[Box] = []

    def make(background: bool = False, **limits) -> Box:
        box = Box.of(runtime.create(spec(background, **limits)))
        made.append(box)
        return box

    yield make
    traces = {}
    for box in made:
        runtime.kill(box.id)
        if found := sandbox_traces(box.id, runtime.home, box.pid_ns):
            traces[box.id] = found
        box.close()
    assert not traces, f"killed sandboxes left traces on the host: {traces}"


@pytest.fixture
def sandbox(make_sandbox) -> Box:
    return make_sandbox()
