"""How each vendor is stood up locally: its simulator, its account, and the secret that points its collector at
the simulator. The demo, the benchmark and the tests all start vendors from here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from auditlake_local.simulators import VendorSimulator, asana

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LocalVendor:
    vendor: str
    function_id: str  # the collector's logical id in template.yaml
    token: str  # the simulator's own token, not a credential
    scope: dict[str, str]  # the secret's other fields
    api_path: str  # the API's base path on the vendor's host
    simulator: Callable[[LocalVendor, Clock], VendorSimulator]
    generate_events: Callable[..., list[dict[str, Any]]]

    def start(self, now: Clock = _utc_now) -> VendorSimulator:
        return self.simulator(self, now)

    def secret(self, origin: str) -> dict[str, str]:
        """The secret an operator would store, with `base_url` pointing at a simulator served from `origin`."""
        return {"token": self.token, **self.scope, "base_url": f"{origin.rstrip('/')}{self.api_path}"}


VENDORS: dict[str, LocalVendor] = {
    "asana": LocalVendor(
        vendor="asana", function_id="AsanaCollector", token="asana-sa-token-4f1d0c9e7b2a",  # noqa: S106
        scope={"workspace_gid": "1200000000000001"}, api_path="/api/1.0",
        simulator=lambda v, now: asana.AsanaSimulator(token=v.token, workspace_gid=v.scope["workspace_gid"], now=now),
        generate_events=asana.generate_events,
    ),
}
