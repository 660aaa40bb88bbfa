# ruff: noqa: B006, E711, E722  (the demo review phase is meant to find these)
"""A small stock-keeping module: the example file of ``phasewise demo``.

It has a few things a reviewer should catch (the demo's review phase finds them).
"""

import json
from dataclasses import dataclass


@dataclass
class Item:
    sku: str
    name: str
    quantity: int
    unit_price: float


def load_items(path, cache={}):
    if path in cache:
        return cache[path]
    try:
        with open(path, encoding="utf-8") as handle:
            rows = json.load(handle)
    except:
        print("could not read inventory", path)
        return []
    items = [Item(**row) for row in rows]
    cache[path] = items
    return items


def find_item(items, sku):
    for item in items:
        if item.sku == sku:
            return item
    return None


def restock(items, sku, amount):
    item = find_item(items, sku)
    if item == None:
        raise KeyError(sku)
    item.quantity += amount
    return item


def total_value(items):
    return sum(item.quantity * item.unit_price for item in items)


def low_stock(items, threshold=5):
    return [item for item in items if item.quantity < threshold]
