"""The driver's one error: a request that fails, with the code the control plane maps to its own
error tree (invalid_argument, not_found, internal)."""


class Failure(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code, self.message = code, message
