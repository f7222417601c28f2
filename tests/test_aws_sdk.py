"""The engine refuses, at cold start, a runtime SDK too old for the conditional writes every archive write sends."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import boto3
import botocore.session
import pytest
from botocore.model import ServiceModel

from auditlake import aws


def s3_model(*, with_if_none_match: bool) -> ServiceModel:
    loader = botocore.session.get_session().get_component("data_loader")
    loaded = copy.deepcopy(loader.load_service_model("s3", "service-2"))
    if not with_if_none_match:
        # As botocore 1.35.1 and older ship it (checked against the released wheels: 1.35.2 is the first with it).
        del loaded["shapes"]["PutObjectRequest"]["members"]["IfNoneMatch"]
    return ServiceModel(loaded, service_name="s3")


def test_an_sdk_without_if_none_match_is_refused_with_the_minimum_named() -> None:
    old = SimpleNamespace(meta=SimpleNamespace(service_model=s3_model(with_if_none_match=False)))
    with pytest.raises(aws.SdkTooOld, match=r"botocore >= 1\.35\.2 \(boto3 >= 1\.35\.2\)"):
        aws.check_s3_client(old)


def test_the_sdk_in_use_sends_if_none_match(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    aws.reset()
    try:
        s3 = aws.client("s3")
    finally:
        aws.reset()
    assert "IfNoneMatch" in s3.meta.service_model.operation_model("PutObject").input_shape.members
    aws.check_s3_client(SimpleNamespace(meta=SimpleNamespace(service_model=s3_model(with_if_none_match=True))))


def test_the_check_runs_when_the_engine_makes_its_s3_client(monkeypatch: pytest.MonkeyPatch) -> None:
    old = SimpleNamespace(meta=SimpleNamespace(service_model=s3_model(with_if_none_match=False)))
    monkeypatch.setattr(boto3, "client", lambda service: old)
    aws.reset()
    try:
        with pytest.raises(aws.SdkTooOld):
            aws.client("s3")
        assert aws.client("dynamodb") is old  # only S3's model carries the conditional write
    finally:
        aws.reset()
