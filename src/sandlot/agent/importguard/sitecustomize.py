"""SecurityPolicy.blocked_imports: ADVISORY ONLY, not a security boundary.

Python runs this at start-up when its directory is on PYTHONPATH (the sandbox's environment puts it
there when the policy blocks imports). It refuses the modules in $SANDLOT_BLOCKED_IMPORTS (``mod``,
and ``mod.attr`` for one attribute) to code run as a program, in ``python -c`` or in a code
context (module ``__main__``); libraries keep importing what they need. Anything can get around it
(another interpreter, importlib, a C extension, unsetting PYTHONPATH): use allow_subprocess,
allow_shell and path permissions for what must hold.
"""

import builtins
import os
import sys

_BLOCKED = frozenset(n for n in os.environ.get("SANDLOT_BLOCKED_IMPORTS", "").split(",") if n)
_import = builtins.__import__
# the in-sandbox tree (this file is its agent/importguard/sitecustomize.py)
_SANDLOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))) + "/"


def _from_main():
    """Whether the code asking is a program's own (sandlot's code-context driver is not)."""
    try:
        frame = sys._getframe(2)
    except ValueError:  # imported from C (python -m starting runpy): not a program's code
        return False
    if frame.f_globals.get("__name__") != "__main__":
        return False
    return not str(frame.f_globals.get("__file__") or "").startswith(_SANDLOT)


def _refuse(name):
    raise ImportError("import of %r is blocked by this sandbox's policy (blocked_imports)" % name, name=name)


def _guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
    if level == 0 and _from_main():
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            if ".".join(parts[:i]) in _BLOCKED:
                _refuse(name)
        for attr in fromlist or ():
            if "%s.%s" % (name, attr) in _BLOCKED:
                _refuse("%s.%s" % (name, attr))
    module = _import(name, globals, locals, fromlist, level)
    _guard_attributes()
    return module


class _Guard(object):
    """A blocked ``mod.attr`` looked up from __main__ (``os.system(...)``) raises."""

    def __init__(self, module, attr):
        self.module, self.attr, self.real = module, attr, getattr(module, attr)

    def __call__(self, *args, **kwargs):
        if _from_main():
            _refuse("%s.%s" % (self.module.__name__, self.attr))
        return self.real(*args, **kwargs)


def _guard_attributes():
    for entry in _BLOCKED:
        module, _, attr = entry.rpartition(".")
        found = sys.modules.get(module) if module else None
        value = getattr(found, attr, None)
        if callable(value) and not isinstance(value, _Guard):
            setattr(found, attr, _Guard(found, attr))


if _BLOCKED:
    builtins.__import__ = _guarded_import
    _guard_attributes()
