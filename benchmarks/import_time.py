"""Import time of ``import otel_llm`` and ``otel-llm --version``, side by side for two copies.

Each measurement is a fresh interpreter; runs alternate between the copies (A, B, A, B, ...) so
drift on a shared machine lands on both. Wall time of the whole process is what a user waits
for; ``-X importtime``'s total for ``otel_llm`` is what our own imports cost.

    .venv/bin/python benchmarks/import_time.py                    # this checkout only
    .venv/bin/python benchmarks/import_time.py --against ../base  # this checkout vs another copy
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CASES = {
    "import otel_llm": ["-X", "importtime", "-c", "import otel_llm"],
    "from otel_llm import LLMSpanProcessor": [
        "-X",
        "importtime",
        "-c",
        "from otel_llm import LLMSpanProcessor",
    ],
    "otel-llm --version": ["-X", "importtime", "-m", "otel_llm", "--version"],
}


def measure(copy: Path, arguments: list[str]) -> tuple[float, float]:
    """(wall ms of the process, cumulative µs of the ``otel_llm`` import) for one run."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, *arguments],
        capture_output=True,
        text=True,
        check=True,
        cwd=copy,
        env={"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"},
    )
    wall_ms = (time.perf_counter() - started) * 1000
    ours = 0.0
    for line in result.stderr.splitlines():
        # "import time: self [us] | cumulative | <two spaces per level>imported package"
        parts = line.removeprefix("import time:").split("|")
        if len(parts) != 3 or not parts[1].strip().isdigit():
            continue
        name = parts[2].removeprefix(" ")
        # Top-level imports of ours: the package, and what its lazy names load on first use.
        if not name.startswith(" ") and name.split(".")[0] == "otel_llm":
            ours += float(parts[1])
    return wall_ms, ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, help="another copy of the repository")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    copies = {"this": ROOT}
    if args.against is not None:
        copies["other"] = args.against.resolve()
    samples: dict[str, dict[str, list[tuple[float, float]]]] = {
        case: {name: [] for name in copies} for case in CASES
    }
    for _ in range(args.rounds):
        for case, arguments in CASES.items():
            for name, copy in copies.items():
                samples[case][name].append(measure(copy, arguments))
    report: dict[str, dict[str, dict[str, float]]] = {}
    for case, by_copy in samples.items():
        report[case] = {}
        for name, runs in by_copy.items():
            report[case][name] = {
                "wall_ms": statistics.median(wall for wall, _ in runs),
                "otel_llm_ms": statistics.median(ours for _, ours in runs) / 1000,
            }
    if args.json:
        print(json.dumps({"copies": {k: str(v) for k, v in copies.items()}, **report}))
        return
    print(
        f"median of {args.rounds} fresh interpreters each; copies: "
        + ", ".join(f"{name}={path}" for name, path in copies.items())
    )
    for case, by_copy in report.items():
        cells = "  ".join(
            f"{name}: {values['wall_ms']:.0f} ms wall, {values['otel_llm_ms']:.1f} ms in otel_llm"
            for name, values in by_copy.items()
        )
        ratio = ""
        if "other" in by_copy:
            share = by_copy["this"]["wall_ms"] / by_copy["other"]["wall_ms"]
            ratio = f"  (this/other wall {share:.2f})"
        print(f"{case:40} {cells}{ratio}")


if __name__ == "__main__":
    main()
