"""The example project's test, run by a qa phase (``phasewise demo --qa``): ``python -m unittest``."""

import unittest

from inventory import Item
from orders import reserve


class ReserveTest(unittest.TestCase):
    def test_reserve_takes_from_stock(self) -> None:
        items = [Item("a-1", "Anvil", 3, 10.0)]
        self.assertEqual(reserve(items, "a-1", 2).quantity, 1)


if __name__ == "__main__":
    unittest.main()
