"""``llmpool chat``: a terminal client of ``llmpool serve``'s chat WebSocket (docs/cli.md).

This package only re-exports. Imports point one way (each module imports only those above
it); websockets, prompt_toolkit and rich are imported when the chat runs:

    _escape       control characters in server text, escaped (no terminal injection)
    _input        typed lines to messages and commands; what Ctrl-C does
    _options      ChatOptions; the socket and HTTP URLs of a server
    _policy       reconnect or not, per close code; backoff with jitter (tenacity)
    _render       server frames to items: answer text, notes, resumes; seq bookkeeping
    _typewriter   items to the screen at a typing pace, decoupled from the socket
    _screen       the screens: plain stdout, or above a prompt_toolkit prompt
    _lines        typed lines: a prompt_toolkit prompt, or plain stdin
    _stats        /stats: the server's metrics as a rich table
    _connection   the socket: resume, read, write, reconnect (websockets' asyncio client)
    _app          the chat: the prompt loop and its tasks
    _command      the subcommand: its options -> ChatOptions -> the chat

The pure modules (``_escape`` to ``_typewriter``) are tested without a socket or a terminal;
``tests/cli/chat/test_pty.py`` drives the whole client in a pseudo-terminal against a real
``llmpool serve``.
"""

from ._command import COMMAND as COMMAND

__all__ = ["COMMAND"]
