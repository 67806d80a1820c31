"""The example alert rules (infra/prometheus/alerts.yml): loaded by the Prometheus that
docker compose runs, written against metrics the code defines, valid for promtool, and
firing on the series they are meant for (tests/infra/alerts_test.yml, `promtool test rules`)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import PurePosixPath
from typing import Any

import yaml
from prometheus_client.metrics import MetricWrapperBase

from services.notification.metrics import DeliveryQueueCollector
from shared import metrics
from shared.config import REPO_ROOT
from tests.support import debian

PROMETHEUS = REPO_ROOT / "infra" / "prometheus.yml"
RULES = REPO_ROOT / "infra" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO_ROOT / "tests" / "infra" / "alerts_test.yml"
#: What Prometheus itself records for every target.
BUILT_IN = {"up"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left",
             "group_right", "inf", "nan"}


def defined_metrics() -> set[str]:
    """The names of every series the code exposes (a counter's _total, a histogram's
    _bucket/_count/_sum), from shared/metrics.py and the delivery queue's collector."""
    families = [family for value in vars(metrics).values() if isinstance(value, MetricWrapperBase)
                for family in value.describe()]
    families += list(DeliveryQueueCollector(None, limit=1).describe())  # type: ignore[arg-type]
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    return {family.name + suffix for family in families for suffix in suffixes[family.type]}


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, label names of
    by/without/on/ignoring, strings, label matchers and durations left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    text = re.sub(r"\boffset\s+\w+", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if match.group().lower() in _KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(match.group())
    return names


def _rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _queries(rule: dict[str, Any]) -> list[str]:
    """The rule's expression and the queries its annotations run."""
    texts = [rule["expr"]]
    for annotation in rule.get("annotations", {}).values():
        texts += [query.encode().decode("unicode_escape") for query in re.findall(r'query\s+"((?:[^"\\]|\\.)*)"',
                                                                                   annotation)]
    return texts


def test_the_expression_reader_finds_metrics_and_nothing_else() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (service, le) (rate(a_bucket{endpoint!~"/m|x"}[5m]))) > 1e3'
        " and on (service) b offset 5m unless group by (job) (max_over_time(up[1d]))"
    ) == {"a_bucket", "b", "up"}


def test_compose_s_prometheus_loads_the_rules() -> None:
    compose = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())
    mounts = {target: source for source, target, *_ in
              (volume.split(":") for volume in compose["services"]["prometheus"]["volumes"])}
    config_at = PurePosixPath("/etc/prometheus/prometheus.yml")
    assert mounts[str(config_at)] == "./infra/prometheus.yml"
    rule_files = yaml.safe_load(PROMETHEUS.read_text())["rule_files"]
    # Each rule file, relative to the configuration in the container, is a mounted repository file.
    in_container = {str(config_at.parent / name) for name in rule_files}
    assert {mounts.get(path) for path in in_container} == {"./infra/prometheus/alerts.yml"}
    # ... and relative to infra/prometheus.yml in the repository, the same file (promtool below).
    assert {(PROMETHEUS.parent / name).resolve() for name in rule_files} == {RULES.resolve()}


def test_the_alerts_the_operators_need_are_there_with_a_severity_and_text() -> None:
    rules = _rules()
    names = {rule["alert"] for rule in rules}
    assert {"NocontactRelayLagGrowing", "NocontactConsumerLag", "NocontactDeadLetters",
            "NocontactWebhookFailureRatio", "NocontactDeliveryBacklogAge", "NocontactHighErrorRate",
            "NocontactHighLatencyP99", "NocontactTargetDown", "NocontactServiceGone"} <= names
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_metric_an_alert_reads_is_defined_by_the_code() -> None:
    defined = defined_metrics() | BUILT_IN
    assert {"nocontact_http_request_duration_seconds_bucket", "nocontact_dead_letters_total",
            "nocontact_webhook_oldest_due_wait_seconds"} <= defined
    for rule in _rules():
        named = set().union(*(metric_names(query) for query in _queries(rule)))
        assert named, f"{rule['alert']} reads no metric"
        assert named <= defined, f"{rule['alert']} reads metrics nothing defines: {sorted(named - defined)}"


def test_the_readme_explains_every_metric() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### Metrics", 1)[1].split("\n### ", 1)[0]
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in defined_metrics()}
    missing = {name for name in families if name not in section}
    assert not missing, f"README.md, Metrics, does not explain {sorted(missing)}"


def test_promtool_accepts_the_configuration_and_the_rules_pass_their_unit_tests() -> None:
    promtool = debian.program(shutil.which("promtool") or "/usr/bin/promtool", "prometheus")
    for command in (["check", "config", str(PROMETHEUS)], ["check", "rules", str(RULES)],
                    ["test", "rules", str(RULE_TESTS)]):
        result = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
