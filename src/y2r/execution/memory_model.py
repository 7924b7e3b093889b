"""Memory model per (stage, backend): predicted peak = base + slope * frames * megapixels.

Seeded from the backend's declared ``Resources.gpu_memory`` or from config
(``execution.gpus.memory_models``), then refined from every measured peak (kept in the ledger so the
next run starts informed). Predictions are deliberately an *upper envelope*: a least-squares line
shifted up by the largest residual seen, because under-predicting costs an OOM and a retry while
over-predicting only costs some packing density. An OOM raises a floor for that work size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from y2r.stages.base import MemoryProfile


@dataclass
class _Fit:
    seed: MemoryProfile
    samples: list[tuple[float, float]] = field(default_factory=list)  # (work = frames*Mpix, peak_mb)
    ooms: list[tuple[float, float]] = field(default_factory=list)  # (work, predicted_mb that OOMed)
    base: float = 0.0
    slope: float = 0.0
    envelope: float = 0.0

    def refit(self) -> None:
        if not self.samples:
            self.base, self.slope, self.envelope = self.seed.base_mb, self.seed.mb_per_mpix_frame, 0.0
            return
        w = np.array([s[0] for s in self.samples])
        p = np.array([s[1] for s in self.samples])
        if len(self.samples) >= 2 and np.ptp(w) > 1e-9:
            slope, base = np.polyfit(w, p, 1)
            slope = max(0.0, float(slope))
            base = float(np.mean(p - slope * w))
        else:
            # One sample (or one work size): keep the seed's slope, move the base through the sample.
            slope = self.seed.mb_per_mpix_frame
            base = float(np.max(p - slope * w))
        resid = p - (base + slope * w)
        self.base, self.slope = base, slope
        self.envelope = float(max(0.0, resid.max()))


class MemoryModel:
    """Predicts a task's peak memory (MB) on its device from the video's frames and pixels."""

    def __init__(self, seeds: dict[tuple[str, str], MemoryProfile] | None = None, oom_factor: float = 1.3):
        self._fits: dict[tuple[str, str], _Fit] = {}
        self._seeds = dict(seeds or {})
        self.oom_factor = oom_factor
        self.observed: dict[tuple[str, str], int] = defaultdict(int)

    def _fit(self, stage: str, backend: str) -> _Fit:
        key = (stage, backend)
        if key not in self._fits:
            f = _Fit(seed=self._seeds.get(key, MemoryProfile()))
            f.refit()
            self._fits[key] = f
        return self._fits[key]

    def seed(self, stage: str, backend: str, profile: MemoryProfile) -> None:
        self._seeds[(stage, backend)] = profile
        self._fits.pop((stage, backend), None)

    def base(self, stage: str, backend: str) -> float:
        """Memory a loaded, idle worker holds."""
        f = self._fit(stage, backend)
        return max(0.0, f.base + f.envelope)

    def predict(self, stage: str, backend: str, frames: int, pixels: int) -> float:
        f = self._fit(stage, backend)
        work = frames * pixels / 1e6
        pred = f.base + f.slope * work + f.envelope
        for w_oom, p_oom in f.ooms:
            # A task at least this large needed more than p_oom: predict above it.
            if work >= w_oom * 0.9:
                pred = max(pred, p_oom * self.oom_factor)
        return max(0.0, pred)

    def observe(self, stage: str, backend: str, frames: int, pixels: int, peak_mb: float) -> None:
        f = self._fit(stage, backend)
        f.samples.append((frames * pixels / 1e6, float(peak_mb)))
        # Bound the history: keep the most recent samples (models of a run are stationary enough).
        if len(f.samples) > 512:
            f.samples = f.samples[-512:]
        f.refit()
        self.observed[(stage, backend)] += 1

    def observe_oom(self, stage: str, backend: str, frames: int, pixels: int, predicted_mb: float) -> None:
        f = self._fit(stage, backend)
        f.ooms.append((frames * pixels / 1e6, float(predicted_mb)))

    def describe(self, stage: str, backend: str) -> dict:
        f = self._fit(stage, backend)
        return {"base_mb": round(f.base + f.envelope, 1), "mb_per_mpix_frame": round(f.slope, 3),
                "samples": len(f.samples), "ooms": len(f.ooms)}

    def load_samples(self, rows: list[dict]) -> None:
        """Warm start from the ledger's ``memory_samples`` rows."""
        for r in rows:
            if r["outcome"] == "ok":
                self.observe(r["stage"], r["backend"], r["frames"], r["pixels"], r["peak_mb"])
            elif r["outcome"] == "oom":
                self.observe_oom(r["stage"], r["backend"], r["frames"], r["pixels"], r["peak_mb"])
