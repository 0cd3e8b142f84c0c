"""Templates: the root filesystems sandboxes start from (see spec.Template for what the runtime gets)."""

from .progress import logged_progress, progress_bar
from .recipes import RECIPES
from .spec import Progress, Recipe, Template
from .store import TemplateStore

__all__ = ["RECIPES", "Progress", "Recipe", "Template", "TemplateStore", "logged_progress", "progress_bar"]
