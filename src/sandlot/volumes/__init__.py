"""Persistent named volumes (E2B's /volumes): store.py keeps them (an ext4 image each, its size a
hard quota), mount.py binds them into sandboxes; server/volumes.py has the routes."""

from .store import Volume, VolumeStore

__all__ = ["Volume", "VolumeStore"]
