"""The engine's errors. Messages name the vendor and what is wrong, never a token."""

from __future__ import annotations


class AuditlakeError(Exception):
    """Base class: a run that raises one of these could not finish what it owes."""


class ConfigError(AuditlakeError):
    """A missing or invalid environment variable."""


class SecretError(AuditlakeError):
    """The vendor's secret is missing, not JSON, lacks a field, or still holds the placeholder."""


class VendorError(AuditlakeError):
    """The vendor answered with an error (or an unusable body) we must not paper over."""

    def __init__(self, vendor: str, message: str, *, status: int | None = None, code: str | None = None,
                 retryable: bool = False) -> None:
        self.vendor = vendor
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable
        parts = [f"{vendor} API"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code:
            parts.append(f"[{code}]")
        super().__init__(" ".join(parts) + f": {message}")


class AuditLogsUnavailable(VendorError):
    """The account cannot read audit logs: its plan lacks them, or the feature or permission is off. Nothing is
    collected until an administrator changes that; the message says what the vendor requires."""

    def __init__(self, vendor: str, message: str, *, requirement: str, status: int | None = None,
                 code: str | None = None) -> None:
        super().__init__(vendor, f"audit logs are not available to this account: {message} ({requirement})",
                         status=status, code=code)


class MalformedResponse(VendorError):
    """The vendor's response does not have the documented shape."""

    def __init__(self, vendor: str, message: str, *, status: int | None = None) -> None:
        super().__init__(vendor, message, status=status, code="malformed_response", retryable=False)


class CursorExpired(AuditlakeError):
    """The vendor no longer accepts the stored paging cursor; the engine narrows the window and restarts it."""


class DeadlineReached(AuditlakeError):
    """Not enough Lambda time is left to fetch more; the engine commits what it has and stops."""


class StreamBusy(AuditlakeError):
    """Another run holds this stream's lease."""


class LeaseLost(AuditlakeError):
    """The state item changed under us (lease taken over or version moved): stop without writing more."""


class ArchiveConflict(AuditlakeError):
    """An object we were about to write already exists: a previous run's write we did not know about."""
