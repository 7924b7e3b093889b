"""Memory model per (stage, backend): predicted peak = base + slope * frames * megapixels.

Seeded from the backend's declared ``Resources.gpu_memory`` or from config
(``execution.gpus.memory_models``), then refined from every measured peak (kept in the ledger's
``memory_samples`` table so the next run starts informed). Predictions are deliberately an *upper
envelope*: a least-squares line shifted up by the largest residual seen, because under-predicting
costs an OOM and a retry while over-predicting only costs some packing density.

An OOM at work size ``w`` with ``p`` MB reserved raises a floor: any task at least about that large
is predicted above ``oom_factor * p``. The floor is withdrawn when a task at least as large later
succeeds with a measured peak below ``p`` -- then the OOM was caused by a neighbour on the same GPU,
not by the task's own size.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from y2r.stages.base import MemoryProfile

MAX_SAMPLES = 512
MAX_OOMS = 64


@dataclass
class _Fit:
    seed: MemoryProfile
    samples: list[tuple[float, float]] = field(default_factory=list)  # (work = frames*Mpix, peak_mb)
    ooms: list[tuple[float, float]] = field(default_factory=list)  # (work, reserved_mb that OOMed)
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
        """Memory a loaded, idle worker holds (the prediction for an empty task)."""
        return self.predict_work(stage, backend, 0.0)

    def predict(self, stage: str, backend: str, frames: int, pixels: int) -> float:
        return self.predict_work(stage, backend, frames * pixels / 1e6)

    def predict_work(self, stage: str, backend: str, work: float) -> float:
        """Predicted peak for ``work`` megapixel-frames."""
        f = self._fit(stage, backend)
        pred = f.base + f.slope * work + f.envelope
        for w_oom, p_oom in f.ooms:
            # A task at least about this large needed more than p_oom: predict above it.
            if work >= w_oom * 0.9:
                pred = max(pred, p_oom * self.oom_factor)
        return max(0.0, pred)

    def observe(self, stage: str, backend: str, frames: int, pixels: int, peak_mb: float) -> None:
        f = self._fit(stage, backend)
        work = frames * pixels / 1e6
        f.samples.append((work, float(peak_mb)))
        # Bound the history: keep the most recent samples (models of a run are stationary enough).
        if len(f.samples) > MAX_SAMPLES:
            f.samples = f.samples[-MAX_SAMPLES:]
        # A success at least as large as an OOM, with a lower peak than was reserved then, shows the
        # OOM came from a neighbour: withdraw that floor.
        f.ooms = [(w, p) for w, p in f.ooms if not (work >= w and peak_mb < p)]
        f.refit()
        self.observed[(stage, backend)] += 1

    def observe_oom(self, stage: str, backend: str, frames: int, pixels: int, predicted_mb: float) -> None:
        f = self._fit(stage, backend)
        f.ooms.append((frames * pixels / 1e6, float(predicted_mb)))
        if len(f.ooms) > MAX_OOMS:
            f.ooms = f.ooms[-MAX_OOMS:]

    def describe(self, stage: str, backend: str) -> dict:
        f = self._fit(stage, backend)
        return {"base_mb": round(self.base(stage, backend), 1), "mb_per_mpix_frame": round(f.slope, 3),
                "envelope_mb": round(f.envelope, 1), "samples": len(f.samples), "ooms": len(f.ooms)}

    def load_samples(self, rows: list[dict]) -> None:
        """Warm start from the ledger's ``memory_samples`` rows (oldest first)."""
        for r in rows:
            if r["outcome"] == "ok":
                self.observe(r["stage"], r["backend"], r["frames"], r["pixels"], r["peak_mb"])
            elif r["outcome"] == "oom":
                self.observe_oom(r["stage"], r["backend"], r["frames"], r["pixels"], r["peak_mb"])
