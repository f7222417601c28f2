"""Renders template.yaml from one source, so the vendors' blocks and every per-vendor list are written once.

  python scripts/render_template.py            writes template.yaml
  python scripts/render_template.py --check    writes nothing; exits 1 with a diff when template.yaml is stale

The inputs: template/source.yaml (Jinja2: the whole stack, with one `{% for v in vendors %}` per place that repeats
per vendor), each vendor's template/vendors/<vendor>.yaml (what is written for that vendor alone: its secret's
Description, why the secret has no rotation, its secret output's Description, its Athena view, the OCSF classes of
its events), the vendor registry (functions/__init__.py: which vendors, in which order; each adapter's title, id and
secret fields) and the one version number, auditlake.__version__.

Why a generated file rather than CloudFormation's Fn::ForEach: the AWS Serverless Application Repository accepts no
transform but AWS::Serverless-2016-10-31, Fn::ForEach cannot write Parameters or Metadata, and `sam build`,
checkov and the project's own template readers do not expand it.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "template" / "source.yaml"
VENDOR_PARTS = ROOT / "template" / "vendors"
TEMPLATE = ROOT / "template.yaml"
WIDTH = 120  # the project's line length (pyproject.toml, ruff)

# What a vendor's own file holds; every key is required, nothing else is allowed. `ocsf` is a mapping (the vendor's
# event types to OCSF classes), the others are strings.
PART_KEYS = ("secret_description", "no_rotation", "secret_output", "view", "ocsf")
TEXT_KEYS = ("secret_description", "no_rotation", "secret_output", "view")

# The OCSF 1.x classes the ocsf_events view maps events to: class_uid -> (category_uid, the activity_ids it defines).
# 99 (Other) is every class's. Anything unmapped is the Base Event: class 0, category 0 (Uncategorized).
# https://schema.ocsf.io/1.3.0/classes/account_change, .../authentication, .../entity_management,
# .../user_access, .../api_activity, .../base_event
OCSF_CLASSES: dict[int, tuple[int, frozenset[int]]] = {
    3001: (3, frozenset({1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 99})),  # Account Change
    3002: (3, frozenset({1, 2, 3, 4, 5, 6, 99})),  # Authentication
    3004: (3, frozenset({1, 2, 3, 4, 5, 6, 7, 99})),  # Entity Management
    3005: (3, frozenset({1, 2, 99})),  # User Access Management
    6003: (6, frozenset({1, 2, 3, 4, 99})),  # API Activity
}


class SourceError(ValueError):
    """The source, a vendor's file or the registry is inconsistent; the message says where."""


@dataclass(frozen=True)
class Vendor:
    """One vendor as the source sees it: `v.title`, `v.vendor`, ... in template/source.yaml."""

    vendor: str  # the adapter's `vendor`: asana
    title: str  # the adapter's `title`: the logical ids' prefix, ClickUp
    secret_fields: tuple[str, ...]
    secret_description: str
    no_rotation: str
    secret_output: str
    view: str  # the view resource's YAML, at indentation 0
    ocsf: Mapping[str, list[int]]  # event type -> [OCSF class_uid, activity_id]

    @property
    def secret_string(self) -> str:
        """The placeholder the stack creates the secret with: every field REPLACE_ME, in the adapter's order."""
        return json.dumps(dict.fromkeys(self.secret_fields, "REPLACE_ME"))

    @property
    def secret_fields_set(self) -> str:
        return "{" + ", ".join(f'"{field}"' for field in self.secret_fields) + "}"


def _shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def read_parts(path: Path) -> dict[str, str]:
    """A vendor's file, checked: exactly PART_KEYS, each a non-empty string."""
    if not path.is_file():
        raise SourceError(f"{_shown(path)} is missing: every vendor in the registry needs its own file "
                          f"(copy another vendor's and rewrite it)")
    parts = yaml.safe_load(path.read_text())
    if not isinstance(parts, dict) or set(parts) != set(PART_KEYS):
        found = sorted(parts) if isinstance(parts, dict) else type(parts).__name__
        raise SourceError(f"{_shown(path)} must hold exactly {', '.join(PART_KEYS)}; it holds {found}")
    for key in TEXT_KEYS:
        if not isinstance(parts[key], str) or not parts[key].strip():
            raise SourceError(f"{_shown(path)}: {key} must be a non-empty string")
    check_ocsf(parts["ocsf"], f"{_shown(path)}: ocsf")
    return parts


