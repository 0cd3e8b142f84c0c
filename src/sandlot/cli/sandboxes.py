"""`sandlot create|ls|exec|shell|cp|kill`: sandbox commands, thin over the sync SDK (in progress)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the sandbox commands to the top-level app."""
