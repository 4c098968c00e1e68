"""The one exception type for bad user input.

Every stage raises :class:`InputError` when the user's data, sample sheet, config or marker file is
wrong, with a message that names the offending file, sample, column or key. The workflow prints it
as one line on the console (``sscsig: error: ...``): at start-up for what can be checked before any
job runs (config, sheet, file headers), from the job's script otherwise (the traceback goes to the
rule's log). Anything else that goes wrong is a bug and keeps its traceback.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the message names the offending file, sample, column or key."""


__all__ = ["InputError"]
