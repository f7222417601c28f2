"""The stack's CloudWatch dashboard (CollectorDashboard in template.yaml), read as CloudWatch will: its body is the
JSON of "Dashboard Body Structure and Syntax" (Amazon CloudWatch API Reference) once CloudFormation has resolved
its `Fn::Sub`, and each graph names only metrics that exist: the collectors' own from PUBLISHED_METRICS (the one
table `_publish_metrics` publishes from), AWS's from the services' documented metrics and dimensions."""

from __future__ import annotations

import json
import re
from typing import Any

from test_template import ATTRS, REFS, REGION, RESOURCES, STACK, TEMPLATE, evaluate

from auditlake.lambda_handler import METRICS_NAMESPACE, PUBLISHED_METRICS
from auditlake_vendors import VENDORS, adapter

DASHBOARD = RESOURCES["CollectorDashboard"]


def body(**parameters: str) -> dict[str, Any]:
    """The dashboard's body as CloudFormation hands it to CloudWatch, with the parameters' defaults or these."""
    template, variables = DASHBOARD["Properties"]["DashboardBody"]["Fn::Sub"]
    variables = {name: evaluate(value, refs=parameters) for name, value in variables.items()}  # Fn::FindInMap
    return json.loads(evaluate({"Fn::Sub": [template, variables]}, refs=parameters))


BODY = body()
METRIC_WIDGETS = [w for w in BODY["widgets"] if w["type"] == "metric"]
COLLECTORS = {REFS[adapter(vendor).function_id()]: vendor for vendor in VENDORS}
DLQ = ATTRS["CollectorDeadLetterQueue", "QueueName"]

# AWS's metrics the dashboard may draw, with the one dimension each is drawn by: AWS/Lambda's per-function metrics
# (Lambda Developer Guide, "Types of metrics for Lambda functions": Errors, Throttles, Duration in milliseconds, by
# FunctionName) and SQS's queue depth (SQS Developer Guide, "Available CloudWatch metrics for Amazon SQS", by
# QueueName).
AWS_METRICS = {("AWS/Lambda", "Errors"): "FunctionName", ("AWS/Lambda", "Throttles"): "FunctionName",
               ("AWS/Lambda", "Duration"): "FunctionName",
               ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): "QueueName"}


