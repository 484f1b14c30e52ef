"""The one error a user fixes by editing a config or a file, and the hint that names the fix.

Imports nothing of the workbench, so every module (the registries, the config, the executors, a
family's adapter) can raise it without an import circle.
"""
from __future__ import annotations

import difflib


class ConfigError(ValueError):
    """A config, override, name or input file the workbench cannot use; the message says how to fix it."""


def closest_hint(name: str, candidates) -> str:
    """' Did you mean X?' when a candidate is close to ``name``, else ''."""
    match = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return f" Did you mean {match[0]!r}?" if match else ""