def check_ocsf(mapping: Any, what: str) -> None:
    """A vendor's `ocsf`: its event types, each to [class_uid, activity_id] of a class in OCSF_CLASSES."""
    if not isinstance(mapping, dict) or not mapping:
        raise SourceError(f"{what} must map the vendor's event types to [class_uid, activity_id]")
    for action, pair in mapping.items():
        if not isinstance(action, str) or not action or "'" in action:
            raise SourceError(f"{what}: {action!r} is not an event type")
        if not (isinstance(pair, list) and len(pair) == 2 and all(type(n) is int for n in pair)):
            raise SourceError(f"{what}: {action} must be [class_uid, activity_id], not {pair!r}")
        class_uid, activity_id = pair
        if class_uid not in OCSF_CLASSES or activity_id not in OCSF_CLASSES[class_uid][1]:
            raise SourceError(f"{what}: {action}: [{class_uid}, {activity_id}] is no class and activity the view "
                              f"maps to ({', '.join(map(str, OCSF_CLASSES))})")


def vendor(adapter: Any, parts_dir: Path = VENDOR_PARTS) -> Vendor:
    """The vendor of an adapter class (its vendor, title, secret_fields), with its own file's parts."""
    path = parts_dir / f"{adapter.vendor}.yaml"
    parts = read_parts(path)
    result = Vendor(vendor=adapter.vendor, title=adapter.title, secret_fields=tuple(adapter.secret_fields),
                    secret_description=parts["secret_description"], no_rotation=parts["no_rotation"],
                    secret_output=parts["secret_output"], view=parts["view"], ocsf=parts["ocsf"])
    if adapter.function_id() != f"{result.title}Collector":
        raise SourceError(f"{adapter.__name__}.function_id() is {adapter.function_id()!r}; the template names the "
                          f"collector {result.title}Collector")
    missing = [field for field in result.secret_fields if field not in result.secret_description]
    if missing:
        raise SourceError(f"{_shown(path)}: secret_description does not say what to put in {missing}")
    view = _parse(result.view, f"{_shown(path)}: view")
    expected = f"{result.title}EventsView"
    if not isinstance(view, dict) or list(view) != [expected]:
        raise SourceError(f"{_shown(path)}: view must be one resource named {expected}")
    table = view[expected].get("Properties", {}).get("TableInput", {})
    if view[expected].get("Type") != "AWS::Glue::Table" or table.get("Name") != f"{result.vendor}_events" \
            or table.get("TableType") != "VIRTUAL_VIEW":
        raise SourceError(f"{_shown(path)}: view must be an AWS::Glue::Table VIRTUAL_VIEW named "
                          f"{result.vendor}_events")
    return result


def registry_vendors(parts_dir: Path = VENDOR_PARTS) -> list[Vendor]:
    """Every vendor of the registry (functions/__init__.py), in its order."""
    from auditlake_vendors import adapters  # noqa: PLC0415 - the generator's only import of the project

    vendors = [vendor(adapter, parts_dir) for adapter in adapters().values()]
    extra = sorted({p.stem for p in parts_dir.glob("*.yaml")} - {v.vendor for v in vendors})
    if extra:
        raise SourceError(f"template/vendors/ has files for vendors the registry does not list: {extra}")
    return vendors


def engine_version() -> str:
    from auditlake import __version__  # noqa: PLC0415

    return __version__


# ------------------------------------------------------------------------------------------------ Jinja2 filters


def each(vendors: Iterable[Vendor], pattern: str) -> list[str]:
    """`pattern` formatted with each vendor's fields: each("{title}SecretArn") -> [AsanaSecretArn, ...]."""
    return [pattern.format(vendor=v.vendor, title=v.title) for v in vendors]


