"""The fixtures' own promises: every test's stack starts empty, whatever a test before it left behind, and the
shortcuts conftest.py takes to build stacks faster share nothing a test could observe."""

from __future__ import annotations

import boto3

from auditlake_local.stack import LocalStack


def _leave_state_behind(stack: LocalStack) -> None:
    boto3.client("s3").put_object(Bucket=stack.bucket, Key="events/left-behind.json.gz", Body=b"x")
    boto3.client("dynamodb").put_item(TableName=stack.table, Item={"stream": {"S": "asana#left-behind"}})
    stack.put_secret("AsanaCollector", {"token": "left-behind-token", "workspace_gid": "1"})
    boto3.client("athena").create_work_group(Name="left-behind")


def test_a_new_stack_holds_nothing_an_earlier_one_was_given() -> None:
    with LocalStack.start() as first:
        _leave_state_behind(first)
        placeholder = first.template["Resources"]["AsanaSecret"]["Properties"]["SecretString"]
    with LocalStack.start() as second:
        s3, dynamodb = boto3.client("s3"), boto3.client("dynamodb")
        resources = second.template["Resources"]
        assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == {
            name for logical_id, name in second.refs.items()
            if resources.get(logical_id, {}).get("Type") == "AWS::S3::Bucket"}  # the first stack's are gone
        assert s3.list_objects_v2(Bucket=second.bucket).get("KeyCount") == 0
        assert dynamodb.scan(TableName=second.table)["Items"] == []
        secret = boto3.client("secretsmanager").get_secret_value(
            SecretId=second.functions["AsanaCollector"].environment["SECRET_ID"])["SecretString"]
        assert "left-behind" not in secret and secret == second._resolve(placeholder)
        assert "left-behind" not in {w["Name"] for w in boto3.client("athena").list_work_groups()["WorkGroups"]}


def test_each_stack_signs_with_a_key_of_its_own() -> None:
    """conftest.py lets moto's symmetric keys share one unused RSA key; the digests' signing key stays each stack's."""
    with LocalStack.start() as first:
        pem = first.signing_key_pem()
    with LocalStack.start() as second:
        assert second.signing_key_pem() != pem


def test_the_stack_fixture_starts_empty(stack: LocalStack) -> None:
    """Run in any order with the tests that write to their stacks (every collector test does): nothing arrives."""
    assert boto3.client("s3").list_objects_v2(Bucket=stack.bucket).get("KeyCount") == 0
    assert boto3.client("dynamodb").scan(TableName=stack.table)["Items"] == []
    _leave_state_behind(stack)
