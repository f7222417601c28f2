"""The archive's storage ageing: lifecycle rules as rendered for each parameter choice, and the template's Rules.

The lifecycle rules are resolved from the template with the parameter values a deployment would give, as the other
template tests do; the Rules are evaluated with a small evaluator of their functions over the same values, so the
test knows exactly which combinations CloudFormation refuses before it creates anything.
"""

from __future__ import annotations

import fnmatch
import itertools
from typing import Any

import pytest

from auditlake_local.template import load_template, resolve

TEMPLATE = load_template()
PARAMETERS: dict[str, dict[str, Any]] = TEMPLATE["Parameters"]
RESOURCES: dict[str, dict[str, Any]] = TEMPLATE["Resources"]
CONDITIONS: dict[str, Any] = TEMPLATE["Conditions"]
RULES: dict[str, Any] = TEMPLATE["Rules"]

STORAGE_CLASSES = ["NONE", "INTELLIGENT_TIERING", "GLACIER_IR"]
TIER_DAYS = [str(days) for days in PARAMETERS["ArchiveTierAfterDays"]["AllowedValues"]]
EXPIRATION_DAYS = [str(days) for days in PARAMETERS["ArchiveExpirationDays"]["AllowedValues"]]
LOCK_MODES = PARAMETERS["ObjectLockMode"]["AllowedValues"]
# ObjectLockRetentionDays is free (1 to 36500): the allowed expiry steps, and values between and beyond them.
RETENTIONS = sorted({1, 7, 29, 31, 364, 366, 400, 36500, *(int(d) for d in EXPIRATION_DAYS if d != "0")})

# S3 API Reference, "Transition", Days: 0 or more for INTELLIGENT_TIERING, GLACIER_IR, GLACIER and DEEP_ARCHIVE;
# more than 30 for STANDARD_IA and ONEZONE_IA. Athena reads neither GLACIER nor DEEP_ARCHIVE without a restore
# (Athena User Guide, "Query restored Amazon S3 Glacier objects"), so the template offers neither.
S3_MINIMUM_TRANSITION_DAYS = {"INTELLIGENT_TIERING": 0, "GLACIER_IR": 0, "STANDARD_IA": 30, "ONEZONE_IA": 30}
ATHENA_READABLE = {"STANDARD", "INTELLIGENT_TIERING", "GLACIER_IR", "STANDARD_IA", "ONEZONE_IA"}


class _Attrs(dict):
    def __missing__(self, key: tuple[str, str]) -> str:
        return f"getatt:{key[0]}.{key[1]}"

    def __bool__(self) -> bool:  # resolve() replaces a falsy mapping with {}
        return True


def parameters(**values: Any) -> dict[str, str]:
    """Every parameter's value as CloudFormation hands it over (a string): the defaults, overridden by `values`."""
    return {**{name: str(spec.get("Default", "")) for name, spec in PARAMETERS.items()},
            **{name: str(value) for name, value in values.items()}}


def truth(expression: Any, params: dict[str, str]) -> Any:
    """Evaluates a condition or rule expression: Fn::And, Fn::Or, Fn::Not, Fn::Equals, Fn::Contains, Condition, Ref."""
    if isinstance(expression, list):
        return [truth(item, params) for item in expression]
    if not isinstance(expression, dict):
        return str(expression)
    (function, argument), = expression.items()
    if function == "Ref":
        return params[argument]
    if function == "Condition":
        return truth(CONDITIONS[argument], params)
    if function == "Fn::And":
        return all(truth(item, params) for item in argument)
    if function == "Fn::Or":
        return any(truth(item, params) for item in argument)
    if function == "Fn::Not":
        return not truth(argument[0], params)
    if function == "Fn::Equals":
        left, right = truth(argument, params)
        return left == right
    if function == "Fn::Contains":
        values, value = truth(argument, params)
        return value in values
    raise AssertionError(f"the evaluator does not know {function}")


def refusals(params: dict[str, str]) -> list[str]:
    """The AssertDescription of every assertion of the template's Rules that the parameters fail."""
    failed = []
    for rule in RULES.values():
        if "RuleCondition" in rule and not truth(rule["RuleCondition"], params):
            continue
        failed += [a["AssertDescription"] for a in rule["Assertions"] if not truth(a["Assert"], params)]
    return failed


