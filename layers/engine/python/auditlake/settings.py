"""Settings from the function's environment (the template sets every one; defaults are documented in the README)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from auditlake.errors import ConfigError
from auditlake.state import check_account


@dataclass(frozen=True)
class Settings:
    state_table: str
    archive_bucket: str
    kms_key_arn: str
    secret_id: str
    digest_signing_key_arn: str  # the asymmetric KMS key that signs the streams' digests
    lag: timedelta = timedelta(seconds=120)
    overlap: timedelta = timedelta(seconds=600)
    initial_lookback: timedelta = timedelta(days=90)
    page_size: int = 100
    deadline_margin: timedelta = timedelta(seconds=60)
    max_object_events: int = 10_000
    http_timeout: float = 30.0
    http_max_attempts: int = 5
    secret_max_age: int = 300
    # Overrides the vendor's documented limit (a token or organization shared with other integrations, a lower
    # plan); None: the adapter's.
    rate_limit_per_minute: int | None = None
    # How many slices of a window are read at once (slicing.py); None: as many as the rate limit leaves room for.
    fetch_concurrency: int | None = None
    # Reconciliation (reconcile.py): how far back each one re-reads, how often one begins (0: never on schedule),
    # and the share of the vendor's rate limit it may use, so it never starves the live collection.
    reconcile_span: timedelta = timedelta(days=7)
    reconcile_every: timedelta = timedelta(hours=24)
    reconcile_rate_percent: float = 20.0
    # The vendor's named accounts (its default account is SECRET_ID's), each with its secret at
    # `account_secret_prefix + name`.
    accounts: tuple[str, ...] = ()
    account_secret_prefix: str = ""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def required(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise ConfigError(f"environment variable {name} is not set")
            return value

        def number(name: str, default: float, minimum: float) -> float:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"environment variable {name} must be a number, got {raw!r}") from None
            if value < minimum:
                raise ConfigError(f"environment variable {name} must be at least {minimum:g}, got {raw!r}")
            return value

        d = cls.__dataclass_fields__
        accounts = account_names(environ.get("ACCOUNTS", ""))
        prefix = environ.get("ACCOUNT_SECRET_PREFIX", "").strip()
        if accounts and not prefix:
            raise ConfigError("environment variable ACCOUNT_SECRET_PREFIX is not set, and ACCOUNTS names accounts "
                              "whose secrets are found under it")
        if number("RECONCILE_RATE_PERCENT", 0, 0) > 100:
            raise ConfigError("environment variable RECONCILE_RATE_PERCENT is a share of the rate limit: at most 100")
        return cls(
            state_table=required("STATE_TABLE"),
            archive_bucket=required("ARCHIVE_BUCKET"),
            kms_key_arn=required("ARCHIVE_KMS_KEY_ARN"),
            secret_id=required("SECRET_ID"),
            digest_signing_key_arn=required("DIGEST_SIGNING_KEY_ARN"),
            lag=timedelta(seconds=number("LAG_SECONDS", d["lag"].default.total_seconds(), 0)),
            overlap=timedelta(seconds=number("OVERLAP_SECONDS", d["overlap"].default.total_seconds(), 0)),
            initial_lookback=timedelta(days=number("INITIAL_LOOKBACK_DAYS", d["initial_lookback"].default.days, 0)),
            page_size=int(number("PAGE_SIZE", d["page_size"].default, 1)),
            deadline_margin=timedelta(
                seconds=number("DEADLINE_MARGIN_SECONDS", d["deadline_margin"].default.total_seconds(), 1)),
            max_object_events=int(number("MAX_OBJECT_EVENTS", d["max_object_events"].default, 1)),
            http_timeout=number("HTTP_TIMEOUT_SECONDS", d["http_timeout"].default, 1),
            http_max_attempts=int(number("HTTP_MAX_ATTEMPTS", d["http_max_attempts"].default, 1)),
            secret_max_age=int(number("SECRET_MAX_AGE_SECONDS", d["secret_max_age"].default, 0)),
            # Unset (0 here) leaves the adapter's documented limit.
            rate_limit_per_minute=int(number("RATE_LIMIT_PER_MINUTE", 0, 1)) or None,
            fetch_concurrency=int(number("FETCH_CONCURRENCY", 0, 0)) or None,
            reconcile_span=timedelta(days=number("RECONCILE_SPAN_DAYS", d["reconcile_span"].default.days, 1)),
            reconcile_every=timedelta(hours=number(
                "RECONCILE_INTERVAL_HOURS", d["reconcile_every"].default.total_seconds() / 3600, 0)),
            reconcile_rate_percent=number("RECONCILE_RATE_PERCENT", d["reconcile_rate_percent"].default, 1),
            accounts=accounts,
            account_secret_prefix=prefix,
        )


def account_names(raw: str) -> tuple[str, ...]:
    """ACCOUNTS: comma-separated account names (the template's `<Title>Accounts`), each named once; ConfigError
    naming the first that is not a name."""
    names = tuple(name.strip() for name in raw.split(",")) if raw.strip() else ()
    for name in names:
        try:
            check_account(name)
        except ValueError as exc:
            raise ConfigError(f"environment variable ACCOUNTS: {exc}") from None
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ConfigError(f"environment variable ACCOUNTS names {', '.join(repeated)} more than once")
    return names
