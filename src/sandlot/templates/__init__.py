"""Templates: the root filesystems sandboxes start from (see spec.Template for what the runtime gets)."""

from .progress import progress_bar
from .recipes import RECIPES
from .spec import Progress, Recipe, Template
from .store import TemplateStore

__all__ = ["RECIPES", "Progress", "Recipe", "Template", "TemplateStore", "progress_bar"]