def without_no_value(value: Any) -> Any:
    """What CloudFormation deploys: AWS::NoValue (None here) removes the list item or property."""
    if isinstance(value, dict):
        return {k: without_no_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_no_value(v) for v in value if v is not None]
    return value


def lifecycle_rules(params: dict[str, str]) -> list[dict[str, Any]]:
    conditions = {name: truth(expression, params) for name, expression in CONDITIONS.items()}
    refs = {**params, **{logical_id: f"ref:{logical_id}" for logical_id in RESOURCES}, "AWS::NoValue": None}
    properties = resolve(RESOURCES["ArchiveBucket"]["Properties"], refs, _Attrs(), conditions)
    return without_no_value(properties)["LifecycleConfiguration"]["Rules"]


def s3_problems(rules: list[dict[str, Any]]) -> list[str]:
    """What S3's PutBucketLifecycleConfiguration would refuse in these rules (the constraints this stack can meet)."""
    problems = []
    ids = [rule["Id"] for rule in rules]
    if len(ids) != len(set(ids)):
        problems.append(f"duplicate rule ids {ids}")
    actions = {"Transitions", "NoncurrentVersionTransitions", "ExpirationInDays", "NoncurrentVersionExpiration",
               "ExpiredObjectDeleteMarker", "AbortIncompleteMultipartUpload"}
    for rule in rules:
        if not actions & set(rule):
            problems.append(f"{rule['Id']}: no action")
        if "ExpiredObjectDeleteMarker" in rule and "ExpirationInDays" in rule:
            problems.append(f"{rule['Id']}: ExpiredObjectDeleteMarker with an expiry in days")
        transitions = rule.get("Transitions", [])
        for transition in transitions + rule.get("NoncurrentVersionTransitions", []):
            if transition["StorageClass"] not in ATHENA_READABLE:
                problems.append(f"{rule['Id']}: {transition['StorageClass']} is not readable by Athena")
            elif int(transition["TransitionInDays"]) < S3_MINIMUM_TRANSITION_DAYS[transition["StorageClass"]]:
                problems.append(f"{rule['Id']}: transition before S3's minimum")
        if "ExpirationInDays" in rule and any(int(rule["ExpirationInDays"]) <= int(t["TransitionInDays"])
                                              for t in transitions):
            problems.append(f"{rule['Id']}: expires on or before it transitions")
        if "NoncurrentVersionExpiration" in rule and any(
                int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"]) <= int(t["TransitionInDays"])
                for t in rule.get("NoncurrentVersionTransitions", [])):
            problems.append(f"{rule['Id']}: noncurrent versions expire on or before they transition")
    return problems


