"""Writes the template's copies of the rule files and flagd's flags under deploy/kubernetes.

The generated service's ``scripts/kubernetes_assets.py`` keeps its PrometheusRule and
flagd's flags in step with the files its compose stack reads; this does the same for the
template, where each rule file is rendered only for some answers: every file's groups go
into ``components/prometheus-operator/prometheus-rules.yaml.jinja`` under the condition
of the file's name, through the service script's own ``rule_groups``, so a fresh render
is what that script writes (``tests/test_kubernetes.py`` checks both).

    uv run python scripts/kubernetes_assets.py          # writes them
    uv run python scripts/kubernetes_assets.py --check  # exits 1 if they are out of date
"""

from __future__ import annotations

import argparse
import importlib.machinery
import importlib.util
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "template"
KUBERNETES = TEMPLATE / "{% if kubernetes %}deploy{% endif %}" / "kubernetes"
RULES = (
    TEMPLATE
    / "{% if observability %}observability{% endif %}/{% if metrics %}prometheus{% endif %}/rules"
)
FLAGD = '{% if feature_flags and flag_provider == "flagd" %}'
FLAGS = TEMPLATE / f"{FLAGD}flags{{% endif %}}" / "flags.json"
PROMETHEUS_RULE = (
    KUBERNETES
    / "{% if metrics %}components{% endif %}/prometheus-operator/prometheus-rules.yaml.jinja"
)
FLAGD_FLAGS = KUBERNETES / "base" / f"{FLAGD}flagd{{% endif %}}" / "flags.json"
SERVICE_SCRIPT = (
    TEMPLATE
    / "scripts"
    / '{% if kubernetes and (metrics or (feature_flags and flag_provider == "flagd")) %}'
    "kubernetes_assets.py{% endif %}"
)
CONDITION = re.compile(r"^\{% if (?P<condition>.+?) %\}(?P<name>.+)\{% endif %\}$")


def service_script() -> tuple[Callable[[str, str], str], Callable[[str], str]]:
    """``rule_groups`` and ``rule_head`` of the generated service's script."""
    # Its file name ends in `{% endif %}`: no suffix for importlib to choose a loader by.
    loader = importlib.machinery.SourceFileLoader("service_kubernetes_assets", str(SERVICE_SCRIPT))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    # No __pycache__ beside it: inside template/ it would be a file of the template.
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = writes_bytecode
    return module.rule_groups, module.rule_head


def rule_files() -> list[tuple[str, str | None, Path]]:
    """(rendered name, condition or None, template path) of each rule file, by name."""
    files = []
    for path in RULES.iterdir():
        if path.name.endswith(".jinja"):
            raise SystemExit(f"{path}: a rule file with Jinja needs its own copy here")
        match = CONDITION.match(path.name)
        name, condition = (match["name"], match["condition"]) if match else (path.name, None)
        files.append((name, condition, path))
    return sorted(files)


def prometheus_rule() -> str:
    rule_groups, rule_head = service_script()
    parts = [rule_head(PROMETHEUS_RULE.read_text(encoding="utf-8"))]
    for name, condition, path in rule_files():
        groups = rule_groups(f"observability/prometheus/rules/{name}", path.read_text("utf-8"))
        block = f"{{% raw %}}{groups}{{% endraw %}}\n"
        parts.append(f"{{% if {condition} %}}\n{block}{{% endif %}}\n" if condition else block)
    return "".join(parts)


def expected() -> dict[Path, bytes]:
    return {PROMETHEUS_RULE: prometheus_rule().encode(), FLAGD_FLAGS: FLAGS.read_bytes()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if stale")
    args = parser.parse_args(argv)
    stale = {path: data for path, data in expected().items() if path.read_bytes() != data}
    for path, data in stale.items():
        if args.check:
            print(f"{path.relative_to(REPO_ROOT)} is out of date: run {__file__}", file=sys.stderr)
        else:
            path.write_bytes(data)
            print(f"wrote {path.relative_to(REPO_ROOT)}")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