def _join_last(items: Iterable[str], last: str) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} {last} {items[-1]}"


def join_or(items: Iterable[str]) -> str:
    """a, b, c or d"""
    return _join_last(items, "or")


def join_and(items: Iterable[str]) -> str:
    """a, b, c and d"""
    return _join_last(items, "and")


def ocsf_values(vendors: Iterable[Vendor]) -> str:
    """Every vendor's `ocsf` as the rows of a SQL VALUES list: ('asana', 'user_login_succeeded', 3002, 3, 1), ..."""
    return ", ".join(f"('{v.vendor}', '{action}', {class_uid}, {OCSF_CLASSES[class_uid][0]}, {activity_id})"
                     for v in vendors for action, (class_uid, activity_id) in v.ocsf.items())


def folded(text: str, indent: int) -> str:
    """A folded scalar's lines (after `>-`), the first one unindented: it follows the source's own indentation."""
    lines = textwrap.wrap(" ".join(text.split()), WIDTH - indent, break_long_words=False, break_on_hyphens=False)
    return ("\n" + " " * indent).join(lines)


def comment(text: str, indent: int) -> str:
    """Comment lines (`# ...`), the first one unindented: it follows the source's own indentation."""
    lines = textwrap.wrap(" ".join(text.split()), WIDTH - indent - 2, break_long_words=False,
                          break_on_hyphens=False)
    return ("\n" + " " * indent).join(f"# {line}" for line in lines)


def environment(source_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(source_dir), undefined=jinja2.StrictUndefined, trim_blocks=True,
        lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)  # noqa: S701 - YAML, not HTML
    env.filters.update(each=each, join_or=join_or, join_and=join_and, folded=folded, comment=comment,
                       ocsf_values=ocsf_values)
    return env


# ------------------------------------------------------------------------------------------------ rendering


class _AnyTagLoader(yaml.SafeLoader):
    """Reads the rendered template's short-form tags (!Ref, !Sub, ...) as plain values, to check its structure."""


_AnyTagLoader.add_multi_constructor("!", lambda loader, _suffix, node: (
    loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode)
    else loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode)
    else loader.construct_mapping(node, deep=True)))


def _parse(text: str, what: str) -> Any:
    try:
        return yaml.load(text, Loader=_AnyTagLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as error:
        raise SourceError(f"{what} is not valid YAML: {error}") from error


def render(vendors: list[Vendor], version: str, source: Path = SOURCE) -> str:
    """template.yaml's text for these vendors, checked to parse and to hold every vendor's resources."""
    if not vendors:
        raise SourceError("the registry lists no vendor")
    text = environment(source.parent).get_template(source.name).render(vendors=vendors, version=version)
    template = _parse(text, "the rendered template")
    resources: Mapping[str, Any] = template["Resources"]
    for v in vendors:
        for suffix in ("Secret", "CollectorLogGroup", "CollectorRole", "CollectorPolicy", "Collector",
                       "ErrorsAlarm", "ReconciledAlarm", "StalenessAlarm", "EventsView"):
            if f"{v.title}{suffix}" not in resources:
                raise SourceError(f"the rendered template has no {v.title}{suffix}: does {source.name} still "
                                  f"loop over the vendors there?")
    return text


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 with a diff when template.yaml is stale")
    args = parser.parse_args(argv)
    try:
        text = render(registry_vendors(), engine_version())
    except SourceError as error:
        print(f"render_template: {error}", file=sys.stderr)
        return 1
    current = TEMPLATE.read_text() if TEMPLATE.is_file() else ""
    if args.check:
        if current == text:
            return 0
        sys.stdout.writelines(difflib.unified_diff(current.splitlines(keepends=True), text.splitlines(keepends=True),
                                                   "template.yaml", "rendered"))
        print("template.yaml is not what template/ and the registry render: run `make template`", file=sys.stderr)
        return 1
    if current != text:
        TEMPLATE.write_text(text)
        print(f"wrote {_shown(TEMPLATE)} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
