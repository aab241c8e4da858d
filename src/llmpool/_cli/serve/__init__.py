"""``llmpool serve``: the chat server (``llmpool.server``) from the command line.

Only re-exports; ``_command`` builds the subcommand, and imports the server and the
simulated provider when it runs.
"""

from ._command import COMMAND as COMMAND

__all__ = ["COMMAND"]
