"""The template registry: name -> recipe. New templates are added here as data."""

from __future__ import annotations

from .base import DebianRecipe
from .host import HostRecipe
from .spec import Recipe

RECIPES: dict[str, Recipe] = {
    "base": DebianRecipe(),
    "host": HostRecipe(),
}
