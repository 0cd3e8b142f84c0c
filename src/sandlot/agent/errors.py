"""OpError: a request the agent refuses, sent to the client as an ``error`` frame (codes in wire.py)."""

import errno

# The codes file operations map to; anything else is "internal".
_ERRNO_CODES = {
    errno.ENOENT: "not_found",
    errno.EACCES: "permission_denied",
    errno.EPERM: "permission_denied",
    errno.EROFS: "permission_denied",
    errno.EEXIST: "already_exists",
    errno.ENOTEMPTY: "failed_precondition",
    errno.ENOTDIR: "invalid_argument",
    errno.EISDIR: "invalid_argument",
    errno.EINVAL: "invalid_argument",
    errno.ELOOP: "invalid_argument",
    errno.ENAMETOOLONG: "invalid_argument",
    errno.ENOSPC: "resource_exhausted",
    errno.EDQUOT: "resource_exhausted",
    errno.EFBIG: "resource_exhausted",  # past the sandbox's disk_mb (RLIMIT_FSIZE)
    errno.EMFILE: "resource_exhausted",
    errno.ENFILE: "resource_exhausted",
    errno.ENOMEM: "resource_exhausted",
    errno.EAGAIN: "resource_exhausted",
}


class OpError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def from_os(e, path=None):
    """Translate an OSError into the OpError a client should see."""
    if e.errno == errno.ENOENT and path is not None:
        return OpError("not_found", "path '%s' does not exist" % path)
    reason = e.strerror or str(e)
    return OpError(_ERRNO_CODES.get(e.errno, "internal"), "%s: %s" % (path, reason) if path else reason)


def field(req, name, kind, default=None, required=False):
    """Return ``req[name]`` checked against ``kind``; a missing or null field gives ``default``."""
    value = req.get(name)
    if value is None:
        if required:
            raise OpError("invalid_argument", "missing field '%s'" % name)
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise OpError("invalid_argument", "field '%s' has the wrong type" % name)
    return value
