"""CloudWatch alarms and Logs metric filters evaluated as AWS evaluates them, for what moto only stores.

moto keeps alarms, metric data and metric filters but evaluates no alarm and turns no log line
into a metric. Here, from definitions read out of a synthesized or deployed template:

    metric filter  a log line matches its pattern (the JSON form `{ $.field = "value" }`, the one
                   this project writes; any other pattern is refused, not guessed) and adds the
                   filter's metric value at the line's time
    alarm          its metric's datapoints over the evaluation window (read from CloudWatch with
                   its statistic and period) compared with its threshold as CloudWatch compares
                   them: `DatapointsToAlarm` of `EvaluationPeriods` breaching, missing data as the
                   alarm treats it
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "GreaterThanOrEqualToThreshold": lambda value, threshold: value >= threshold,
    "GreaterThanThreshold": lambda value, threshold: value > threshold,
    "LessThanThreshold": lambda value, threshold: value < threshold,
    "LessThanOrEqualToThreshold": lambda value, threshold: value <= threshold,
}
_JSON_EQUALS = re.compile(r'^\{\s*\$\.(?P<field>[A-Za-z_][\w.]*)\s*=\s*"(?P<value>[^"*]*)"\s*\}$')


def datapoints(cloudwatch: Any, alarm: Mapping[str, Any], end: datetime) -> list[float]:
    """The alarm's metric over its evaluation window ending at `end`, oldest first."""
    period, periods = int(alarm["Period"]), int(alarm["EvaluationPeriods"])
    statistics = cloudwatch.get_metric_statistics(
        Namespace=alarm["Namespace"],
        MetricName=alarm["MetricName"],
        Dimensions=alarm.get("Dimensions", []),
        StartTime=end - timedelta(seconds=period * periods),
        EndTime=end,
        Period=period,
        Statistics=[alarm["Statistic"]],
    )["Datapoints"]
    return [point[alarm["Statistic"]] for point in sorted(statistics, key=lambda point: point["Timestamp"])]


def alarm_state(alarm: Mapping[str, Any], values: Sequence[float]) -> tuple[str, str]:
    """("ALARM" or "OK", the reason) for the alarm given its window's datapoints."""
    periods = int(alarm["EvaluationPeriods"])
    breaching = sum(COMPARISONS[alarm["ComparisonOperator"]](value, float(alarm["Threshold"])) for value in values)
    if alarm.get("TreatMissingData") == "breaching":
        breaching += periods - len(values)
    state = "ALARM" if breaching >= int(alarm.get("DatapointsToAlarm", periods)) else "OK"
    reason = (
        f"{alarm['Statistic']} of {alarm['MetricName']} over {alarm['Period']} s: "
        f"{', '.join(f'{value:.3g}' for value in values) or 'no datapoint'} against threshold "
        f"{float(alarm['Threshold']):.3g} ({alarm['ComparisonOperator']})"
    )
    return state, reason


def filter_matches(pattern: str, line: str) -> bool:
    """Whether CloudWatch Logs would count `line` under the JSON filter pattern `{ $.field = "value" }`."""
    match = _JSON_EQUALS.match(pattern.strip())
    if match is None:
        raise ValueError(f'metric filter pattern {pattern!r}: only {{ $.field = "value" }} is evaluated here')
    try:
        value: Any = json.loads(line)
    except ValueError:
        return False  # a JSON pattern matches JSON log events only
    for key in match["field"].split("."):
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    return isinstance(value, str) and value == match["value"]


def publish_filtered(cloudwatch: Any, metric_filter: Mapping[str, Any], events: Iterable[tuple[datetime, str]]) -> int:
    """What CloudWatch Logs publishes for a metric filter (its one `MetricTransformations` entry)
    given the log events (time, line): the metric value at each matching line's time. Returns
    how many lines matched."""
    (transformation,) = metric_filter["MetricTransformations"]
    data = [
        {"MetricName": transformation["MetricName"], "Timestamp": moment, "Value": float(transformation["MetricValue"])}
        for moment, line in events
        if filter_matches(metric_filter["FilterPattern"], line)
    ]
    for start in range(0, len(data), 1000):  # PutMetricData's limit per call
        cloudwatch.put_metric_data(Namespace=transformation["MetricNamespace"], MetricData=data[start : start + 1000])
    return len(data)
