"""template.yaml is rendered from one source (scripts/render_template.py): it is current, and a vendor added to the
registry with its own file gets everything the others get."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from auditlake_local.template import PROJECT_ROOT, load_template_text
from auditlake_vendors import VENDORS, adapter


def _load_renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_template", PROJECT_ROOT / "scripts" / "render_template.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class body runs
    spec.loader.exec_module(module)
    return module


render_template = _load_renderer()
VENDOR_PARTS = PROJECT_ROOT / "template" / "vendors"


def test_template_yaml_is_what_its_source_renders() -> None:
    """Edit template/source.yaml or template/vendors/*.yaml, then `make template`; never template.yaml itself."""
    rendered = render_template.render(render_template.registry_vendors(), render_template.engine_version())
    assert rendered == (PROJECT_ROOT / "template.yaml").read_text(), "template.yaml is stale: run `make template`"
    assert render_template.main(["--check"]) == 0


def test_the_check_reports_a_stale_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    stale = tmp_path / "template.yaml"
    stale.write_text((PROJECT_ROOT / "template.yaml").read_text().replace("MemorySize: 512", "MemorySize: 256"))
    monkeypatch.setattr(render_template, "TEMPLATE", stale)
    assert render_template.main(["--check"]) == 1
    assert "-    MemorySize: 256" in capsys.readouterr().out
    assert "MemorySize: 256" in stale.read_text(), "--check writes nothing"
    assert render_template.main([]) == 0
    assert stale.read_text() == (PROJECT_ROOT / "template.yaml").read_text()


def test_every_registered_vendor_has_its_file_and_no_other_file_is_there() -> None:
    assert sorted(p.stem for p in VENDOR_PARTS.glob("*.yaml")) == sorted(VENDORS)
    assert [v.vendor for v in render_template.registry_vendors()] == list(VENDORS)


def test_the_source_names_no_vendor_outside_the_hand_written_queries() -> None:
    """Per-vendor text lives in the vendors' files and adapters; the source's only vendor names are the saved
    queries' hand-written clauses (their event names are each vendor's knowledge, not a list)."""
    source = (PROJECT_ROOT / "template" / "source.yaml").read_text()
    queries_start = source.index("  # ---------------------------------------------------------------- saved queries")
    queries_end = source.index("  DailyEventsQuery:")
    outside = (source[:queries_start] + source[queries_end:]).replace("`make template`", "")
    for vendor in VENDORS:
        # The title as a word; the id where the template would use it (make is also an English word).
        title = re.search(rf"\b{re.escape(adapter(vendor).title)}\b", outside)
        vendor_id = re.search(rf"['\"/=#_-]{vendor}\b|\b{vendor}['\"/=#_-]", outside)
        assert not title and not vendor_id, (vendor, title or vendor_id)


# ------------------------------------------------------------------------------------------------ a fifth vendor


class _Zendesk:
    """What the renderer reads of an adapter: a made-up fifth vendor."""

    __name__ = "Zendesk"
    vendor: ClassVar[str] = "zendesk"
    title: ClassVar[str] = "Zendesk"
    secret_fields: ClassVar[tuple[str, ...]] = ("token", "subdomain")

    @classmethod
    def function_id(cls) -> str:
        return "ZendeskCollector"


ZENDESK_SECRET = ("secret_description: >-\n  auditlake Zendesk collector. Replace both REPLACE_ME values: token = an "
                  "API token, subdomain = the account's subdomain.\n")
ZENDESK_DESCRIPTION = ("auditlake Zendesk collector. Replace both REPLACE_ME values: token = an API token, subdomain = "
                       "the account's subdomain.")


def _zendesk_parts(directory: Path) -> Path:
    """Asana's file rewritten for Zendesk, as someone adding a vendor would start."""
    text = (VENDOR_PARTS / "asana.yaml").read_text().replace("Asana", "Zendesk").replace("asana", "zendesk")
    start = text.index("secret_description: >-\n")
    text = text[:start] + ZENDESK_SECRET + text[text.index("\n\n", start) + 1:]
    path = directory / "zendesk.yaml"
    path.write_text(text)
    return path


def _renamed(value: Any, old: tuple[str, str], new: tuple[str, str]) -> Any:
    """`value` with every string's vendor title and id replaced."""
    if isinstance(value, dict):
        return {_renamed(k, old, new): _renamed(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, old, new) for v in value]
    if isinstance(value, str):
        return value.replace(old[0], new[0]).replace(old[1], new[1])
    return value


@pytest.fixture(scope="module")
def with_zendesk(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    directory = tmp_path_factory.mktemp("vendors")
    _zendesk_parts(directory)
    vendors = [*render_template.registry_vendors(), render_template.vendor(_Zendesk, directory)]
    return load_template_text(render_template.render(vendors, "9.9.9"))


def test_a_fifth_vendor_gets_exactly_what_asana_gets(with_zendesk: dict[str, Any]) -> None:
    resources = with_zendesk["Resources"]
    asana = {k: v for k, v in resources.items() if k.startswith("Asana")}
    zendesk = {k: v for k, v in resources.items() if k.startswith("Zendesk")}
    assert len(asana) == 9 and set(zendesk) == {k.replace("Asana", "Zendesk") for k in asana}
    for logical_id, spec in asana.items():
        expected = _renamed(spec, ("Asana", "asana"), ("Zendesk", "zendesk"))
        if logical_id == "AsanaSecret":  # the placeholder holds the new adapter's fields
            expected["Properties"]["SecretString"] = '{"token": "REPLACE_ME", "subdomain": "REPLACE_ME"}'
            expected["Properties"]["Description"] = ZENDESK_DESCRIPTION
        assert resources[logical_id.replace("Asana", "Zendesk")] == expected, logical_id
    parameter = with_zendesk["Parameters"]["ZendeskSecretArn"]
    assert '{"token", "subdomain"} for Zendesk' in parameter["Description"]
    assert with_zendesk["Conditions"]["CreateZendeskSecret"] == {"Fn::Equals": [{"Ref": "ZendeskSecretArn"}, ""]}
    assert {"ZendeskTokenSecretArn", "ZendeskCollectorFunctionName"} <= set(with_zendesk["Outputs"])


def test_a_fifth_vendor_is_in_every_per_vendor_list(with_zendesk: dict[str, Any]) -> None:
    resources = with_zendesk["Resources"]
    groups = with_zendesk["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    (secrets,) = [g["Parameters"] for g in groups if g["Label"]["default"] == "Vendor secrets"]
    assert secrets[-1] == "ZendeskSecretArn" and len(secrets) == len(VENDORS) + 1
    # Only the collectors' roles sign digests and write them.
    for resource, path in (("DigestSigningKey", ("KeyPolicy",)), ("ArchiveBucketPolicy", ("PolicyDocument",))):
        document = resources[resource]["Properties"][path[0]]
        signers = [s["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] for s in document["Statement"]
                   if "ArnNotEquals" in s.get("Condition", {})]
        assert signers and all({"Fn::GetAtt": ["ZendeskCollectorRole", "Arn"]} in s for s in signers), resource
    table = resources["EventsTable"]["Properties"]["TableInput"]
    assert table["Parameters"]["projection.vendor.values"] == ",".join([*VENDORS, "zendesk"])
    assert table["PartitionKeys"][0]["Comment"].endswith(", make or zendesk")
    gap_detector = resources["DailyEventsQuery"]["Properties"]["QueryString"]
    assert "'make', 'zendesk') AS known (vendor)" in gap_detector
    assert "Zendesk" in with_zendesk["Metadata"]["AWS::ServerlessRepo::Application"]["Description"]
    assert with_zendesk["Metadata"]["AWS::ServerlessRepo::Application"]["SemanticVersion"] == "9.9.9"


# ------------------------------------------------------------------------------------------------ bad sources


@pytest.mark.parametrize(("change", "message"), [
    (lambda text: text.replace("secret_output:", "output:"), "must hold exactly"),
    (lambda text: text + "extra: 1\n", "must hold exactly"),
    (lambda text: text.replace("subdomain = the account's subdomain", "the rest"), "does not say what to put in"),
    (lambda text: text.replace("  ZendeskEventsView:", "  ZendeskView:"), "one resource named ZendeskEventsView"),
    (lambda text: text.replace("Name: zendesk_events", "Name: events2"), "named zendesk_events"),
    (lambda text: text.replace("view: |", "view: |\n  [unclosed"), "not valid YAML"),
    (lambda text: text.replace("user_logged_out: [3002, 2]", "user_logged_out: [3003, 2]"), "no class and activity"),
    (lambda text: text.replace("user_logged_out: [3002, 2]", "user_logged_out: [3002, 8]"), "no class and activity"),
    (lambda text: text.replace("user_logged_out: [3002, 2]", "user_logged_out: 3002"), r"\[class_uid, activity_id\]"),
    (lambda text: text[: text.index("\nocsf:")] + "\nocsf: {}\n", "must map the vendor's event types"),
], ids=["renamed-key", "extra-key", "field-not-described", "view-misnamed", "view-table-misnamed", "view-not-yaml",
        "ocsf-unknown-class", "ocsf-unknown-activity", "ocsf-not-a-pair", "ocsf-empty"])
def test_a_vendor_file_that_does_not_fit_is_refused(tmp_path: Path, change: Any, message: str) -> None:
    path = _zendesk_parts(tmp_path)
    path.write_text(change(path.read_text()))
    with pytest.raises(render_template.SourceError, match=message):
        render_template.vendor(_Zendesk, tmp_path)


def test_a_vendor_without_its_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(render_template.SourceError, match=r"zendesk\.yaml is missing"):
        render_template.vendor(_Zendesk, tmp_path)


def test_a_source_that_forgets_a_vendor_is_refused(tmp_path: Path) -> None:
    """A block written for one vendor by hand instead of in the loop leaves the others without it."""
    source = (PROJECT_ROOT / "template" / "source.yaml").read_text()
    start = source.index("  {{ v.title }}StalenessAlarm:")
    end = source.index("{% endfor %}", start)
    (tmp_path / "source.yaml").write_text(source[:start] + source[end:])
    with pytest.raises(render_template.SourceError, match="no AsanaStalenessAlarm"):
        render_template.render(render_template.registry_vendors(), "0.0.0", tmp_path / "source.yaml")


def test_filters() -> None:
    assert render_template.join_or(["a"]) == "a"
    assert render_template.join_or(["a", "b", "c"]) == "a, b or c"
    assert render_template.join_and(["a", "b"]) == "a and b"
    long = "word " * 60
    for text in (render_template.folded(long, 8), render_template.comment(long, 4)):
        lines = text.split("\n")
        assert len(lines) > 1 and all(len(line) <= 120 for line in lines)
        assert " ".join(line.strip().removeprefix("# ") for line in lines) == long.strip()
