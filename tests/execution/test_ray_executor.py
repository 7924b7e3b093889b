"""The Ray executor: GPU shares from the memory model (pure), and end to end on one local Ray
instance with logical GPUs and the synthetic backends (same episodes as the local executor, a killed
actor and a killed worker retried once, an interrupted run resumed through the CLI)."""

from __future__ import annotations

import itertools
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from worker_processes import tagged_workers

from y2r import pipeline
from y2r.cli import main
from y2r.errors import UsageError
from y2r.execution import ray_executor
from y2r.execution.driver import TaskProgress
from y2r.execution.ray_executor import INSTALL_HINT, capped_share, fraction_grid, gpu_fraction, require_ray
from y2r.ledger import Ledger

RAY_SKIP = "the Ray executor tests need the optional extra: pip install 'y2r[ray]'"


# ----------------------------------------------------------------------------- GPU shares (no Ray needed)
@pytest.mark.parametrize("capacity", [16_000.0, 81_559.0, 143_771.0])
@pytest.mark.parametrize("margin", [0.0, 512.0, 2048.0])
@pytest.mark.parametrize("max_workers", [1, 3, 8])
def test_fraction_grid_is_the_coarsest_whose_rounding_fits_the_margin(capacity, margin, max_workers):
    q = fraction_grid(capacity, margin, max_workers)
    assert max_workers * q * capacity <= margin or q == 1e-4
    coarser = [s for s in ray_executor._GRID_STEPS if s > q]
    assert all(max_workers * s * capacity > margin for s in coarser)
    assert round(q / 1e-4) * 1e-4 == pytest.approx(q, abs=1e-12)  # a multiple of Ray's resolution


def test_shares_of_any_set_the_scheduler_accepts_sum_to_at_most_one():
    rng = np.random.default_rng(0)
    capacity, margin, max_workers = 143_771.0, 2048.0, 8
    q = fraction_grid(capacity, margin, max_workers)
    for _ in range(2000):
        n = int(rng.integers(1, max_workers + 1))
        peaks = rng.uniform(0, 1, n)
        peaks *= rng.uniform(0.01, 1.0) * (capacity - margin) / peaks.sum()  # sum(peaks) + margin <= capacity
        shares = [gpu_fraction(p, capacity, q) for p in peaks]
        assert sum(shares) <= 1.0 + 1e-9
        # ... and shares are never below the peak: Ray accepting them means the peaks fit.
        assert all(s * capacity >= p - 1e-6 for s, p in zip(shares, peaks, strict=True))


def test_gpu_fraction_rounds_up_where_gb_rounding_would_overpack():
    # A 17 GB model on an H200 (143771 MB free): rounding GB/capacity to 0.1 lets 10 workers in (170 GB).
    q = fraction_grid(143_771.0, 2048.0, 8)
    assert q == 0.001
    share = gpu_fraction(17_000.0, 143_771.0, q)
    assert share == 0.119
    fits = math.floor(1.0 / share + 1e-9)
    assert fits == 8 and fits * 17_000.0 <= 143_771.0
    assert gpu_fraction(0.0, 16_000.0, 0.01) == 0.01  # a worker always holds at least one grid step
    assert gpu_fraction(10**6, 16_000.0, 0.01) == 1.0
    with pytest.raises(ValueError):
        gpu_fraction(1.0, 0.0, 0.01)


def test_capped_share_keeps_every_further_worker_placeable():
    grid, max_workers = 0.05, 4
    assert capped_share(0.30, [], grid, max_workers) == 0.30
    # 0.7 wanted next to 0.2: room = 1 - 0.2 - 2 * 0.05 = 0.7 -> fits exactly.
    assert capped_share(0.70, [0.20], grid, max_workers) == 0.70
    # 0.8 wanted next to 0.2 and 0.3: room = 0.5 - 0.05 = 0.45 -> capped to 0.45.
    assert capped_share(0.80, [0.20, 0.30], grid, max_workers) == 0.45
    # Admit workers greedily up to the cap: shares always sum to <= 1 and never drop below a step.
    for wants in itertools.product([0.05, 0.3, 0.6, 1.0], repeat=max_workers):
        reserved: list[float] = []
        for w in wants:
            reserved.append(capped_share(w, reserved, grid, max_workers))
        assert sum(reserved) <= 1.0 + 1e-9 and min(reserved) >= grid - 1e-12


