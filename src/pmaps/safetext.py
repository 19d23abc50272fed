"""Text from the target (process names, paths, cgroup names, files' contents in error messages) made
safe to print on a terminal. No numpy: the CLI's error path uses it before anything else is imported."""
from __future__ import annotations

import re

# Process names, paths and cgroup names are anyone's text: on a terminal a control character
# (ESC starts a sequence that can move the cursor, retitle the window, rewrite what root reads)
# or a bidi override must not act. C0, DEL, C1 and the Unicode bidi controls are shown as \xNN
# or \uNNNN; everything printable is kept. A byte that is not UTF-8 (a path holding 0x9b, which
# some terminals take for CSI, or 0xff) arrives as a surrogate (decoded with surrogateescape) and
# would be written back raw: it is shown as the byte, \xNN. Any other lone surrogate (only a
# crafted file holds one: a JSON "\ud8ff") cannot be encoded at all: \uNNNN. (A backslash is
# kept: a name may read like an escape, but printable() stays idempotent: callers apply it twice.)
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
                          "\ud800-\udfff]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    if 0xDC80 <= c <= 0xDCFF:
        return f"\\x{c - 0xDC00:02x}"
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def printable(text: str) -> str:
    """`text` safe to print on a terminal: control characters escaped."""
    return _UNPRINTABLE.sub(_escape, text) if _UNPRINTABLE.search(text) else text


def unprintable(text: str) -> bool:
    """Whether printable() would change the text."""
    return _UNPRINTABLE.search(text) is not None


# A spreadsheet that opens a CSV file runs a cell starting with = + - @ (or a tab or CR) as a
# formula (OWASP, "CSV Injection"): `=HYPERLINK(...)` as a process name would run on a double
# click. Such text gets a leading apostrophe, which spreadsheets show as a text marker; a plain
# number ("-4096"), a maps perms field ("---p") or dashes alone are no formula and are left alone.
# JSON and Parquet keep the exact text.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[-+]?[0-9]+(?:\.[0-9]*)?(?:[eE][-+]?[0-9]+)?|[-r][-w][-x][-ps]|-+")


def csv_text(text: str) -> str:
    """`text` for a CSV cell: prefixed with ' when a spreadsheet would take it for a formula."""
    if text.startswith(_FORMULA_START) and _NUMBER.fullmatch(text) is None:
        return "'" + text
    return text
