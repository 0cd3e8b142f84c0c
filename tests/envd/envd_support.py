"""Values the envd tests share with their conftest (a module of its own: several conftest.py files
exist under tests/, so `from conftest import ...` would pick whichever was loaded first)."""

MAX_UPLOAD = 8 * 1024 * 1024  # small, so the 413 test need not send a gigabyte
SANDBOX_ENVS = {"SANDBOX_WIDE": "yes"}