# ----------------------------------------------------------------------------- Ray missing
def test_without_ray_the_ray_executor_is_a_one_line_usage_error(tmp_path, video_factory, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail as if it were not installed
    with pytest.raises(UsageError, match=r"needs Ray, which is not installed: pip install 'y2r\[ray\]'"):
        require_ray()
    v = video_factory("v.mp4")
    with pytest.raises(SystemExit) as e:
        main(["run", str(v), "-o", str(tmp_path / "o"), "--executor", "ray"])
    assert e.value.code == 2
    cap = capsys.readouterr()
    lines = [line for line in (cap.out + cap.err).splitlines() if line.strip()]
    assert lines == [f"error: the Ray executor needs Ray, which is not installed: {INSTALL_HINT}"]
    assert not (tmp_path / "o").exists()  # refused before anything was written


# ----------------------------------------------------------------------------- on a local Ray instance
@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason=RAY_SKIP)
    tag = uuid.uuid4().hex
    old = os.environ.get("Y2R_TEST_TAG")
    # Set before Ray starts: the raylet, its actors and their worker processes inherit it.
    os.environ["Y2R_TEST_TAG"] = tag
    ctx = ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False,
                   logging_level=logging.WARNING)
    try:
        yield SimpleNamespace(ray=ray, address=ctx.address_info["gcs_address"], tag=tag)
    finally:
        ray.shutdown()
        if old is None:
            os.environ.pop("Y2R_TEST_TAG", None)
        else:
            os.environ["Y2R_TEST_TAG"] = old


@pytest.fixture
def spy(monkeypatch):
    """Every RayTransport the pipeline makes, recording the tasks it was given."""
    made = []

    class Spy(ray_executor.RayTransport):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.assigned = []
            self.progress = []
            made.append(self)

        def run_task(self, action, params, post):
            self.assigned.append(action)

            def record(ev):
                if isinstance(ev, TaskProgress):
                    self.progress.append((action, ev))
                post(ev)

            super().run_task(action, params, record)

    monkeypatch.setattr(ray_executor, "RayTransport", Spy)
    return made


