"""WakeSignaler: the wake signals of @flowmonkey/redis's WakeSignaler,
through fmredisd. Its subscription is read by iterating, not by a
callback."""

from __future__ import annotations

import decimal
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from ._service import Service
from .client import Client, Event

__all__ = ["WakeSignaler", "Wake", "LinkEvent"]


@dataclass(frozen=True, slots=True)
class Wake:
    """A wake: run execution ``execution_id``. ``timestamp``: the
    publisher's clock in whole ms since the epoch, None when the payload
    had none (another publisher's bare id)."""

    execution_id: str
    channel: str
    timestamp: int | None


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """The daemon's link to Redis went "down" or came back "up". Wakes
    published in between may be lost: on "up", sweep your store for work
    that was due."""

    state: Literal["down", "up"]

    @property
    def up(self) -> bool:
        return self.state == "up"


def _whole_ms(v: Any) -> int | None:
    if isinstance(v, (int, float, decimal.Decimal)) and not isinstance(v, bool):
        return int(v)
    return None


class WakeSignaler(Service):
    """Wake signals on one channel (``channel``; None: the daemon's
    wake_channel, "fm:wake" by default).

    signal() and signal_many() publish. To receive, subscribe() and then
    iterate ``wakes()`` (or call ``receive()``): it yields a Wake for each
    wake, and a LinkEvent when the daemon's Redis link goes down and when it
    is back (sent only to subscribed connections).

    Wakes wait in the Client's event queue until read, in order; none is
    dropped. A Client shared with a LockManager or another WakeSignaler is
    fine: each takes only its own events from the queue (a LinkEvent goes
    to whichever WakeSignaler reads first).
    """

    def __init__(self, client: Client | None = None, *, channel: str | None = None) -> None:
        super().__init__(client)
        self.channel = channel
        self._subscribed: str | None = None

    def signal(self, execution_id: str) -> int:
        """Publishes a wake; returns how many Redis subscribers got it (one
        per daemon with subscribers, not one per worker)."""
        return self.client.wake_signal(execution_id, self.channel)

    def signal_many(self, execution_ids: Iterable[str]) -> int:
        """Publishes one wake per id; returns how many were published."""
        return self.client.wake_signal_many(execution_ids, self.channel)

    def subscribe(self, group: str | None = None) -> str:
        """Subscribes this connection; returns the channel. Every wake
        published after this returns is delivered. Subscribers of one daemon
        that share a ``group`` get each wake round-robin, one of them per
        wake; without a group, every wake. Subscribing again changes the
        group."""
        self._subscribed = self.client.wake_subscribe(self.channel, group)
        return self._subscribed

    def unsubscribe(self) -> None:
        """No more wakes come after this returns (those already queued
        stay readable)."""
        self.client.wake_unsubscribe(self.channel)

    def _mine(self, ev: Event) -> bool:
        return (ev.type == "wake" and ev.channel == self._subscribed
                and ev.execution_id is not None) or \
               (ev.type == "redis" and ev.state in ("down", "up"))

    def receive(self, timeout: float | None = None) -> Wake | LinkEvent | None:
        """The next wake or link event, or None when none came within
        timeout seconds (None: wait for ever, 0: only what has arrived)."""
        if self._subscribed is None:
            raise RuntimeError("WakeSignaler.receive(): subscribe() first")
        ev = self.client.next_event(timeout, self._mine)
        if ev is None:
            return None
        if ev.type == "redis":
            return LinkEvent("up" if ev.state == "up" else "down")
        return Wake(str(ev.execution_id), self._subscribed, _whole_ms(ev.timestamp))

    def wakes(self, timeout: float | None = None) -> Iterator[Wake | LinkEvent]:
        """Yields wakes and link events as they come, and ends once none
        came for timeout seconds (None: never ends):

            for ev in signaler.wakes(timeout=30):
                if isinstance(ev, LinkEvent):
                    if ev.up:
                        sweep()
                else:
                    run(ev.execution_id)
            sweep()                 # 30 s without a wake
        """
        while True:
            ev = self.receive(timeout)
            if ev is None:
                return
            yield ev
