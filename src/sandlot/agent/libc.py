"""The few libc calls the agent makes (prctl, capset, setfsuid, setfsgid), through _ctypes.

_ctypes is the C half of ctypes; the ctypes package around it (~4 ms of imports) held up each
sandbox's first command. Arguments are C ints, or bytes the callee only reads.
"""

import _ctypes
import os


class _Int(_ctypes._SimpleCData):
    _type_ = "i"


class _Function(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _Libc:
    _handle = _ctypes.dlopen(None, _ctypes.RTLD_LOCAL)  # the process's own symbols: libc's


prctl = _Function(("prctl", _Libc))
capset = _Function(("capset", _Libc))  # (header, data): bytes in the kernel's layout
setfsuid = _Function(("setfsuid", _Libc))
setfsgid = _Function(("setfsgid", _Libc))


def check(rc):
    """Raise the call's errno as OSError if it returned non-zero."""
    if rc != 0:
        err = _ctypes.get_errno()
        raise OSError(err, os.strerror(err))
