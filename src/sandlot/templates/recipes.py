"""The template registry: name -> recipe. New templates are added here as data."""

from __future__ import annotations

from .debian import DebianRecipe
from .host import HostRecipe
from .python_stack import DATA_STACK, PythonStackRecipe
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
}
