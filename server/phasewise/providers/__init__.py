"""The providers: the catalogue of what each serves, the classifier of their failures and the waits
it reads, and one adapter per wire protocol (OpenAI, Anthropic) over the official SDKs.

May import ``gate``, ``problems`` and ``serial``; knows nothing of phases, routes or settings.
"""