def by_id(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {rule["Id"]: rule for rule in rules}


# ------------------------------------------------------------------------------------------------ parameters


def test_parameters() -> None:
    assert PARAMETERS["ArchiveTierStorageClass"]["AllowedValues"] == STORAGE_CLASSES
    assert PARAMETERS["ArchiveTierStorageClass"]["Default"] == "NONE"
    assert PARAMETERS["ArchiveExpirationDays"]["Default"] == 0 and EXPIRATION_DAYS[0] == "0"
    assert PARAMETERS["ArchiveTierAfterDays"]["Default"] == 90
    # Every choice meets S3's minimum for the offered classes and the 30-day one of the Infrequent Access classes.
    assert min(int(days) for days in TIER_DAYS) >= max(S3_MINIMUM_TRANSITION_DAYS.values())
    assert all(int(days) > 0 for days in EXPIRATION_DAYS[1:]) and EXPIRATION_DAYS[1:] == sorted(
        EXPIRATION_DAYS[1:], key=int)
    groups = TEMPLATE["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    assert ["ArchiveTierStorageClass", "ArchiveTierAfterDays", "ArchiveExpirationDays"] in [
        g["Parameters"] for g in groups]


def test_the_default_deployment_keeps_everything_in_standard_forever() -> None:
    assert lifecycle_rules(parameters()) == [{"Id": "AbortIncompleteUploads", "Status": "Enabled",
                                              "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7}}]
    assert refusals(parameters()) == []


# ------------------------------------------------------------------------------------------------ lifecycle rules


@pytest.mark.parametrize("storage_class", STORAGE_CLASSES)
@pytest.mark.parametrize("expiry", ["0", "365", "3650"])
def test_lifecycle_rules_as_rendered(storage_class: str, expiry: str) -> None:
    rules = by_id(lifecycle_rules(parameters(ArchiveTierStorageClass=storage_class, ArchiveTierAfterDays=180,
                                             ArchiveExpirationDays=expiry)))
    assert rules.pop("AbortIncompleteUploads")["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    expected: dict[str, dict[str, Any]] = {}
    for prefix in ("Events", "Digests"):  # a digest ages with the objects it signs
        age: dict[str, Any] = {"Id": f"Age{prefix}", "Status": "Enabled", "Prefix": f"{prefix.lower()}/"}
        if storage_class != "NONE":
            age["Transitions"] = [{"StorageClass": storage_class, "TransitionInDays": "180"}]
            if expiry == "0":  # with an expiry a noncurrent version is gone after a day: nothing to move
                age["NoncurrentVersionTransitions"] = [{"StorageClass": storage_class, "TransitionInDays": "180"}]
        if expiry != "0":
            age["ExpirationInDays"] = expiry
            age["NoncurrentVersionExpiration"] = {"NoncurrentDays": 1}
            expected[f"RemoveExpired{prefix}DeleteMarkers"] = {
                "Id": f"RemoveExpired{prefix}DeleteMarkers", "Status": "Enabled", "Prefix": f"{prefix.lower()}/",
                "ExpiredObjectDeleteMarker": True}
        if storage_class != "NONE" or expiry != "0":
            expected[age["Id"]] = age
    assert rules == expected


def accepted_combinations() -> list[dict[str, str]]:
    combos = []
    for storage_class, after, expiry, mode in itertools.product(STORAGE_CLASSES, TIER_DAYS, EXPIRATION_DAYS,
                                                                LOCK_MODES):
        for retention in RETENTIONS if mode != "NONE" else [365]:
            params = parameters(ArchiveTierStorageClass=storage_class, ArchiveTierAfterDays=after,
                                ArchiveExpirationDays=expiry, ObjectLockMode=mode, ObjectLockRetentionDays=retention)
            if not refusals(params):
                combos.append(params)
    return combos


ACCEPTED = accepted_combinations()


def test_every_accepted_combination_renders_rules_s3_accepts() -> None:
    assert ACCEPTED
    problems = {f"{p['ArchiveTierStorageClass']}/{p['ArchiveTierAfterDays']}/{p['ArchiveExpirationDays']}":
                s3_problems(lifecycle_rules(p)) for p in ACCEPTED}
    assert {combo: found for combo, found in problems.items() if found} == {}


def test_the_s3_check_finds_what_s3_refuses() -> None:
    transition = [{"StorageClass": "GLACIER_IR", "TransitionInDays": "90"}]
    assert s3_problems([{"Id": "a", "Transitions": transition, "ExpirationInDays": "90"}])
    assert s3_problems([{"Id": "a", "Transitions": [{"StorageClass": "STANDARD_IA", "TransitionInDays": "7"}]}])
    assert s3_problems([{"Id": "a", "Transitions": [{"StorageClass": "DEEP_ARCHIVE", "TransitionInDays": "7"}]}])
    assert s3_problems([{"Id": "a", "NoncurrentVersionTransitions": transition,
                         "NoncurrentVersionExpiration": {"NoncurrentDays": 1}}])
    assert s3_problems([{"Id": "a", "ExpirationInDays": "30", "ExpiredObjectDeleteMarker": True}])
    assert s3_problems([{"Id": "a", "Status": "Enabled"}])


def test_the_archive_keeps_versioning_and_object_lock() -> None:
    for params in (parameters(ArchiveTierStorageClass="GLACIER_IR", ArchiveExpirationDays=3650,
                              ObjectLockMode="COMPLIANCE", ObjectLockRetentionDays=365),):
        conditions = {name: truth(expression, params) for name, expression in CONDITIONS.items()}
        refs = {**params, **{logical_id: f"ref:{logical_id}" for logical_id in RESOURCES}, "AWS::NoValue": None}
        bucket = resolve(RESOURCES["ArchiveBucket"]["Properties"], refs, _Attrs(), conditions)
        assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
        assert bucket["ObjectLockConfiguration"]["Rule"]["DefaultRetention"] == {"Mode": "COMPLIANCE", "Days": "365"}


# ------------------------------------------------------------------------------------------------ the Rules


def test_rules_use_only_functions_cloudformation_allows_in_rules() -> None:
    """CloudFormation User Guide, "Rules": rule conditions and assertions use the rule-specific functions only."""
    allowed = {"Fn::And", "Fn::Contains", "Fn::EachMemberEquals", "Fn::EachMemberIn", "Fn::Equals", "Fn::Not",
               "Fn::Or", "Fn::RefAll", "Fn::ValueOf", "Fn::ValueOfAll", "Ref"}

    def functions(value: Any) -> set[str]:
        if isinstance(value, list):
            return set().union(*map(functions, value)) if value else set()
        if isinstance(value, dict):
            return set(value) | functions(list(value.values()))
        return set()

    for rule in RULES.values():
        used = functions([rule.get("RuleCondition", {}), [a["Assert"] for a in rule["Assertions"]]])
        assert used <= allowed
        assert all(a["AssertDescription"].strip() for a in rule["Assertions"])


@pytest.mark.parametrize("mode", LOCK_MODES)
def test_an_expiry_earlier_than_the_object_lock_retention_is_refused(mode: str) -> None:
    for expiry, retention in itertools.product(EXPIRATION_DAYS, RETENTIONS):
        found = refusals(parameters(ObjectLockMode=mode, ObjectLockRetentionDays=retention,
                                    ArchiveExpirationDays=expiry))
        weakens = mode != "NONE" and expiry != "0" and retention > int(expiry)
        if weakens:
            assert found and all("ObjectLockRetentionDays" in text for text in found), (expiry, retention)
            assert any(f"ArchiveExpirationDays {expiry} " in text for text in found)
        elif mode == "NONE" or expiry == "0" or str(retention) in EXPIRATION_DAYS:
            assert found == [], (expiry, retention)
        else:
            # A retention between the listed day counts cannot be compared by a rule: it is refused, and the message
            # lists what is accepted.
            assert found and "must be one of" in found[0]


def test_an_expiry_not_after_the_transition_is_refused() -> None:
    for storage_class, after, expiry in itertools.product(STORAGE_CLASSES, TIER_DAYS, EXPIRATION_DAYS):
        found = refusals(parameters(ArchiveTierStorageClass=storage_class, ArchiveTierAfterDays=after,
                                    ArchiveExpirationDays=expiry))
        if storage_class != "NONE" and expiry != "0" and int(expiry) <= int(after):
            assert len(found) == 1 and f"ArchiveTierAfterDays {after}," in found[0]
        else:
            assert found == []


def test_the_evaluator_knows_a_refusal_when_it_sees_one() -> None:
    assert truth({"Fn::Contains": [["30", "90"], {"Ref": "ArchiveExpirationDays"}]},
                 parameters(ArchiveExpirationDays=90)) is True
    assert truth({"Fn::And": [{"Fn::Equals": ["a", "a"]}, {"Fn::Not": [{"Fn::Equals": ["a", "a"]}]}]}, {}) is False
    with pytest.raises(AssertionError):
        truth({"Fn::If": ["x", 1, 2]}, {})


# ------------------------------------------------------------------------------------------------ permissions


def test_no_role_may_change_the_lifecycle_or_restore_objects() -> None:
    """Ageing is the bucket's own configuration: no statement in the stack allows changing it, or restoring."""
    operations = ["s3:PutLifecycleConfiguration", "s3:PutBucketLifecycle", "s3:RestoreObject"]

    def statements(value: Any) -> list[dict[str, Any]]:
        if isinstance(value, dict):
            found = [value] if "Effect" in value and "Action" in value else []
            return found + [s for v in value.values() for s in statements(v)]
        if isinstance(value, list):
            return [s for v in value for s in statements(v)]
        return []

    allowed = [(logical_id, str(action).lower())
               for logical_id, resource in RESOURCES.items()
               for statement in statements(resource.get("Properties", {})) if statement["Effect"] == "Allow"
               for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])]
    assert allowed
    assert [(logical_id, action) for logical_id, action in allowed
            if any(fnmatch.fnmatch(operation.lower(), action) for operation in operations)] == []