def _assert_nothing_left(cluster, token: str | None = None, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        actors = [a for a in cluster.ray.util.list_named_actors(all_namespaces=True)
                  if a["namespace"] == ray_executor.NAMESPACE and (token is None or token in a["name"])]
        hosts = tagged_workers(cluster.tag)
        if not actors and not hosts:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: actors {actors}, worker processes {[p.pid for p in hosts]}")
        time.sleep(0.2)


def _attempts(ledger_path, video_id, stage):
    with Ledger(ledger_path, readonly=True) as led:
        return [(a["outcome"], a["error_kind"], a["error_message"]) for a in led.attempts(video_id) if a["stage"] == stage]


def _h5_items(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            attrs = {k: obj.attrs[k] for k in obj.attrs}
            out[name] = (obj[()] if isinstance(obj, h5py.Dataset) else None, attrs)
        f.visititems(visit)
        out["/"] = (None, {k: f.attrs[k] for k in f.attrs})
    return out


def _same(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "f":
        return np.array_equal(a, b, equal_nan=True)
    return np.array_equal(a, b)


@pytest.mark.ray
def test_same_episodes_as_the_local_executor_with_gpu_shares_from_the_memory_model(
        tmp_path, video_factory, fast_config, ray_cluster, spy):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    local = pipeline.run(vids, tmp_path / "local", fast_config())
    assert local.report.done == 10 and local.report.failed == 0
    # Camera and tracks become GPU lanes on two logical 2000 MB GPUs; the memory model is seeded
    # from the synthetic profiles (no NVML here, so it stays at its seeds).
    cfg = fast_config("execution.executor=ray", "execution.ray_gpu_memory_mb=2000", "execution.gpus.margin_mb=512",
                      "execution.gpus.max_workers_per_gpu=2",
                      "camera.synthetic.gpu=true", "camera.synthetic.base_mb=100", "camera.synthetic.mb_per_mpix_frame=5000",
                      "tracks.synthetic.gpu=true", "tracks.synthetic.base_mb=150")
    out = tmp_path / "ray"
    r = pipeline.run(vids, out, cfg)
    assert r.report.done == 10 and r.report.failed == 0

    # Bit for bit: every dataset and attribute, except the provenance that names the executor's config.
    for v in ("v0", "v1"):
        a, b = _h5_items(tmp_path / "local" / "episodes" / f"{v}.h5"), _h5_items(out / "episodes" / f"{v}.h5")
        assert a.keys() == b.keys()
        for name in a:
            if a[name][0] is not None:
                assert _same(a[name][0], b[name][0]), f"{v}:{name} differs"
            skip = {"config", "backends", "created_utc"} if name == "/" else set()
            ka, kb = set(a[name][1]) - skip, set(b[name][1]) - skip
            assert ka == kb and all(_same(a[name][1][k], b[name][1][k]) for k in ka), f"{v}:{name} attrs differ"

    # GPU shares: predicted peak / capacity rounded up to the grid (2 workers * 0.05 * 2000 <= 512 MB).
    (tr,) = spy
    peaks = {"camera/synthetic": 100 + 5000 * 12 * 64 * 48 / 1e6, "tracks/synthetic": 150.0}
    expected = {lane: math.ceil(p / 2000 / 0.05) * 0.05 for lane, p in peaks.items()}
    assert expected == pytest.approx({"camera/synthetic": 0.15, "tracks/synthetic": 0.10})
    gpu_workers = {w: p for w, p in tr.placements.items() if p["bundle"] is not None}
    assert {p["lane"] for p in gpu_workers.values()} == set(peaks)
    ids_of_bundle = {}
    for wid, p in gpu_workers.items():
        assert wid.endswith(f"@gpu{p['bundle']}")  # the scheduler's GPU is the placement-group bundle
        assert p["grid"] == 0.05 and not p["capped"]
        assert p["num_gpus"] == pytest.approx(expected[p["lane"]])
        assert p["num_gpus"] == gpu_fraction(peaks[p["lane"]], 2000.0, 0.05)
        assert p["assigned"] == {"GPU": pytest.approx(expected[p["lane"]])}  # what Ray granted, seen in the actor
        assert p["cuda_visible_devices"] == ",".join(p["gpu_ids"])  # set by Ray, inherited by the worker
        ids_of_bundle.setdefault(p["bundle"], set()).add(tuple(p["gpu_ids"]))
    assert all(len(ids) == 1 for ids in ids_of_bundle.values())  # one physical GPU per bundle
    assert len({next(iter(ids)) for ids in ids_of_bundle.values()}) == len(ids_of_bundle)
    for p in tr.placements.values():
        if p["bundle"] is None:
            assert p["cuda_visible_devices"] == "" and p["assigned"] == {"CPU": 1.0}
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        gpus = {(t.stage, t.gpu) for t in led.tasks(state="done")}
    assert {s for s, g in gpus if g is not None} == {"camera", "tracks"}
    _assert_nothing_left(ray_cluster, tr.token)


@pytest.mark.ray
def test_a_killed_actor_and_a_killed_worker_are_each_retried_once(tmp_path, video_factory, fast_config, ray_cluster, spy):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    out = tmp_path / "out"
    cfg = fast_config("execution.executor=ray", "camera.synthetic.s_per_frame=0.25", "execution.retry.backoff_s=0")
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("r", pipeline.run(vids, out, cfg)), daemon=True)
    t.start()
    deadline = time.monotonic() + 60
    cams = []
    while time.monotonic() < deadline:
        cams = [a for a in (spy[0].assigned if spy else []) if a.stage == "camera" and a.attempt == 1]
        if len({a.worker_id for a in cams}) == 2:
            break
        time.sleep(0.05)
    assert len({a.worker_id for a in cams}) == 2, "both camera tasks never ran at once"
    time.sleep(0.5)  # well inside the 3 s tasks
    tr = spy[0]
    by_actor, by_signal = cams[0], cams[1]
    ray_cluster.ray.kill(tr.actors[by_actor.worker_id], no_restart=True)  # the actor (as a lost node would)
    os.kill(tr.placements[by_signal.worker_id]["worker_pid"], signal.SIGKILL)  # only its worker process
    t.join(timeout=120)
    assert not t.is_alive()
    r = result["r"].report
    assert r.failed == 0 and r.done == 10
    led = out / "ledger.sqlite"
    a1 = _attempts(led, by_actor.video_id, "camera")
    a2 = _attempts(led, by_signal.video_id, "camera")
    assert [x[:2] for x in a1] == [("failed", "crash"), ("done", None)]  # counted once, no Ray retry
    assert [x[:2] for x in a2] == [("failed", "crash"), ("done", None)]
    assert a1[0][2].startswith("Ray actor died")
    assert "worker died (killed by SIGKILL)" in a2[0][2]
    assert sorted(p.name for p in (out / "episodes").iterdir()) == ["v0.h5", "v1.h5"]
    # Progress is relayed (polled from the actor), for the task it belongs to and no other.
    cam_progress = [(a, ev) for a, ev in tr.progress if a.stage == "camera"]
    assert {a.video_id for a, _ in cam_progress} == {"v0", "v1"}
    assert all(ev.video_id == a.video_id and ev.stage == a.stage and ev.total == 12 and 0 < ev.done <= 12
               for a, ev in tr.progress)
    for a in {a for a, _ in cam_progress}:
        dones = [ev.done for b, ev in cam_progress if b is a]
        assert dones == sorted(dones)
    _assert_nothing_left(ray_cluster, tr.token)


@pytest.mark.ray
def test_a_hung_worker_is_a_hang_and_its_actor_is_replaced(tmp_path, video_factory, fast_config, ray_cluster, spy):
    out = tmp_path / "out"
    cfg = fast_config("execution.executor=ray", "camera.synthetic.fail=hang", "camera.synthetic.fail_times=1",
                      "execution.task_timeout_s=3", "execution.task_timeout_s_per_frame=0", "execution.retry.backoff_s=0")
    r = pipeline.run([video_factory("v.mp4")], out, cfg)
    assert r.report.failed == 0 and (out / "episodes" / "v.h5").exists()
    a = _attempts(out / "ledger.sqlite", "v", "camera")
    assert [x[:2] for x in a] == [("failed", "hang"), ("done", None)]
    assert "no result after 3 s (request timeout)" in a[0][2]  # the worker's own timeout, inside the actor
    (tr,) = spy
    cams = [x for x in tr.assigned if x.stage == "camera"]
    assert len({x.worker_id for x in cams}) == 2  # the hung worker's actor was replaced, not reused
    _assert_nothing_left(ray_cluster, tr.token)


def _y2r(args, tag):
    env = {**os.environ, "Y2R_TEST_TAG": tag}
    return subprocess.Popen([sys.executable, "-m", "y2r.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.mark.ray
def test_an_interrupted_run_on_the_cluster_resumes_and_finishes(tmp_path, video_factory, ray_cluster):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    out = tmp_path / "out"
    # One CPU worker: the videos go through one after the other, so the second is unfinished when
    # the first episode appears.
    args = ["run", *map(str, vids), "-o", str(out), "-w", "1", "-q", "--executor", "ray",
            "--address", ray_cluster.address, "--set", "ingest.width=64", "--set", "ingest.height=48",
            "--set", "camera.backend=synthetic", "--set", "tracks.backend=synthetic", "--set", "hands.backend=synthetic",
            "--set", "camera.synthetic.s_per_frame=0.1"]
    p = _y2r(args, ray_cluster.tag)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list((out / "episodes").glob("*.h5")) and p.poll() is None:
        time.sleep(0.05)
    assert list((out / "episodes").glob("*.h5")), "no episode finished before the interrupt"
    p.send_signal(signal.SIGINT)
    log, _ = p.communicate(timeout=60)
    assert p.returncode == 130, log
    assert "interrupted" in log
    _assert_nothing_left(ray_cluster)  # its actors and their worker processes went with it
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        done_before = {(t.video_id, t.stage) for t in led.tasks(state="done")}
        assert not led.tasks(state="running")  # in-flight tasks went back to pending, not failed
    assert len(list((out / "episodes").glob("*.h5"))) == 1
    p2 = _y2r(args, ray_cluster.tag)
    log, _ = p2.communicate(timeout=120)
    assert p2.returncode == 0, log
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        redone = [(a["video_id"], a["stage"]) for a in led.attempts() if a["outcome"] == "done"]
        assert all(t.state == "done" for t in led.tasks())
    assert not any(redone.count(k) > 1 for k in done_before), "finished work was redone"
    assert sorted(e.name for e in (out / "episodes").glob("*.h5")) == ["v0.h5", "v1.h5"]
    _assert_nothing_left(ray_cluster)


def test_input_folders_checked_on_each_node_are_a_bounded_spread_sample(tmp_path):
    dirs = [tmp_path / f"d{i:03d}" for i in range(100)] + [tmp_path / "d000"]  # a duplicate
    got = ray_executor.sample_input_dirs(dirs)
    assert len(got) == ray_executor.MAX_INPUT_DIRS_CHECKED and len(set(got)) == len(got)
    assert got[0] == str(tmp_path / "d000") and got[-1] >= str(tmp_path / "d096")  # spread to the end
    assert ray_executor.sample_input_dirs([tmp_path / "a", tmp_path / "a"]) == (str(tmp_path / "a"),)


@pytest.mark.ray
def test_an_input_folder_a_node_cannot_see_fails_the_run_with_one_line_naming_it(
        tmp_path, video_factory, fast_config, ray_cluster, monkeypatch):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(2)]
    out = tmp_path / "out"
    unmounted = tmp_path / "not-mounted-on-this-node"  # what a node without the inputs' mount sees

    class Partial(ray_executor.RayTransport):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.input_dirs = (*self.input_dirs, str(unmounted))

    monkeypatch.setattr(ray_executor, "RayTransport", Partial)
    r = pipeline.run(vids, out, fast_config("execution.executor=ray"))
    assert r.report.done == 0 and r.report.failed >= 2
    with Ledger(out / "ledger.sqlite", readonly=True) as led:
        failures = led.failures()
    # the lane fails at once (a user error is not retried video after video), every stage of both
    assert {(t.video_id, t.stage) for t in failures} >= {("v0", "ingest"), ("v1", "ingest")}
    assert {t.error_kind for t in failures} == {"user_error"}
    for t in failures:  # one line, naming the folder and the node
        assert t.error_message.startswith(f"input folder {unmounted} is not visible from Ray node "), t.error_message
        assert "\n" not in t.error_message
    _assert_nothing_left(ray_cluster)
