"""How each vendor is stood up locally: its simulator, its account, and the secret that points its collector at
the simulator. The demo, the benchmark, chaos and the tests all start vendors from here. `VENDORS` holds each vendor's
default account; `ACCOUNTS` the further accounts the demo runs beside it (a Make organization in another zone), each
with its own simulator, token and scope.

Everything else about a vendor (its name, secret fields, function) is its adapter's (`auditlake_vendors`); a vendor
of the registry without an entry here is still collected and operated on a deployed stack, only not simulated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any

import auditlake_vendors
from auditlake_local.simulators import VendorSimulator, asana, ashby, clickup, make

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class LocalVendor:
    vendor: str
    token: str  # the simulator's own token, not a credential
    scope: dict[str, str]  # the secret's other fields
    api_path: str  # the API's base path on the vendor's host
    simulator: Callable[..., VendorSimulator]  # (this vendor, its clock, **switches)
    generate_events: Callable[..., list[dict[str, Any]]]
    id_field: str  # the field of the simulator's events that holds the vendor's event id (the ground truth's key)
    account: str | None = None  # None: the vendor's default account (its first secret)

    @property
    def key(self) -> str:
        """`make`, or `make@us-subsidiary` for a named account: how stream keys spell it, and the workspace's name
        for this account's simulator and secret."""
        return self.vendor if self.account is None else f"{self.vendor}@{self.account}"

    @property
    def account_name(self) -> str:
        return self.account or "default"

    @property
    def function_id(self) -> str:
        """The collector's logical id in template.yaml."""
        return auditlake_vendors.adapter(self.vendor).function_id()

    def start(self, now: Clock = _utc_now, **switches: Any) -> VendorSimulator:
        """The vendor's simulator; `switches` are its constructor's keyword arguments (the quirks the vendor's docs
        allow, beyond the defaults)."""
        return self.simulator(self, now, **switches)

    def secret(self, origin: str) -> dict[str, str]:
        """The secret an operator would store, with `base_url` pointing at a simulator served from `origin`."""
        return {"token": self.token, **self.scope, "base_url": f"{origin.rstrip('/')}{self.api_path}"}


VENDORS: dict[str, LocalVendor] = {
    "asana": LocalVendor(
        vendor="asana", token="asana-sa-token-4f1d0c9e7b2a",  # noqa: S106
        scope={"workspace_gid": "1200000000000001"}, api_path="/api/1.0",
        simulator=lambda v, now, **switches: asana.AsanaSimulator(token=v.token, workspace_gid=v.scope["workspace_gid"],
                                                                  now=now, **switches),
        generate_events=asana.generate_events, id_field="gid",
    ),
    "ashby": LocalVendor(
        vendor="ashby", token="ashby-api-key-6c1e93f0b27d",  # noqa: S106
        scope={}, api_path="",
        simulator=lambda v, now, **switches: ashby.AshbySimulator(token=v.token, now=now, **switches),
        generate_events=ashby.generate_events, id_field="id",
    ),
    "clickup": LocalVendor(
        vendor="clickup", token="pk_4417_0Q3ZB8XKQ1T6Y9W2",  # noqa: S106
        scope={"workspace_id": "9015243187"}, api_path="/api/v3",
        simulator=lambda v, now, **switches: clickup.ClickUpSimulator(
            token=v.token, workspace_id=v.scope["workspace_id"], now=now, **switches),
        generate_events=clickup.generate_events, id_field="id",
    ),
    "make": LocalVendor(
        vendor="make", token="0f8c7e2a-5b1d-4c3e-9a6f-7d2e1b0c4a98",  # noqa: S106
        scope={"organization_id": str(make.DEFAULT_ORGANIZATION_ID), "zone": "eu1.make.com"}, api_path="/api/v2",
        simulator=lambda v, now, **switches: make.MakeSimulator(v.token, v.scope["organization_id"],
                                                                zone=v.scope["zone"], now=now, **switches),
        generate_events=make.generate_events, id_field="uuid",
    ),
}


# An acquisition's organization in another zone: its own org id, token and simulator (us1, where the default is eu1).
US_SUBSIDIARY_ORGANIZATION_ID = 5302

ACCOUNTS: dict[str, dict[str, LocalVendor]] = {
    "make": {
        "us-subsidiary": replace(
            VENDORS["make"], account="us-subsidiary", token="7c41d9e0-2f6a-4b8d-8e13-5a9f0c2d6b71",  # noqa: S106
            scope={"organization_id": str(US_SUBSIDIARY_ORGANIZATION_ID), "zone": "us1.make.com"},
            generate_events=partial(make.generate_events, organization_id=US_SUBSIDIARY_ORGANIZATION_ID)),
    },
}


def accounts_of(vendor: str) -> list[LocalVendor]:
    """The vendor's default account, then its named ones."""
    return [VENDORS[vendor], *ACCOUNTS.get(vendor, {}).values()]


def every_account() -> dict[str, LocalVendor]:
    """Every simulated account of every vendor, by key (`make`, `make@us-subsidiary`)."""
    return {local.key: local for vendor in VENDORS for local in accounts_of(vendor)}

