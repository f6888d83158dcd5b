"""Names read from an untrusted file: how messages show them, which are refused.

A tensor name comes from the file, so a message must not print it raw: an
ANSI escape sequence in it would reach the terminal (colouring, moving
the cursor, or printing a fake "OK" over the real message), and a bidi
override could reorder what is read. Every message that echoes a name
from a file, or a key of a state dict, shows it through `quote`. Names
that are not valid Unicode (a lone surrogate such as `\\ud800`, which a
JSON escape or a pickle can carry) are refused by `check_name`: no file
name, `.npz` member or HDF5 key can hold them, so they would only fail
later, in a library's words.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")


def quote(name) -> str:
    """`name` quoted for a message, every non-printable character escaped.

    Python's `repr`: printable characters (accented letters, CJK) stay as
    they are; control characters (the ESC of ANSI sequences, newlines),
    format characters (bidi overrides, zero-width spaces) and lone
    surrogates become `\\x1b`, `\\n`, `\\u202e`, `\\ud800`.

    Args:
        name: a name from a file or a state dict (any object: a non-str
            key is shown by its `repr` too).

    Returns:
        The quoted name, e.g. `'conv1.weight'` or `'\\x1b[32mOK'`.

    Example:

    >>> quote("fc.weight\\x1b[2K")
    "'fc.weight\\\\x1b[2K'"
    """
    try:
        return repr(name)
    except Exception:  # a key whose repr fails: say what it is instead
        return f"<a {type(name).__name__}>"


def name_problem(name: str) -> str | None:
    """Why a tensor name cannot be used, or None if it can.

    Args:
        name: a str read from a file.

    Returns:
        None, or a sentence naming the name (quoted) and its problem.

    Example:

    >>> name_problem("conv1.weight") is None
    True
    >>> name_problem("\\ud800")
    "tensor name '\\\\ud800' is not valid Unicode (a lone surrogate)"
    """
    if not name.isascii() and _SURROGATE.search(name):
        return f"tensor name {quote(name)} is not valid Unicode (a lone surrogate)"
    return None
