"""What a model's calls cost, priced from what is known of the model (``catalogue.ModelInfo``: the
catalogue's list prices, or the user's ``providers.<p>.models.<m>`` prices).

``cost`` prices one call's tokens (or a phase's, summed): uncached input at the input price, cache
reads and writes at their own prices (unknown: the input price), output at the output price.
``saving`` is what the provider's prompt cache saved against list input prices. ``input_tokens``
counts every prompt token, cached ones included (``base.Usage``).
May import: the catalogue only (nothing of phases, routes or settings).
"""

from __future__ import annotations

from phasewise.providers.catalogue import ModelInfo


def cost(info: ModelInfo, input_tokens: int, output_tokens: int, cache_read_tokens: int = 0,
         cache_write_tokens: int = 0) -> float | None:
    """The price in USD of these tokens; None when the model's input or output price is unknown."""
    if info.input_price_per_mtok is None or info.output_price_per_mtok is None:
        return None
    price_in = info.input_price_per_mtok
    read = min(max(0, cache_read_tokens), input_tokens)
    write = min(max(0, cache_write_tokens), input_tokens - read)
    read_price = info.cache_read_price_per_mtok if info.cache_read_price_per_mtok is not None else price_in
    write_price = info.cache_write_price_per_mtok if info.cache_write_price_per_mtok is not None else price_in
    billed_in = (input_tokens - read - write) * price_in + read * read_price + write * write_price
    return (billed_in + output_tokens * info.output_price_per_mtok) / 1e6


def saving(info: ModelInfo, input_tokens: int, output_tokens: int, cache_read_tokens: int,
           cache_write_tokens: int) -> float | None:
    """What the prompt cache saved on these tokens against list input prices (negative when a cache
    write cost more than it saved); None without cached tokens or without prices."""
    if not (cache_read_tokens or cache_write_tokens):
        return None
    cached = cost(info, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens)
    uncached = cost(info, input_tokens, output_tokens)
    return uncached - cached if uncached is not None and cached is not None else None
