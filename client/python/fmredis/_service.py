"""What LockManager, WakeSignaler and ExecutionCache share: a Client, given
or made, and closing the one they made."""

from __future__ import annotations

from typing import Self

from .client import Client


class Service:
    """Uses ``client``, or a Client() of its own (the socket from
    $FMREDISD_SOCKET, else the default) when none is given. close() and the
    end of a ``with`` block close only a Client it made itself: one given to
    it stays its owner's to close."""

    def __init__(self, client: Client | None) -> None:
        self._owns_client = client is None
        self.client: Client = Client() if client is None else client

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
