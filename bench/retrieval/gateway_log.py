"""Where a route's time goes at the gateway, from Traefik's JSON access log: the gateway's own
overhead (forward-auth and the other middlewares) and the service's time (Traefik's origin
duration: for a streamed answer, the whole stream)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class GatewaySplit:
    requests: int
    overhead_p50_ms: float
    origin_p50_ms: float


class AccessLog:
    """The requests logged since :meth:`mark`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def mark(self) -> None:
        self.offset = self.path.stat().st_size if self.path.exists() else 0

    def split(self, method: str, path_suffix: str) -> GatewaySplit:
        with self.path.open("rb") as f:
            f.seek(self.offset)
            rows = [json.loads(line) for line in f if line.strip()]
        chosen = [
            r
            for r in rows
            if r.get("RequestMethod") == method
            and str(r.get("RequestPath", "")).partition("?")[0].endswith(path_suffix)
        ]
        overhead = [r["Overhead"] / NS_PER_MS for r in chosen]
        origin = [r["OriginDuration"] / NS_PER_MS for r in chosen]
        return GatewaySplit(
            len(chosen),
            float(np.median(overhead)) if overhead else float("nan"),
            float(np.median(origin)) if origin else float("nan"),
        )
