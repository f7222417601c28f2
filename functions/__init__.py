"""The vendors auditlake collects, one line each: the directory of each collector function, which holds its adapter
(`<vendor>_collector.py`) and its Lambda entry point (`<vendor>_lambda.py`).

Installed, this directory is the package `auditlake_vendors` (see pyproject.toml), so the operator's tool and the
local world find every adapter here; a Lambda function holds only its own directory and imports its adapter as a
top-level module. Everything per vendor (the template's resources, the command line's choices, the tests' vendor
lists) is derived from these adapters; "Adding a vendor" in the README says what else a new one needs.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from auditlake.vendor import VendorAdapter

VENDORS: tuple[str, ...] = (
    "asana",
    "ashby",
    "clickup",
    "make",
)


@cache
def adapter(vendor: str) -> type[VendorAdapter]:
    """The vendor's adapter class: the one class of its `<vendor>_collector` module whose `vendor` is `vendor`."""
    from auditlake.vendor import VendorAdapter  # noqa: PLC0415 - only what is asked for is imported

    if vendor not in VENDORS:
        raise LookupError(f"no vendor named {vendor!r}; auditlake collects {', '.join(VENDORS)}")
    module = importlib.import_module(f"{__name__}.{vendor}.{vendor}_collector")
    for candidate in vars(module).values():
        if isinstance(candidate, type) and issubclass(candidate, VendorAdapter) \
                and getattr(candidate, "vendor", None) == vendor:
            return candidate
    raise LookupError(f"{module.__name__} defines no adapter whose vendor is {vendor!r}")


def adapters() -> dict[str, type[VendorAdapter]]:
    """Every vendor's adapter, in the order above."""
    return {vendor: adapter(vendor) for vendor in VENDORS}
