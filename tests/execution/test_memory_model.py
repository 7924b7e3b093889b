"""The GPU memory model: seeds, upper envelope, OOM floors and their withdrawal, warm start."""

import pytest

from y2r.execution.memory_model import MemoryModel
from y2r.stages.base import MemoryProfile

W = 1_000_000  # pixels: one megapixel, so frames == megapixel-frames


def test_seed_predicts_until_measured():
    m = MemoryModel({("camera", "vipe"): MemoryProfile(13_000, 10.0)})
    assert m.predict("camera", "vipe", 100, W) == pytest.approx(14_000)
    assert m.base("camera", "vipe") == pytest.approx(13_000)
    assert m.predict("tracks", "x", 100, W) == 0.0  # no seed, nothing known


def test_fit_is_an_upper_envelope_of_the_measured_peaks():
    m = MemoryModel({("camera", "vipe"): MemoryProfile(10_000, 0.0)})
    peaks = {100: 14_100, 200: 15_050, 300: 16_200, 400: 16_900}  # ~13 GB + ~10 MB/frame, noisy
    for f, p in peaks.items():
        m.observe("camera", "vipe", f, W, p)
    for f, p in peaks.items():
        assert m.predict("camera", "vipe", f, W) >= p - 1e-6
    d = m.describe("camera", "vipe")
    assert d["mb_per_mpix_frame"] == pytest.approx(9.65, abs=0.5) and d["samples"] == 4
    # the envelope is not absurdly loose: within 300 MB of the worst residual
    assert m.predict("camera", "vipe", 250, W) < 15_600 + 300


def test_one_sample_moves_the_base_and_keeps_the_seed_slope():
    m = MemoryModel({("hands", "wilor"): MemoryProfile(4_000, 5.0)})
    m.observe("hands", "wilor", 100, W, 5_000)
    assert m.predict("hands", "wilor", 100, W) == pytest.approx(5_000)
    assert m.predict("hands", "wilor", 200, W) == pytest.approx(5_500)


def test_oom_raises_a_floor_for_that_size_and_larger():
    m = MemoryModel({("camera", "vipe"): MemoryProfile(13_000, 10.0)})
    m.observe_oom("camera", "vipe", 300, W, 16_000)
    assert m.predict("camera", "vipe", 300, W) == pytest.approx(16_000 * 1.3)
    assert m.predict("camera", "vipe", 500, W) == pytest.approx(20_800)  # the line says 18 GB: the floor wins
    assert m.predict("camera", "vipe", 100, W) == pytest.approx(14_000)  # smaller work: unaffected


def test_oom_floor_withdrawn_when_as_large_a_task_succeeds_below_it():
    m = MemoryModel({("camera", "vipe"): MemoryProfile(13_000, 10.0)})
    m.observe_oom("camera", "vipe", 300, W, 16_000)  # a neighbour over its prediction caused this
    m.observe("camera", "vipe", 320, W, 15_800)
    assert m.predict("camera", "vipe", 300, W) < 16_000


def test_warm_start_from_ledger_rows():
    rows = [{"stage": "camera", "backend": "vipe", "frames": f, "pixels": W, "peak_mb": 13_000 + 10 * f, "outcome": "ok"}
            for f in (100, 200, 300)]
    rows.append({"stage": "camera", "backend": "vipe", "frames": 400, "pixels": W, "peak_mb": 17_500, "outcome": "oom"})
    m = MemoryModel({("camera", "vipe"): MemoryProfile(1_000, 0.0)})  # a poor seed
    m.load_samples(rows)
    assert m.predict("camera", "vipe", 200, W) == pytest.approx(15_000, abs=1)
    assert m.predict("camera", "vipe", 400, W) >= 17_500 * 1.3 - 1e-6
