"""How long the embedded stack takes to be ready (every service's /readyz = 200 behind the
gateway) and to stop, all-in-one vs split, measured in one run on this machine.

    uv run python -m bench.startup [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from docuchat.devstack import free_port
from docuchat.stack import SERVICES, DevStack, StackConfig


def measure(split: bool, data_dir: Path) -> tuple[float, float]:
    config = StackConfig(
        data_dir=data_dir,
        gateway_port=free_port(),
        postgres_port=None,
        kafka_port=None,
        base_service_port=0,
        split=split,
    )
    stack = DevStack(config)
    started = time.perf_counter()
    stack.start()
    for service in SERVICES:
        assert httpx.get(f"{stack.gateway_url}/{service}/readyz").status_code == 200
    ready = time.perf_counter() - started
    started = time.perf_counter()
    stack.stop()
    return ready, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'mode':<12}{'run':<6}{'ready s':>10}{'stop s':>10}  (run 0 includes initdb)")
    for split in (False, True):
        mode = "split" if split else "all-in-one"
        with tempfile.TemporaryDirectory() as tmp:
            readies = []
            for run in range(args.runs):
                ready, stop = measure(split, Path(tmp))
                readies.append(ready)
                print(f"{mode:<12}{run:<6}{ready:>10.2f}{stop:>10.2f}")
        print(f"{mode:<12}{'median':<6}{statistics.median(readies):>10.2f}")


if __name__ == "__main__":
    main()
