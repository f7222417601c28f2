"""Local stand-ins for the vendors' audit-log APIs, faithful to their documented behaviour, with fault injection.

`base` holds the vendor-independent plumbing (requests, responses, fault plans, the `requests` adapter and the
loopback HTTP server); each vendor module holds one simulator written to read like that vendor's docs.
"""

from auditlake_local.simulators.asana import AsanaSimulator, generate_events
from auditlake_local.simulators.base import (
    Fault,
    FaultPlan,
    Latency,
    RequestRecord,
    SimRequest,
    SimResponse,
    SimulatedNetworkError,
    SimulatorAdapter,
    VendorSimulator,
    serve,
)

__all__ = [
    "AsanaSimulator",
    "Fault",
    "FaultPlan",
    "Latency",
    "RequestRecord",
    "SimRequest",
    "SimResponse",
    "SimulatedNetworkError",
    "SimulatorAdapter",
    "VendorSimulator",
    "generate_events",
    "serve",
]
