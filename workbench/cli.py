"""The error boundary of the command-line entry points (main.py, plot.py).

An unexpected error ends with one line on stderr and exit code 2, a Ctrl-C with a message and
130; the traceback shows only with ``--debug`` or the environment variable ``WORKBENCH_DEBUG=1``.
Imports nothing heavy: the entry points use it before torch is loaded.
"""
from __future__ import annotations

import os
import sys
from typing import Callable

DEBUG_VARIABLE = "WORKBENCH_DEBUG"


def debugging(flag: bool) -> bool:
    return flag or os.environ.get(DEBUG_VARIABLE, "") not in ("", "0")


def guarded(run: Callable[[], int], *, debug: bool, command: str, interrupted: str) -> int:
    """``run()``'s exit code; an exception becomes a message naming ``command``'s --debug."""
    try:
        return run()
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  no traceback for users unless asked
        if debugging(debug):
            raise
        print(f"error: {type(exc).__name__}: {exc}\n({command} --debug, or {DEBUG_VARIABLE}=1, shows the traceback)",
              file=sys.stderr)
        return 2
