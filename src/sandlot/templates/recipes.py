"""The template registry: name -> recipe. New templates are added here as data."""

from __future__ import annotations

from .debian import DebianRecipe
from .gateway import GatewayRecipe
from .host import HostRecipe
from .python_stack import DATA_STACK, PythonStackRecipe
from .scratch import ScratchRecipe
from .spec import Recipe

RECIPES: dict[str, Recipe] = {
    "base": DebianRecipe(),
    "host": HostRecipe(),
    # E2B's `code-interpreter-v1`: Jupyter kernels (python, bash, R), Node.js with TypeScript for
    # javascript/typescript contexts, a JDK for java contexts (jshell), and the data stack
    "code-interpreter": PythonStackRecipe(
        parent="base", packages=(*DATA_STACK, "bash_kernel"),
        apt=("nodejs", "node-typescript", "r-base-core", "r-cran-irkernel", "default-jdk-headless"),
        warm="import matplotlib.pyplot, pandas, sklearn, scipy.stats"),
    # what E2B's `from_debian_image()` builds on (server/template_bases.py): the host's release
    # as a Docker image has it, plus what the in-sandbox agent and E2B's default user need
    "debian": DebianRecipe(packages=("bash", "coreutils", "python3", "sudo", "procps", "ca-certificates",
                                     "libnss-myhostname"), expected_packages=110),
    # E2B's `mcp-gateway` (the SDK's default_mcp_template, used by `mcp=` on create): base plus the
    # `mcp-gateway` command, the in-sandbox MCP gateway (sandlot/gateway/)
    "mcp-gateway": GatewayRecipe(parent="base"),
    # an empty root filesystem under templates that are all layers (a `docker save` archive)
    "scratch": ScratchRecipe(),
}
