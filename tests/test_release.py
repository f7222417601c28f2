"""Release hygiene: one version number everywhere, a changelog entry for it, and the template's Serverless
Application Repository metadata within what AWS documents (resource types and capabilities included)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

import auditlake
from auditlake_local.template import PROJECT_ROOT, load_template

TEMPLATE = load_template()
SAR_METADATA: dict[str, Any] = TEMPLATE["Metadata"]["AWS::ServerlessRepo::Application"]
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")  # release versions only: PEP 440 reads them alike


# ------------------------------------------------------------------------------------------------ one version


def test_the_version_is_the_engine_layers() -> None:
    """The number lives in the engine package, which the layer ships as python/auditlake/__init__.py."""
    assert SEMVER.match(auditlake.__version__), auditlake.__version__
    assert Path(auditlake.__file__).resolve() == \
        PROJECT_ROOT / "layers" / "engine" / "python" / "auditlake" / "__init__.py"


def test_the_package_reads_the_version_from_the_engine() -> None:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "the version is written once, in auditlake/__init__.py"
    assert "version" in project["project"]["dynamic"]
    setuptools = project["tool"]["setuptools"]
    assert setuptools["dynamic"]["version"] == {"attr": "auditlake.__version__"}
    assert setuptools["package-dir"]["auditlake"] == "layers/engine/python/auditlake"
    installed = importlib.metadata.version("auditlake")
    assert installed == auditlake.__version__, \
        f"the installed package says {installed}: `make setup` reinstalls it after a version change"


def test_the_template_carries_the_version() -> None:
    assert SAR_METADATA["SemanticVersion"] == auditlake.__version__


def test_the_changelog_has_a_section_for_the_version() -> None:
    headings = re.findall(r"^## (\S+)", (PROJECT_ROOT / "CHANGELOG.md").read_text(), re.MULTILINE)
    assert headings and headings[0] == auditlake.__version__, "the newest section comes first"
    assert len(headings) == len(set(headings))


# ------------------------------------------------------------------------------------------------ SAR metadata
# AWS SAM Developer Guide, "AWS SAM template Metadata section properties" (https://docs.aws.amazon.com/
# serverless-application-model/latest/developerguide/serverless-sam-template-publishing-applications-metadata-
# properties.html): the properties, which are required, their lengths and patterns, and that intrinsic functions
# are not supported there.


def test_sar_metadata_has_the_required_properties_within_their_documented_limits() -> None:
    assert set(SAR_METADATA) <= {"Name", "Description", "Author", "SpdxLicenseId", "LicenseUrl", "ReadmeUrl",
                                 "Labels", "HomePageUrl", "SemanticVersion", "SourceCodeUrl"}
    assert re.fullmatch(r"[a-zA-Z0-9\-]{1,140}", SAR_METADATA["Name"])
    assert 1 <= len(SAR_METADATA["Description"]) <= 256
    assert len(SAR_METADATA["Author"]) <= 127
    assert re.fullmatch(r"^[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?$", SAR_METADATA["Author"])
    labels = SAR_METADATA["Labels"]
    assert len(labels) <= 10
    assert all(1 <= len(label) <= 127 and re.fullmatch(r"^[a-zA-Z0-9+\-_:\/@]+$", label) for label in labels)
    assert SEMVER.match(SAR_METADATA["SemanticVersion"])


def test_sar_metadata_uses_no_intrinsic_function() -> None:
    def plain(value: Any) -> bool:
        return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))

    assert all(plain(value) for value in SAR_METADATA.values()), SAR_METADATA


def test_sar_readme_is_a_local_file_sam_package_uploads() -> None:
    """A local ReadmeUrl is uploaded by `sam package` (at most 5 MB); `sam publish` needs the packaged S3 link."""
    readme = PROJECT_ROOT / SAR_METADATA["ReadmeUrl"]
    assert readme.is_file() and readme.stat().st_size < 5 * 1024 * 1024


def test_a_license_is_declared_when_the_project_has_one() -> None:
    """Only a publicly shared application needs a license (AWS Serverless Application Repository Developer Guide,
    "How to Publish Applications"); once published it cannot be added, so a LICENSE file means declaring it."""
    licensed = any((PROJECT_ROOT / name).is_file() for name in ("LICENSE", "LICENSE.txt", "LICENSE.md", "COPYING"))
    declared = "LicenseUrl" in SAR_METADATA or "SpdxLicenseId" in SAR_METADATA
    assert declared == licensed


# ------------------------------------------------------------------------------------------------ SAR resources
# The resource types the AWS Serverless Application Repository lists as supported ("List of Supported AWS
# Resources", https://docs.aws.amazon.com/serverlessrepo/latest/devguide/list-supported-resources.html) among those
# this stack uses, before and after the SAM transform. The ones below were not on that list as last read (the
# dashboard's type could not be checked against it at all); `sam
# publish` answers "The template contains unsupported resource types" for a type it refuses (README, "Publishing to
# your organisation's private Serverless Application Repository"). A new type in the template must be sorted into
# one of the two sets.
SAR_LISTED = {
    "AWS::Athena::NamedQuery", "AWS::CloudWatch::Alarm", "AWS::DynamoDB::Table", "AWS::Glue::Database",
    "AWS::Glue::Table", "AWS::IAM::ManagedPolicy", "AWS::IAM::Role", "AWS::KMS::Alias", "AWS::KMS::Key",
    "AWS::Lambda::EventInvokeConfig", "AWS::Lambda::Function", "AWS::Lambda::LayerVersion", "AWS::Logs::LogGroup",
    "AWS::S3::Bucket", "AWS::S3::BucketPolicy", "AWS::SNS::Subscription", "AWS::SNS::Topic", "AWS::SQS::Queue",
    "AWS::SQS::QueuePolicy", "AWS::Serverless::Function", "AWS::Serverless::LayerVersion",
}
SAR_NOT_LISTED = {"AWS::Athena::WorkGroup", "AWS::CloudWatch::Dashboard", "AWS::IAM::RolePolicy",
                  "AWS::Scheduler::Schedule", "AWS::SecretsManager::Secret"}

# AWS Serverless Application Repository Developer Guide, "Acknowledging Application Capabilities": IAM resources
# need CAPABILITY_IAM (CAPABILITY_NAMED_IAM when named), resource policies CAPABILITY_RESOURCE_POLICY, nested
# applications CAPABILITY_AUTO_EXPAND. What a deployer of this application acknowledges:
CAPABILITIES = {"CAPABILITY_IAM", "CAPABILITY_RESOURCE_POLICY"}
_IAM = {"AWS::IAM::Group", "AWS::IAM::InstanceProfile", "AWS::IAM::Policy", "AWS::IAM::Role",
        "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy", "AWS::IAM::User"}
# The property that names each IAM resource itself (a RolePolicy's RoleName names the role it attaches to).
_IAM_NAME = {"AWS::IAM::Role": "RoleName", "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
             "AWS::IAM::Group": "GroupName", "AWS::IAM::User": "UserName",
             "AWS::IAM::InstanceProfile": "InstanceProfileName"}
_RESOURCE_POLICIES = {"AWS::Lambda::LayerVersionPermission", "AWS::Lambda::Permission", "AWS::Events::EventBusPolicy",
                      "AWS::IAM::Policy", "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::S3::BucketPolicy",
                      "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"}


@pytest.fixture(scope="module")
def translated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    spec = importlib.util.spec_from_file_location("template_tools", PROJECT_ROOT / "scripts" / "template_tools.py")
    assert spec is not None and spec.loader is not None
    tools = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tools)
    target = tmp_path_factory.mktemp("translated") / "translated.json"
    assert tools.translate(PROJECT_ROOT / "template.yaml", target) == 0
    return json.loads(target.read_text())


def test_every_resource_type_is_sorted_by_what_sar_documents(translated: dict[str, Any]) -> None:
    used = {r["Type"] for r in TEMPLATE["Resources"].values()} | {r["Type"] for r in translated["Resources"].values()}
    assert used <= SAR_LISTED | SAR_NOT_LISTED, f"sort these for SAR: {sorted(used - SAR_LISTED - SAR_NOT_LISTED)}"
    assert used >= SAR_NOT_LISTED, "a type no longer used leaves the list"
    assert not SAR_LISTED & SAR_NOT_LISTED


def test_the_capabilities_a_deployer_acknowledges(translated: dict[str, Any]) -> None:
    resources = translated["Resources"].values()
    needed = set()
    if any(r["Type"] in _IAM for r in resources):
        needed.add("CAPABILITY_IAM")
    if any(_IAM_NAME.get(r["Type"], "") in r.get("Properties", {}) for r in resources):
        needed.add("CAPABILITY_NAMED_IAM")
    if any(r["Type"] in _RESOURCE_POLICIES for r in resources):
        needed.add("CAPABILITY_RESOURCE_POLICY")
    if any(r["Type"] in ("AWS::Serverless::Application", "AWS::CloudFormation::Stack") for r in resources):
        needed.add("CAPABILITY_AUTO_EXPAND")
    assert needed == CAPABILITIES


def test_the_template_uses_only_the_transform_sar_accepts() -> None:
    """The Serverless Application Repository accepts AWS::Serverless-2016-10-31 as the only transform (its
    CreateApplicationVersion answers "Provided Transform [...] is unsupported. Please use one of the following:
    ['AWS::Serverless-2016-10-31']"; aws/aws-sam-cli#7231), which is why template.yaml is generated rather than
    written with AWS::LanguageExtensions' Fn::ForEach."""
    assert TEMPLATE["Transform"] == "AWS::Serverless-2016-10-31"
    assert "Fn::ForEach" not in (PROJECT_ROOT / "template.yaml").read_text()
