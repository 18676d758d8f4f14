"""Text from jobs made safe to print on a terminal or in a line of a text log.

A job's description, arguments, result or exception message is written by
whoever enqueued or ran it. Printed as it is, an escape sequence in it can
clear the screen or retitle the terminal, and a newline can forge a log line.
:func:`printable` writes such characters as Python escapes (``\\x1b``,
``\\n``) instead: C0 and C1 control characters, DEL, the Unicode line and
paragraph separators, the bidirectional overrides that reorder what is shown,
and lone surrogates (which a terminal cannot even be sent).
"""

from __future__ import annotations

import re

#: C1 controls, DEL, line and paragraph separators, bidirectional overrides, surrogates
_OTHERS = "\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff"
_UNSAFE = re.compile(f"[\x00-\x1f{_OTHERS}]")
_UNSAFE_BUT_NEWLINES = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with the characters that act on a terminal or split a line escaped;
    ``keep_newlines`` for a block of several lines (a traceback)."""
    if text.isprintable():  # the common case, checked in C: none of them is printable
        return text
    return (_UNSAFE_BUT_NEWLINES if keep_newlines else _UNSAFE).sub(_escape, text)
