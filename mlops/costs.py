"""Monthly endpoint cost of a stage, from the dated price table `mlops/prices.json`.

Instance-backed endpoints bill per instance-hour whether or not requests arrive, so the
estimate is a range: the autoscaling minimum to the maximum, around the clock. Serverless
endpoints bill per GB-second of processing, so their cost is usage-based; it is shown per
request-second and for an explicitly assumed traffic, never as if it were a fixed price.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from infra.config import ServerlessConfig, StageConfig

PRICES_FILE = Path(__file__).with_name("prices.json")

# The traffic a serverless figure assumes, stated next to every such figure.
ASSUMED_REQUESTS_PER_MONTH = 1_000_000
ASSUMED_SECONDS_PER_REQUEST = 0.1


def load_prices() -> dict[str, Any]:
    return json.loads(PRICES_FILE.read_text())


def endpoint_cost_lines(config: StageConfig, prices: dict[str, Any], *, billed: bool = True) -> list[str]:
    """A header line for the stage, then one line per enabled network's endpoint, then a total."""
    header = f"stage {config.name} ({config.region})"
    if not billed:
        header += ": deploys to the local moto server, nothing is billed; the same endpoints in AWS would cost"
    if config.region != prices["region"]:
        return [header, f"  no prices for {config.region} in {PRICES_FILE.name} (it holds {prices['region']} only)"]
    if config.endpoint.serverless is not None:
        return [header, *_serverless_lines(config.networks, config.endpoint.serverless, prices["serverless_inference"])]
    return [header, *_instance_lines(config, prices)]


def _instance_lines(config: StageConfig, prices: dict[str, Any]) -> list[str]:
    table = prices["real_time_inference"]
    hours = prices["hours_per_month"]
    low, high = config.endpoint.min_instances, config.endpoint.max_instances
    instances = f"{low} instance{'s' if low > 1 else ''}" if low == high else f"{low}..{high} instances"
    lines, total_low, total_high, missing = [], 0.0, 0.0, []
    for network in config.networks:
        instance_type = config.endpoint_instance_type(network)
        hourly = table["per_instance_hour"].get(instance_type)
        if hourly is None:
            missing.append(instance_type)
            lines.append(f"  {network:<12} {instance_type:<14} no price in {PRICES_FILE.name}")
            continue
        monthly_low, monthly_high = low * hourly * hours, high * hourly * hours
        total_low, total_high = total_low + monthly_low, total_high + monthly_high
        lines.append(
            f"  {network:<12} {instance_type:<14} {instances} x ${hourly:.3f}/h x {hours} h"
            f" = {_range(monthly_low, monthly_high)} / month"
        )
    total = f"  {'total':<27} {_range(total_low, total_high)} / month"
    if missing:
        total += f" (incomplete: no price for {', '.join(sorted(set(missing)))})"
    lines.append(total)
    lines.append(f"  on-demand prices retrieved {table['retrieved']}; sources and caveats: mlops/{PRICES_FILE.name}")
    return lines


def _serverless_lines(networks: tuple[str, ...], serverless: ServerlessConfig, table: dict[str, Any]) -> list[str]:
    memory_gb = serverless.memory_size_mb / 1024
    per_second = memory_gb * table["per_gb_second"]
    assumed_seconds = ASSUMED_REQUESTS_PER_MONTH * ASSUMED_SECONDS_PER_REQUEST
    per_endpoint = per_second * assumed_seconds
    lines = [
        f"  serverless, {serverless.memory_size_mb} MB, up to {serverless.max_concurrency} concurrent "
        f"requests: usage-based, ${per_second:.6f} per second of processing "
        f"({memory_gb:g} GB x ${table['per_gb_second']:.5f}/GB-s); nothing while idle"
    ]
    assumption = (
        f"assuming {ASSUMED_REQUESTS_PER_MONTH:,} requests/month of {ASSUMED_SECONDS_PER_REQUEST * 1000:.0f} ms each"
    )
    lines += [f"  {network:<12} ${per_endpoint:.2f} / month {assumption}" for network in networks]
    lines.append(f"  {'total':<12} ${per_endpoint * len(networks):.2f} / month {assumption}")
    lines.append(f"  not included: {table['not_included']}")
    lines.append(f"  prices retrieved {table['retrieved']}; sources and caveats: mlops/{PRICES_FILE.name}")
    return lines


def _range(low: float, high: float) -> str:
    return f"${low:,.2f}" if low == high else f"${low:,.2f} .. ${high:,.2f}"
