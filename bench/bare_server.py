"""A bare pygls server: the floor the bench compares Phasewise against.

It does what any pygls server does (answers ``initialize``, keeps open documents) and one thing
more, ``bare.relay``: stream a chat completion from a base URL with the official ``openai`` SDK
and send each piece of text to the client as a ``bare/streamText`` notification, with no
routing, settings, progress or prompts. The time to its first notification is what any Python
LSP relay pays (two pipe hops, JSON-RPC, pygls), the floor under Phasewise's own.
``--import-sdks`` imports both provider SDKs at start, the memory floor of any server using them.
"""

from __future__ import annotations

import sys
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

server = LanguageServer("bare", "0.0.0")
_clients: dict[str, Any] = {}


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
    pass


@server.command("bare.relay")
async def relay(ls: LanguageServer, *args: Any) -> dict[str, int]:
    arg = args[0]
    client = _clients.get(arg["baseUrl"])
    if client is None:
        import httpx2
        from openai import AsyncOpenAI

        http = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=200, max_keepalive_connections=50),
                                  timeout=httpx2.Timeout(connect=10.0, read=None, write=30.0, pool=30.0))
        client = _clients[arg["baseUrl"]] = AsyncOpenAI(api_key=arg["key"], base_url=arg["baseUrl"],
                                                        http_client=http, max_retries=0)
    chars = 0
    stream = await client.chat.completions.create(**arg["body"])
    try:
        async for chunk in stream:
            for choice in chunk.choices or ():
                if choice.delta is not None and choice.delta.content:
                    chars += len(choice.delta.content)
                    ls.protocol.notify("bare/streamText", {"text": choice.delta.content})
    finally:
        await stream.close()
    return {"chars": chars}


if __name__ == "__main__":
    if "--import-sdks" in sys.argv:
        import anthropic  # noqa: F401
        import openai  # noqa: F401
    server.start_io()
