"""The filter between a sandbox's output and the operator's terminal (cli/_terminal.py), on its own."""

from __future__ import annotations

import pytest

from sandlot.cli._terminal import MAX_PENDING, TerminalFilter, sanitize

KEPT = ["plain text", "tab\tnew\nline\r\n", "back\bspace", "\x1b[31mred\x1b[0m", "\x1b[1;38;5;208mbold\x1b[m",
        "\x1b[38:2:1:2:3mrgb", "50%\x1b[K\r", "\x1b[2A\x1b[3B\x1b[C\x1b[4D\x1b[10G", "ünïcødé ✓"]
DROPPED = [
    "\x1b]52;c;aGFja2Vk\x07",              # clipboard write
    "\x1b]52;c;aGFja2Vk\x1b\\",            # the same, ended by ST
    "\x1b]0;title\x07", "\x1b]2;title\x1b\\",  # window title
    "\x1b]8;;http://evil\x1b\\",           # hyperlink
    "\x1bP$q m\x1b\\", "\x1b_apc\x1b\\", "\x1b^pm\x1b\\", "\x1bXsos\x1b\\",  # DCS, APC, PM, SOS strings
    "\x1b[6n", "\x1b[c", "\x1b[>c", "\x1b[21t", "\x1b[8;1;1t",  # reports, window operations
    "\x1b[?1049h", "\x1b[?25l", "\x1b[2J", "\x1b[H", "\x1b[5i",  # modes, screen, printer
    "\x1bc", "\x1b(0", "\x1b=", "\x1b7",  # reset, charsets, keypad, cursor save
    "\x00", "\x07", "\x0e", "\x7f", "\x9b", "\x9d", "\x9c",  # C0 (BEL, SO), DEL, C1 (CSI, OSC, ST)
]


@pytest.mark.parametrize("text", KEPT)
def test_text_and_colours_pass(text):
    assert sanitize(text) == text


@pytest.mark.parametrize("sequence", DROPPED)
def test_other_sequences_are_dropped(sequence):
    assert sanitize(f"a{sequence}b") == "ab"


def test_c1_introducers_are_dropped_and_what_follows_is_text():
    assert sanitize("a\x9b6n\x9d52;c;x\x9cb") == "a6n52;c;xb"


@pytest.mark.parametrize("sequence", DROPPED[:12] + KEPT[3:6])
def test_sequences_split_across_chunks(sequence):
    data = f"x{sequence}y".encode()
    for size in (1, 2, 3, 5):
        screen = TerminalFilter()
        out = b"".join(screen.feed(data[i:i + size]) for i in range(0, len(data), size)) + screen.feed(b"", final=True)
        assert out == sanitize(f"x{sequence}y").encode(), (sequence, size)


def test_an_unended_string_is_dropped_not_held_forever():
    screen = TerminalFilter()
    assert screen.feed(b"a\x1b]52;c;") == b"a"
    assert screen.feed(b"A" * MAX_PENDING) == b""  # past the bound: dropped, the rest shows as text
    assert screen.feed(b"BB\n") == b"BB\n"
    assert screen.feed(b"\x1b[3") == b"" and screen.feed(b"1mc", final=True) == b"\x1b[31mc"
    assert TerminalFilter().feed(b"end\x1b", final=True) == b"end"
