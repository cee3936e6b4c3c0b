"""``%llmscript session [status|reset]``: this kernel's ``--session``, seen and ended.

The sessions themselves are the sandbox's (``_sandbox/sessions.py``, light to
import: no engine client); this is the notebook's word on them, one line each.
"""

from __future__ import annotations

from IPython.core.error import UsageError

USAGE = "Usage: %llmscript session [status] | %llmscript session reset"


def session_command(words: list[str]) -> str:
    """The one line for ``%llmscript session`` + words; UsageError for anything else."""
    if words not in ([], ["status"], ["reset"]):
        raise UsageError(USAGE)
    from .._sandbox import sessions

    return sessions.reset() if words == ["reset"] else sessions.status()
