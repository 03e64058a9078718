"""A run's report, read back from what the layout's names hold after the run (never from intent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..values import valueclass
from .graph import State


@valueclass(kw_only=True)
class ImageResult:
    stage: str
    name: str
    digest: str
    cached: bool
    state: State
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "name": self.name, "digest": self.digest, "cached": self.cached,
                "state": self.state, "reason": self.reason}


@dataclass
class Report:
    layout: str
    images: list[ImageResult] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)  # names the run took away (nothing to hold)
    layers_compressed: int = 0  # layers gzip/zstd-compressed by this whole command (planning included)
    rollout: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    remote: dict[str, int] | None = None  # remote cache counters

    def to_json(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"layersCompressed": self.layers_compressed}
        if self.remote is not None:
            stats["remote"] = self.remote
        out: dict[str, Any] = {"images": [i.to_json() for i in self.images], "stats": stats}
        if self.removed:
            out["removed"] = self.removed
        if self.rollout is not None:
            out["rollout"] = self.rollout
        if self.notes:
            out["notes"] = self.notes
        return out
