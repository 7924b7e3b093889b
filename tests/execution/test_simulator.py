"""The real scheduler driven by the discrete-event simulator: throughput, streaming bound, recovery."""

import pytest

from y2r.execution.simulator import PROFILES, Simulation, SimulationStuck, parse_gpus


def test_parse_gpus():
    assert parse_gpus("8x141") == [141_000.0] * 8
    assert parse_gpus("2x80,1x24") == [80_000.0, 80_000.0, 24_000.0]
    assert parse_gpus("32") == [32_000.0]


def test_big_gpus_reach_the_ideal_bound_and_lose_nothing():
    r = Simulation(parse_gpus("4x141"), 150, seed=3).run()
    assert r.lost == 0 and r.failed_tasks == 0
    # the bound ignores loads, ramp-up and the tail: over 150 videos y2r stays within 15% of it
    assert r.ideal_ratio >= 0.85, r
    assert r.ideal_s == max(r.bounds.values()) and r.makespan_s >= r.ideal_s
    assert min(r.gpu_compute_busy) > 0.8


def test_same_seed_same_schedule():
    a = Simulation(parse_gpus("2x80"), 40, seed=11).run()
    b = Simulation(parse_gpus("2x80"), 40, seed=11).run()
    assert a.makespan_s == b.makespan_s and a.counters == b.counters


def test_videos_in_flight_never_exceed_the_admission_bound():
    sim = Simulation(parse_gpus("2x141"), 80, seed=2, max_in_flight=6)
    r = sim.run()
    assert r.lost == 0 and r.max_in_flight <= 6
    # and the bound does not starve the GPUs into idleness for long
    assert r.makespan_s < 3 * r.ideal_s


def test_optimistic_memory_seeds_cause_real_ooms_that_are_recovered():
    # the scheduler believes every model needs half of what it does, and keeps no margin
    sim = Simulation(parse_gpus("2x40"), 60, seed=5, seed_scale=0.5, margin_mb=0)
    r = sim.run()
    assert r.ooms > 0 and r.lost == 0
    # the memory model learned from measured peaks: its predictions now cover the truth
    m = sim.sched.memory.describe("camera", PROFILES["camera"].backend)
    assert m["samples"] > 0 and m["base_mb"] >= 0.95 * PROFILES["camera"].base_mb


def test_crashes_and_hangs_are_retried_and_nothing_is_lost():
    sim = Simulation(parse_gpus("2x141"), 60, seed=4, crash_rate=0.05, hang_rate=0.02)
    r = sim.run()
    assert r.counters.get("failed:crash", 0) > 0 and r.counters.get("failed:hang", 0) > 0
    assert r.lost == 0


def test_a_faulty_gpu_is_taken_out_of_service_and_the_rest_finish():
    sim = Simulation(parse_gpus("3x80"), 60, seed=6, faulty_gpu=1)
    r = sim.run()
    assert 1 in sim.sched.gpu_out_of_service and len(sim.sched.gpu_out_of_service) == 1
    assert r.lost == 0


def test_small_gpu_cannot_hold_every_model_at_once_but_everything_finishes():
    # 32 GB: ViPE (13-17 GB) + TAPIP3D (9-13 GB) + WiLoR (~5 GB) do not fit together; lanes take turns
    sim = Simulation(parse_gpus("1x32"), 40, seed=8)
    r = sim.run()
    assert r.lost == 0
    assert r.counters["workers_started"] < 40 * 2  # turns are batched, not one model swap per task


def test_work_that_cannot_fit_fails_within_its_budget_instead_of_hanging():
    # 16 GB: a long video's ViPE peak (13 GB + up to 4 GB) does not fit at all
    try:
        r = Simulation(parse_gpus("1x16"), 30, seed=9).run()
    except SimulationStuck as e:  # pragma: no cover - the failure this test guards against
        pytest.fail(f"scheduler stuck: {e}")
    assert 0 < r.lost < 30 and r.failed_tasks == r.lost  # each lost video failed its ViPE task, nothing else
    assert r.counters.get("failed:oom", 0) >= 4 * r.lost  # after its whole OOM budget
