"""Test helpers shipped with cloudvolume-lite, for its own suite and for third-party stores.

Nothing here is imported by ``import cloudvolume_lite``; importing this package needs pytest.
A store written elsewhere (an entry-point scheme) proves it keeps the contract with::

    from cloudvolume_lite.testing import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self): ...
        def seed(self, store, key, data, content_encoding=None): ...
        def stored(self, store, key): ...
"""

from __future__ import annotations

from .store_contract import StoreContract, payload

__all__ = ["StoreContract", "payload"]
