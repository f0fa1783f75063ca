"""ExecutionCache: the execution cache of @flowmonkey/redis's
ExecutionCache, through fmredisd."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ._service import Service
from .client import Client

__all__ = ["ExecutionCache"]


class ExecutionCache(Service):
    """Executions (JSON objects with a string "id") cached by id.

    ``default_ttl``: ms an entry lives when set() is given no ttl (None:
    the daemon's cache_ttl_ms, 60000 by default).

    The daemon stores and returns the exact JSON text; what a value looks
    like here depends on the Client's parsing: integers are exact, and
    numbers with a fraction or exponent are floats unless the Client was
    made with ``parse_float=decimal.Decimal``. Decimals are sent with their
    own digits.
    """

    def __init__(self, client: Client | None = None, *, default_ttl: int | None = None) -> None:
        super().__init__(client)
        self.default_ttl = default_ttl

    def get(self, execution_id: str, *, fresh: bool = False) -> dict[str, Any] | None:
        """The execution, or None on a miss. fresh=True reads Redis rather
        than the daemon's near cache."""
        return self.client.cache_get(execution_id, fresh)

    def set(self, execution: Mapping[str, Any], ttl: int | None = None) -> None:
        """Stores execution under execution["id"], replacing what was there."""
        self.client.cache_set(execution, self.default_ttl if ttl is None else ttl)

    def invalidate(self, execution_id: str) -> None:
        """Removes the entry, if there is one."""
        self.client.cache_invalidate(execution_id)

    def invalidate_many(self, execution_ids: Iterable[str]) -> int:
        """Removes the entries; returns how many existed."""
        return self.client.cache_invalidate_many(execution_ids)

    def get_many(self, execution_ids: Iterable[str], *,
                 fresh: bool = False) -> dict[str, dict[str, Any]]:
        """{id: execution} of the ids that are cached; misses are left out."""
        return self.client.cache_get_many(execution_ids, fresh)
