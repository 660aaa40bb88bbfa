"""From settings to a provider: routes, keys, preflight, retries, cooldowns and fallbacks for one
request, whatever phase asked.

May import ``settings``, ``keystore``, ``providers``, ``gate``, ``problems`` and ``serial``; knows
nothing of phases or LSP.
"""
