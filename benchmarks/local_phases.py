"""Where the time of `mlops local` goes: one run (CNN by default) as a user starts it, then its
phase table (the report folder's phases.json: seconds per phase and per pipeline step), the
wall time of the whole command, the CPU it ran on and the load average around it.

    .venv/bin/python benchmarks/local_phases.py                  # installs done: ./dev.sh test -q once
    .venv/bin/python benchmarks/local_phases.py --network rnn -- --param epochs=2

Arguments after `--` go to `mlops local` unchanged. The run's own output goes to a log file in
the report folder, named at the end. Timing figures on a shared machine are noisy: each table
carries the load average before and after the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
MLOPS = Path(sys.executable).with_name("mlops")
# The CPU features that decide TensorFlow's speed here (its wheels use AVX/AVX2/FMA; AVX-512 and AMX if present).
INTERESTING_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def cpu_description() -> str:
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    model = fields.get("model name") or platform.processor() or "unknown CPU"
    present = [flag for flag in INTERESTING_FLAGS if flag in fields.get("flags", "").split()]
    return (
        f"{model} (family {fields.get('cpu family', '?')} model {fields.get('model', '?')}); "
        f"{os.cpu_count()} logical CPUs; flags: {' '.join(present) or 'none of ' + ' '.join(INTERESTING_FLAGS)}"
    )


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--network", default="cnn")
    parser.add_argument("--report-dir", type=Path, help="default: a temporary folder, kept")
    parser.add_argument("mlops_args", nargs="*", help="after --: more `mlops local` options")
    options = parser.parse_args()
    report_dir = options.report_dir or Path(tempfile.mkdtemp(prefix="local-phases-")) / options.network
    report_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = report_dir.parent / f"{report_dir.name}.log"
    command = [str(MLOPS), "local", options.network, "--report-dir", str(report_dir), *options.mlops_args]

    print(f"cpu: {cpu_description()}")
    print(f"load average before (1, 5, 15 min): {load_average()}")
    print(f"running: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        exit_code = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"load average after  (1, 5, 15 min): {load_average()}")

    phases_file = report_dir / "phases.json"
    if not phases_file.exists():
        print(f"no {phases_file}: the run ended with exit code {exit_code} before writing its report; log: {log_path}")
        return 1
    document = json.loads(phases_file.read_text())
    width = max(len(phase["phase"]) for phase in document["phases"])
    print(f"\n{'phase':<{width}}  seconds  status")
    for phase in document["phases"]:
        print(f"{phase['phase']:<{width}}  {phase['seconds']:7.1f}  {phase['status']}")
    print(f"{'sum of the phases':<{width}}  {sum(phase['seconds'] for phase in document['phases']):7.1f}")
    print(f"{'wall time of the command':<{width}}  {wall:7.1f}  exit code {exit_code}, {document['outcome']}")
    print(
        f"{'CPU time of the command and its children':<{width}}  {usage.ru_utime + usage.ru_stime:7.1f}  "
        "(user + system: less sensitive to the load than wall time)"
    )
    cdk = [phase for phase in document["phases"] if _is_cdk_phase(phase["phase"])]
    print(
        f"{'of which the CDK CLI phases':<{width}}  {sum(phase['seconds'] for phase in cdk):7.1f}  "
        f"({', '.join(phase['phase'] for phase in cdk)})"
    )
    steps = document.get("steps") or []
    if steps:
        print("\npipeline step  seconds  status")
        for step in steps:
            print(f"{step['step']:<13}  {step['seconds']:7.1f}  {step['status']}")
    print(f"\nreport: {report_dir}  log: {log_path}")
    return 0 if exit_code == 0 else 1


def _is_cdk_phase(name: str) -> bool:
    return any(word in name for word in ("Bootstrap", "Deploy", "Synth"))


if __name__ == "__main__":
    sys.exit(main())
