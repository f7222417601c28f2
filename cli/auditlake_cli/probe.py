"""One cheap request to a vendor with a secret's values, as a collector would make it: how `secret set` and
`doctor` learn that the vendor accepts a token, before anything is stored or trusted."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import requests

from auditlake.deadline import Deadline
from auditlake.http import HttpClient
from auditlake.vendor import VendorAdapter, Window
from auditlake_vendors import adapter


def build_adapter(vendor: str, secret: dict[str, str], *, seconds: float = 60.0,
                  max_attempts: int = 2) -> VendorAdapter:
    """The vendor's adapter on the engine's HTTP client, as a collector builds it, for a short interactive use."""
    cls = adapter(vendor)
    started = time.monotonic()

    def remaining_ms() -> int:
        return int((seconds - (time.monotonic() - started)) * 1000)

    http = HttpClient(vendor, cls.base_url(secret), headers=cls.auth_headers(secret),
                      error_details=cls.error_details, deadline=Deadline(remaining_ms, timedelta(0)),
                      timeout=min(15.0, seconds), max_attempts=max_attempts, secrets=secret.values(),
                      session=requests.Session(), lacks_audit_logs=cls.lacks_audit_logs,
                      audit_log_requirement=cls.audit_log_requirement)
    return cls(secret, http, 100)


def probe_vendor(vendor: str, secret: dict[str, str]) -> None:
    """One cheap request with a parsed secret, as a collector would make it: one page of a one-minute window of
    the first stream. Raises the adapter's error (AuditLogsUnavailable for a plan without audit logs)."""
    vendor_adapter = build_adapter(vendor, secret)
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    vendor_adapter.fetch_page(vendor_adapter.streams()[0], Window(end - timedelta(minutes=1), end), None)

