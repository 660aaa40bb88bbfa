"""Orders against the stock of ``inventory``: the caller in ``phasewise demo``'s example project.

The demo renames ``inventory.find_item``; this file uses it, so the change spans both files.
"""

from inventory import Item, find_item, restock


def reserve(items: list[Item], sku: str, amount: int) -> Item:
    """Take ``amount`` of ``sku`` out of stock, or raise ``ValueError`` when there is not enough."""
    # TODO: reserve across several warehouses
    item = find_item(items, sku)
    if item is None or item.quantity < amount:
        raise ValueError(f"not enough {sku} in stock")
    item.quantity -= amount
    return item


def return_to_stock(items: list[Item], sku: str, amount: int) -> Item:
    """Put ``amount`` of ``sku`` back."""
    return restock(items, sku, amount)
