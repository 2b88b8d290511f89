"""User-facing errors: one line that names the problem and the fix, never a traceback."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or an environment problem the user can fix; its message is the whole answer."""
