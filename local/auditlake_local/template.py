"""Reads template.yaml with its CloudFormation short-form tags, so tests and the demo build from the real stack."""

from __future__ import annotations

import base64
from functools import cache
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = PROJECT_ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Ref x` into `{"Ref": x}` and `!Sub ...` into `{"Fn::Sub": ...}`."""


def _construct_tag(loader: _CfnLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix in ("Ref", "Condition"):  # `!Condition x` is {"Condition": x}, as in a JSON template
        return {tag_suffix: value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template_text(text: str) -> dict[str, Any]:
    return yaml.load(text, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass


@cache
def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    """The parsed template; callers must not mutate it (it is cached)."""
    return load_template_text(path.read_text())


def resolve(value: Any, refs: dict[str, Any], attrs: dict[tuple[str, str], Any] | None = None,
            conditions: dict[str, bool] | None = None) -> Any:
    """Evaluates the intrinsics a value uses (Ref, GetAtt, Sub, If, Join, Select, Base64) against known names."""
    attrs = attrs or {}
    conditions = conditions or {}
    if isinstance(value, list):
        return [resolve(item, refs, attrs, conditions) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (key, arg), = value.items()
        if key == "Ref":
            return refs[arg]
        if key == "Fn::GetAtt":
            return attrs[(arg[0], arg[1])]
        if key == "Fn::If":
            name, when_true, when_false = arg
            return resolve(when_true if conditions[name] else when_false, refs, attrs, conditions)
        if key == "Fn::Join":
            separator, items = arg
            return separator.join(str(i) for i in resolve(items, refs, attrs, conditions))
        if key == "Fn::Select":
            index, items = resolve(arg, refs, attrs, conditions)
            return items[int(index)]
        if key == "Fn::Base64":
            return base64.b64encode(str(resolve(arg, refs, attrs, conditions)).encode()).decode()
        if key == "Fn::Sub":
            template, local = (arg, {}) if isinstance(arg, str) else (arg[0], resolve(arg[1], refs, attrs, conditions))
            return _substitute(template, {**refs, **local}, attrs)
    return {k: resolve(v, refs, attrs, conditions) for k, v in value.items()}


def _substitute(template: str, names: dict[str, Any], attrs: dict[tuple[str, str], Any]) -> str:
    out, rest = [], template
    while "${" in rest:
        before, _, after = rest.partition("${")
        name, _, rest = after.partition("}")
        out.append(before)
        if name.startswith("!"):
            out.append("${" + name[1:] + "}")
        elif "." in name and name not in names:
            logical_id, attribute = name.split(".", 1)
            out.append(str(attrs[(logical_id, attribute)]))
        else:
            out.append(str(names[name]))
    out.append(rest)
    return "".join(out)
