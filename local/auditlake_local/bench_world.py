"""The benchmark's outside world, in a process of its own: one vendor's simulator on loopback and the stack on a
moto server, so that the collector process's CPU time and memory are the collector's alone.

Started by the benchmark with the vendor and the events to generate; prints one JSON line saying where everything
is (the function's environment, with the secret already pointing at the simulator), then answers commands on
stdin, one per line: `check` prints the archive compared with the simulator's ground truth; `stats` the simulator's
counters (requests, 429s, the most requests in flight at once); `quit` ends it. With `--latency`, every answer takes
the vendor's time to arrive; with `--enforce-limit`, the simulator answers past the limit with the vendor's 429.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import logging
import sys
from collections import Counter
from datetime import datetime
from typing import Any

import boto3

from auditlake_local.simulators import VendorSimulator, serve
from auditlake_local.simulators.base import Latency, gc_paused
from auditlake_local.stack import AWS_ENVIRONMENT, LocalStack
from auditlake_local.vendors import VENDORS, LocalVendor

SEED = 42


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vendor", choices=list(VENDORS), required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--start", type=datetime.fromisoformat, required=True)
    parser.add_argument("--end", type=datetime.fromisoformat, required=True)
    parser.add_argument("--latency", type=Latency.parse, default=None,
                        help="how long the vendor takes to answer, ms with an optional jitter: 250 or 250+-100")
    parser.add_argument("--enforce-limit", type=int, default=None, metavar="PER_MINUTE",
                        help="the rate limit the simulator enforces (default: none)")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server would log every request
    local = VENDORS[args.vendor]
    simulator = local.start()
    simulator.rate_limit_per_minute = args.enforce_limit
    with gc_paused():
        simulator.add_events(local.generate_events(args.events, args.start, args.end, SEED))
    with serve(simulator, latency=args.latency) as origin, LocalStack.serve() as stack:
        stack.put_secret(local.function_id, local.secret(origin))
        function = stack.functions[local.function_id]
        print(json.dumps({
            "function": local.function_id,
            "handler": function.handler,
            "code_dir": str(function.code_dir),
            "layer_dirs": [str(path) for path in function.layer_dirs],
            "environment": {**function.environment, **AWS_ENVIRONMENT, "AWS_ENDPOINT_URL": stack.endpoint},
        }), flush=True)
        for line in sys.stdin:
            if line.strip() == "check":
                print(json.dumps(check(stack, local, simulator)), flush=True)
            elif line.strip() == "stats":
                print(json.dumps(simulator.stats()), flush=True)
            elif line.strip() == "quit":
                break


def check(stack: LocalStack, local: LocalVendor, simulator: VendorSimulator) -> dict[str, Any]:
    """The archive against the simulator's ground truth, compared by the events' content (the `raw` column), and
    how many events each stream archived (the minimum number of requests follows from those)."""
    s3 = boto3.client("s3")
    archived: Counter[bytes] = Counter()
    per_stream: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.bucket,
                                                               Prefix=f"events/vendor={local.vendor}/"):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=stack.bucket, Key=item["Key"])["Body"].read()
            for line in gzip.decompress(body).splitlines():
                record = json.loads(line)
                archived[_fingerprint(json.loads(record["raw"]))] += 1
                per_stream[record["stream"]] += 1
    truth = Counter(_fingerprint(event) for event in simulator.ground_truth().values())
    return {"archived": sum(archived.values()), "missing": sum((truth - archived).values()),
            "duplicates": sum((archived - truth).values()), "per_stream": dict(per_stream)}


def _fingerprint(event: Any) -> bytes:
    return hashlib.sha1(json.dumps(event, sort_keys=True, separators=(",", ":")).encode(), usedforsecurity=False) \
        .digest()


if __name__ == "__main__":
    main()
