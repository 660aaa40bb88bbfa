"""The language server, the only server code that knows LSP: handlers hand off at once to one
feature class each (``features``, wired by ``setup``) and answer in lsprotocol types.

May import ``workflows`` and every layer below it; never ``cli`` or ``sim``.
"""
