"""Text that came from a sandbox, made fit to send: UTF-8 can hold no surrogate, and JSON and
protobuf answers are UTF-8.

The agent hands a name or path that is not UTF-8 (a file name may hold any byte but '/' and NUL)
with surrogate escapes, and a forged agent or code interpreter may send any lone surrogate (JSON
"\\udcff"). Relayed as they are, either failed the answer's encoding: a 500 and a traceback.
Their bad bytes become U+FFFD here; text that is already UTF-8 passes unchanged.
"""

from __future__ import annotations

from typing import Any


def utf8(text: str) -> str:
    """`text` as UTF-8 can hold it."""
    if text.isascii():
        return text
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no byte stands for: only a forged agent sends one
        raw = text.encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def utf8_json(value: Any) -> Any:
    """`value` (what json.loads makes) with every string in it, keys included, as `utf8` makes it."""
    if isinstance(value, str):
        return utf8(value)
    if isinstance(value, dict):
        return {utf8(k): utf8_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [utf8_json(v) for v in value]
    return value
