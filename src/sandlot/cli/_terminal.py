"""A sandbox's output on the operator's terminal: escape sequences it was not asked to send are dropped.

A terminal obeys what it is sent: OSC 52 writes the operator's clipboard, OSC 8 makes links that
show one address and open another, a title or status report (DSR `ESC[6n`, `ESC[21t`) is answered
by typing into the operator's next prompt. Hostile sandboxes must not drive it, so output bound for
a terminal keeps only text (with tab, newline, carriage return, backspace) and the CSI sequences
that colour or move within what is shown: SGR (`m`), erase in line (`K`), cursor up/down/forward/
back/column (`A`-`D`, `G`), which progress bars use. Everything else is dropped: OSC, DCS, SOS,
PM and APC strings, other CSI (modes, reports, window operations), other escapes (charset
switches, resets), other C0 controls and all C1 controls. Piped output is not filtered (a pipe
gets the bytes as they are); `--raw` turns the filter off for a terminal too.
"""

from __future__ import annotations

import codecs
import re

_TOKEN = re.compile(
    r"(?P<keep>\x1b\[[0-9;:]*[A-DGKm])"       # CSI that colours or moves within the line: kept
    r"|\x1b\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]"  # any other CSI
    r"|\x1b[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC, DCS, SOS, PM, APC (ended by BEL, ST or the next ESC)
    r"|\x1b[\x20-\x2f]*[\x30-\x7e]"           # any other escape sequence
    r"|[\x00-\x07\x0b\x0c\x0e-\x1f\x7f-\x9f]"  # other C0 controls (a lone ESC too), DEL, C1 controls
)
# An escape sequence that may be cut off at the end of a chunk: held back until the next one
_PARTIAL = re.compile(r"\x1b(?:\[[\x30-\x3f]*[\x20-\x2f]*|[\]PX^_][^\x07\x1b]*\x1b?|[\x20-\x2f]*)\Z")
MAX_PENDING = 4096  # an unended string longer than this is dropped; what follows shows as text


def _keep(match: re.Match) -> str:
    return match.group("keep") or ""


def sanitize(text: str) -> str:
    """`text` with only the harmless escape sequences left (see the module doc)."""
    return _TOKEN.sub(_keep, text)


class TerminalFilter:
    """Filters a byte stream chunk by chunk; sequences split across chunks are seen whole."""

    def __init__(self):
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = ""

    def feed(self, data: bytes, final: bool = False) -> bytes:
        text = self._pending + self._decoder.decode(data, final)
        partial = None if final else _PARTIAL.search(text)
        if partial is not None:
            self._pending = text[partial.start():]
            text = text[:partial.start()]
            if len(self._pending) > MAX_PENDING:
                self._pending = ""
        else:
            self._pending = ""
        return sanitize(text).encode()