def drawn(widget: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """A metric widget's metrics as (namespace, name, dimensions); an entry is [namespace, name, dimension name,
    value, ..., optional rendering options] (the body's "Metric Widget: Format for Each Metric in the Array")."""
    metrics = []
    for entry in widget["properties"]["metrics"]:
        if len(entry) == 1 and isinstance(entry[0], dict) and "expression" in entry[0]:
            metrics.append(searched(entry[0]))
            continue
        fields = entry[:-1] if isinstance(entry[-1], dict) else entry
        assert all(isinstance(field, str) for field in fields) and len(fields) % 2 == 0, entry
        namespace, name, *pairs = fields
        dimensions = dict(zip(pairs[::2], pairs[1::2], strict=True))
        assert len(dimensions) == len(pairs) // 2, f"a dimension named twice: {entry}"
        metrics.append((namespace, name, dimensions))
    return metrics


# CloudWatch User Guide, "CloudWatch search expression syntax": `SEARCH(' {Namespace, DimensionName...}
# SearchTerm ', 'Statistic', Period)`; the schema in braces matches only metrics with exactly those dimensions.
SEARCH = re.compile(r"""SEARCH\('\{(?P<schema>[^}]*)\} (?P<terms>[^']*)', '(?P<stat>\w+)', (?P<period>\d+)\)""")
TERM = re.compile(r'(\w+)="([^"]*)"')


def searched(query: dict[str, Any]) -> tuple[str, str, dict[str, str]]:
    """A search expression as (namespace, metric name, dimensions): each dimension of its schema, with the value a
    term pins it to, or "*"."""
    assert re.fullmatch(r"[a-z][a-zA-Z0-9_]*", query["id"]), query
    match = SEARCH.fullmatch(query["expression"])
    assert match, query["expression"]
    namespace, *names = [part.strip() for part in match["schema"].split(",")]
    terms = dict(TERM.findall(match["terms"]))
    assert set(terms) <= {"MetricName", *names}, terms
    return namespace, terms["MetricName"], {name: terms.get(name, "*") for name in names}


def test_dashboard_body_is_what_cloudwatch_accepts() -> None:
    """A `widgets` array of 0 to 500 widgets on the 24-column grid; each metric widget with its region and 1 to
    100 metrics; a name no intrinsic left unresolved (it renders right after `sam deploy`)."""
    assert DASHBOARD["Type"] == "AWS::CloudWatch::Dashboard"
    assert evaluate(DASHBOARD["Properties"]["DashboardName"]) == f"{STACK}-{REGION}"
    assert 0 < len(BODY["widgets"]) <= 500
    assert "${" not in json.dumps(BODY)
    for widget in BODY["widgets"]:
        assert widget["type"] in ("metric", "text")
        assert widget["x"] >= 0 and widget["y"] >= 0 and widget["x"] + widget["width"] <= 24, widget
    for widget in METRIC_WIDGETS:
        properties = widget["properties"]
        assert properties["region"] == REGION and properties["title"]
        assert 1 <= len(properties["metrics"]) <= 100
        assert isinstance(properties["period"], int) and properties["period"] % 60 == 0
        assert properties["stat"] in ("Sum", "Maximum")
    # Widgets do not overlap: no grid cell is claimed twice.
    cells = [(x, y) for w in BODY["widgets"] for x in range(w["x"], w["x"] + w["width"])
             for y in range(w["y"], w["y"] + w["height"])]
    assert len(cells) == len(set(cells))


def test_every_metric_drawn_is_one_published() -> None:
    """The collectors' metrics by their names and dimension names in PUBLISHED_METRICS, with the values they are
    published with (service `auditlake`, a registered vendor); AWS's by the collectors' functions and the DLQ."""
    seen: set[str] = set()
    for widget in METRIC_WIDGETS:
        for namespace, name, dimensions in drawn(widget):
            if namespace == METRICS_NAMESPACE:
                assert name in PUBLISHED_METRICS, f"{widget['properties']['title']}: {name} is never published"
                assert set(dimensions) in [set(d) for d in PUBLISHED_METRICS[name].dimension_sets], (name, dimensions)
                assert dimensions["service"] in ("auditlake", "*") and dimensions["vendor"] in VENDORS
            else:
                assert (namespace, name) in AWS_METRICS, f"{namespace} {name} is not a metric this draws"
                assert list(dimensions) == [AWS_METRICS[namespace, name]]
                value = dimensions[AWS_METRICS[namespace, name]]
                assert value in COLLECTORS if namespace == "AWS/Lambda" else value == DLQ
            seen.add(name)
    assert {"EventsArchived", "FreshnessLagSeconds", "WatermarkLagSeconds", "StreamErrors", "Errors", "Throttles",
            "PacingWaits", "ReconciledEvents", "ApproximateNumberOfMessagesVisible", "Duration"} <= seen


def test_each_vendor_has_its_line_in_each_graph_of_the_collectors() -> None:
    for widget in METRIC_WIDGETS:
        vendors = {dimensions.get("vendor") or COLLECTORS.get(dimensions.get("FunctionName", ""))
                   for _, _, dimensions in drawn(widget)}
        if widget["properties"]["title"] != "Dead-letter queue depth":
            assert vendors == set(VENDORS), widget["properties"]["title"]


def test_thresholds_drawn_are_the_deployed_ones() -> None:
    """The freshness graph's line is the StalenessThresholdSeconds the staleness alarms use; the duration graph's
    is the functions' timeout, in Duration's milliseconds."""
    lines = {w["properties"]["title"]: w["properties"].get("annotations", {}).get("horizontal", [])
             for w in METRIC_WIDGETS}
    freshness = next(value for title, value in lines.items() if title.startswith("Freshness lag"))
    staleness = body(StalenessThresholdSeconds="5400")
    assert [a["value"] for a in freshness] == [int(TEMPLATE["Parameters"]["StalenessThresholdSeconds"]["Default"])]
    assert [a["value"] for w in staleness["widgets"] if w["properties"].get("title", "").startswith("Freshness")
            for a in w["properties"]["annotations"]["horizontal"]] == [5400]
    for vendor in VENDORS:
        alarm = RESOURCES[f"{adapter(vendor).title}StalenessAlarm"]["Properties"]
        assert alarm["Threshold"] == {"Ref": "StalenessThresholdSeconds"}
    duration = next(value for title, value in lines.items() if title.startswith("Duration"))
    timeout = TEMPLATE["Globals"]["Function"]["Timeout"]
    assert [a["value"] for a in duration] == [timeout * 1000]
    assert all("Timeout" not in RESOURCES[f]["Properties"] for f in RESOURCES
               if RESOURCES[f]["Type"] == "AWS::Serverless::Function")


def test_the_period_follows_the_schedule() -> None:
    periods = {w["properties"]["title"]: w["properties"]["period"] for w in METRIC_WIDGETS}
    for minutes, timing in TEMPLATE["Mappings"]["ScheduleTiming"].items():
        drawn_at = body(ScheduleRateMinutes=minutes)
        assert drawn_at["widgets"][1]["properties"]["period"] == timing["PeriodSeconds"]
    assert periods["Events archived"] == 300  # the default schedule's


def test_alarms_watch_published_metrics() -> None:
    """The alarms on the collectors' own metrics are held to the same table."""
    for logical_id, spec in RESOURCES.items():
        properties = spec["Properties"] if spec["Type"] == "AWS::CloudWatch::Alarm" else {}
        if properties.get("Namespace") == METRICS_NAMESPACE:
            dimensions = tuple(d["Name"] for d in properties["Dimensions"])
            assert dimensions in PUBLISHED_METRICS[properties["MetricName"]].dimension_sets, logical_id


def test_dashboard_url_output() -> None:
    url = evaluate(TEMPLATE["Outputs"]["DashboardUrl"]["Value"])
    assert url == (f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
                   f"#dashboards/dashboard/{REFS['CollectorDashboard']}")
