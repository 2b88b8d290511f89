"""User-facing errors: one line that names the problem and the fix, never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn


class UserError(Exception):
    """Bad input or an environment problem the user can fix; its message is the whole answer."""


def run_tool(prog: str, body: Callable[[], int | None]) -> NoReturn:
    """The tools' one exit rule: 0 done; 1 a check that did not pass; 2 bad input, said in one
    line `prog: error: ...` (argparse's own usage errors exit 2 as well); 130 interrupted."""
    try:
        code = body()
    except UserError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code or 0)
