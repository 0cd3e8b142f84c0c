"""The README's list of system packages is the one the install script installs."""

from __future__ import annotations

import re

from support import REPO


def test_readme_lists_what_the_install_script_installs():
    script = (REPO / "scripts" / "install-system-deps.sh").read_text()
    packages = re.search(r"^packages=\(([^)]*)\)", script, re.M).group(1).split()
    assert {"debootstrap", "sudo", "python3-venv", "iproute2"} <= set(packages)
    readme = (REPO / "README.md").read_text()
    start = readme.index("System packages (installed by `scripts/install-system-deps.sh`")
    paragraph = readme[start:readme.find("\n\n", start)]
    for package in packages:
        assert re.search(rf"(?<![\w-]){re.escape(package)}(?![\w-])", paragraph), f"README does not list {package}"
        assert re.search(rf"^#\s+.*\b{re.escape(package)}\b", script, re.M), f"the script does not say why {package}"
