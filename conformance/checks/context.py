"""What a check sees: the probe, the exchanges it produced (by role), and the target."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conformance.exchange import Exchange
from conformance.failures import NotApplicable
from conformance.target import Target

if TYPE_CHECKING:
    from conformance.probes import Probe


class ReadExchanges(Mapping[str, Exchange]):
    """A probe's exchanges by role, remembering the one a check read last: that is the one a report shows."""

    __slots__ = ("_data", "last_read")

    def __init__(self, data: Mapping[str, Exchange]) -> None:
        self._data = dict(data)
        self.last_read: Exchange | None = None

    def __getitem__(self, role: str) -> Exchange:
        exchange = self._data[role]
        self.last_read = exchange
        return exchange

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@dataclass(frozen=True, slots=True)
class CheckContext:
    """The evidence a check judges; checks never do I/O."""

    probe: Probe
    exchanges: Mapping[str, Exchange]
    target: Target
    # What steps that are not plain HTTP produced, e.g. an official SDK's outcome, by step role.
    observations: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exchange(self) -> Exchange:
        """The probe's first exchange."""
        if not self.exchanges:
            raise NotApplicable("the probe sent no request")
        return next(iter(self.exchanges.values()))

    def get(self, role: str) -> Exchange:
        """The exchange of one step; NotApplicable when that step was not sent."""
        try:
            return self.exchanges[role]
        except KeyError:
            raise NotApplicable(f"step {role!r} was not sent") from None

    def expect(self, key: str, default: Any = None) -> Any:
        """What the probe expects (text, stop reason, statuses...)."""
        return self.probe.expect.get(key, default)
