"""The scheduler as a pure state machine: placement, streaming, retries, failures (no processes)."""

from y2r.execution.memory_model import MemoryModel
from y2r.execution.scheduler import (
    CPU_LANE,
    Assign,
    GpuSpec,
    Lane,
    RetryPolicy,
    Scheduler,
    StartWorker,
    StopWorker,
    TimeoutPolicy,
)
from y2r.stages.base import STAGE_ORDER, MemoryProfile

BUILTIN = {s: "builtin" for s in STAGE_ORDER}
GPU_STAGES = {"ingest": "builtin", "camera": "vipe", "tracks": "tapip3d", "hands": "wilor", "episode": "builtin"}
RETRY = RetryPolicy({"error": 3, "oom": 4, "crash": 3, "hang": 2, "bad_input": 1, "user_error": 1}, backoff_s=1.0)


def cpu_scheduler(workers=2, **kw):
    lanes = {CPU_LANE: Lane(CPU_LANE, frozenset(STAGE_ORDER))}
    return Scheduler(lanes=lanes, task_lanes={}, retry=RETRY, timeouts=TimeoutPolicy(10, 1), cpu_workers=workers, **kw)


def gpu_scheduler(gpus=(("A", 40_000),), seeds=None, **kw):
    lanes = {CPU_LANE: Lane(CPU_LANE, frozenset(STAGE_ORDER))}
    task_lanes = {}
    for stage, backend in GPU_STAGES.items():
        if backend != "builtin":
            name = f"{stage}/{backend}"
            lanes[name] = Lane(name, frozenset({stage}), gpu=True, stage=stage, backend=backend)
            task_lanes[(stage, backend)] = name
    seeds = seeds or {("camera", "vipe"): MemoryProfile(13_000, 10.0), ("tracks", "tapip3d"): MemoryProfile(8_000, 5.0),
                      ("hands", "wilor"): MemoryProfile(4_000, 0.0)}
    return Scheduler(lanes=lanes, task_lanes=task_lanes, retry=RETRY, timeouts=TimeoutPolicy(10, 1), cpu_workers=2,
                     gpus=[GpuSpec(i, n, c) for i, (n, c) in enumerate(gpus)], memory=MemoryModel(seeds),
                     margin_mb=1000, **kw)


def start_all(s, now=0.0):
    acts = s.next_actions(now)
    for a in acts:
        if isinstance(a, StartWorker):
            s.worker_ready(a.worker_id, now)
    return acts


def assigns(acts):
    return [a for a in acts if isinstance(a, Assign)]


def test_cpu_workers_capped_and_models_loaded_once_per_worker():
    s = cpu_scheduler(workers=2)
    for i in range(5):
        s.add_video(f"v{i}", BUILTIN)
    acts = s.next_actions(0)
    assert sum(isinstance(a, StartWorker) for a in acts) == 2  # never more than --workers
    for a in acts:
        s.worker_ready(a.worker_id, 0)
    a = assigns(s.next_actions(0))
    assert [(x.video_id, x.stage) for x in a] == [("v0", "ingest"), ("v1", "ingest")]


def test_streaming_later_stages_first_then_admission_order():
    s = cpu_scheduler(workers=1)
    for i in range(3):
        s.add_video(f"v{i}", BUILTIN)
    start_all(s)
    done = []
    now = 0.0
    for _ in range(15):
        a = assigns(s.next_actions(now))
        assert len(a) == 1
        done.append((a[0].video_id, a[0].stage))
        now += 1
        s.task_done(a[0].worker_id, now)
    # v0 goes all the way through before v1 starts: a video moves on as soon as it can
    assert {d for d in done[:5]} == {("v0", st) for st in STAGE_ORDER}
    assert done[0] == ("v0", "ingest") and done[4] == ("v0", "episode")
    assert s.finished()


def test_admission_control_bounds_videos_in_flight():
    s = cpu_scheduler(workers=8, max_in_flight=3)
    for i in range(10):
        s.add_video(f"v{i}", BUILTIN)
    acts = start_all(s)
    a = assigns(s.next_actions(0))
    assert len({x.video_id for x in a}) == 3


def test_error_retried_with_backoff_then_dead_lettered_and_downstream_skipped():
    s = cpu_scheduler(workers=1)
    s.add_video("bad", BUILTIN)
    start_all(s)
    now = 0.0
    outcomes = []
    for attempt in range(1, 4):
        a = assigns(s.next_actions(now))
        assert len(a) == 1 and a[0].attempt == attempt
        o = s.task_failed(a[0].worker_id, now, kind="error", message="boom", worker_alive=True)
        outcomes.append(o)
        if not o.final:
            delay = 1.0 * 2 ** (attempt - 1)  # exponential backoff
            assert assigns(s.next_actions(now + delay - 0.01)) == []
            now += delay
    assert [o.state for o in outcomes] == ["retry", "retry", "failed"]
    assert set(outcomes[-1].skipped) == {("bad", st) for st in ("camera", "tracks", "hands", "episode")}
    assert s.finished()


def test_one_failing_video_never_stops_the_others():
    s = cpu_scheduler(workers=1)
    s.add_video("bad", BUILTIN)
    s.add_video("good", BUILTIN)
    start_all(s)
    now = 0.0
    while not s.finished():
        a = assigns(s.next_actions(now))
        if not a:
            now += 1
            continue
        if a[0].video_id == "bad":
            s.task_failed(a[0].worker_id, now, kind="error", message="boom", worker_alive=True)
        else:
            s.task_done(a[0].worker_id, now)
        now += 0.5
    assert all(s.task("good", st).state == "done" for st in STAGE_ORDER)
    assert s.task("bad", "ingest").state == "failed"


def test_bad_input_is_not_retried_and_user_error_breaks_the_lane():
    s = cpu_scheduler(workers=1)
    s.add_video("a", BUILTIN)
    s.add_video("b", BUILTIN)
    start_all(s)
    a = assigns(s.next_actions(0))[0]
    o = s.task_failed(a.worker_id, 0, kind="bad_input", message="empty file", worker_alive=True)
    assert o.final and o.state == "failed"
    # a user error (tool missing) fails every task of the lane at once instead of N identical retries
    a = assigns(s.next_actions(0))[0]
    o = s.task_failed(a.worker_id, 0, kind="user_error", message="run y2r setup", worker_alive=True)
    assert o.final and CPU_LANE in s.lane_broken
    assert s.finished()


def test_gpu_packing_by_predicted_memory():
    s = gpu_scheduler(gpus=(("A", 40_000),))
    for i in range(6):
        s.add_video(f"v{i}", GPU_STAGES, done={"ingest"}, frames=100, pixels=512 * 384)
    acts = start_all(s)
    starts = [a for a in acts if isinstance(a, StartWorker) and a.lane == "camera/vipe"]
    # each ViPE task predicts 13000 + 10 * 100 * 0.197 ~= 13197 MB; 40 GB - 1 GB margin holds 2
    assert len(starts) == 2
    a = assigns(s.next_actions(0))
    assert len(a) == 2 and all(x.predicted_mb > 13_000 for x in a)
    assert s.gpu_usage(0) + s.margin_mb <= 40_000


def test_two_gpus_spread_and_lanes_share_a_gpu():
    s = gpu_scheduler(gpus=(("A", 30_000), ("B", 30_000)))
    for i in range(4):
        s.add_video(f"v{i}", GPU_STAGES, done={"ingest"}, frames=50, pixels=100_000)
    acts = start_all(s)
    gpus = [a.gpu for a in acts if isinstance(a, StartWorker) and a.lane == "camera/vipe"]
    # two 13 GB ViPE workers fit per 30 GB GPU; placement alternates to the GPU with most room
    assert gpus[:2] in ([0, 1], [1, 0]) and sorted(gpus) == [0, 0, 1, 1]
    for a in assigns(s.next_actions(0)):
        s.task_done(a.worker_id, 1.0, peak_mb=13_100)
    # camera has no work left: its idle workers are retired, freeing memory for tracks and hands
    acts = s.next_actions(1.0)
    stops = [a for a in acts if isinstance(a, StopWorker)]
    assert len(stops) == 4
    for a in stops:
        s.worker_stopped(a.worker_id, 1.0)
    acts = start_all(s, 1.0)
    lanes_by_gpu = {}
    for a in acts:
        if isinstance(a, StartWorker):
            lanes_by_gpu.setdefault(a.gpu, set()).add(a.lane)
    # tracks (8 GB) and hands (4 GB) workers share each GPU
    assert lanes_by_gpu[0] == lanes_by_gpu[1] == {"tracks/tapip3d", "hands/wilor"}


def test_oom_retries_with_more_room_then_alone():
    s = gpu_scheduler(gpus=(("A", 40_000),))
    s.add_video("long", GPU_STAGES, done={"ingest"}, frames=1000, pixels=512 * 384)
    start_all(s)
    a = assigns(s.next_actions(0))[0]
    first_pred = a.predicted_mb
    o = s.task_failed(a.worker_id, 1.0, kind="oom", message="CUDA out of memory", worker_alive=True)
    assert not o.final
    acts = s.next_actions(1.0)
    assert any(isinstance(x, StopWorker) for x in acts)  # the OOMed worker is replaced
    for x in acts:
        if isinstance(x, StopWorker):
            s.worker_stopped(x.worker_id, 1.0)
        elif isinstance(x, StartWorker):
            s.worker_ready(x.worker_id, 1.0)
    a2 = assigns(s.next_actions(1.0))[0]
    assert a2.predicted_mb >= first_pred * 1.3 - 1e-6  # the memory model learned from the OOM
    s.task_failed(a2.worker_id, 2.0, kind="oom", message="CUDA out of memory", worker_alive=False)
    assert s.task("long", "camera").exclusive


def test_crash_budget_and_gpu_taken_out_of_service():
    s = gpu_scheduler(gpus=(("A", 40_000), ("B", 40_000)))
    for i in range(3):
        s.add_video(f"v{i}", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    now = 0.0
    for _ in range(3):
        acts = start_all(s, now)
        for a in assigns(s.next_actions(now)) + assigns(acts):
            if s.workers[a.worker_id].gpu == 0:
                s.task_failed(a.worker_id, now, kind="crash", message="segfault", worker_alive=False)
        now += 100
    assert 0 in s.gpu_out_of_service and 1 not in s.gpu_out_of_service


def test_throughput_caps_workers_when_adding_one_does_not_pay():
    s = gpu_scheduler(gpus=(("A", 140_000),))
    lane = s.lanes["camera/vipe"]
    assert s._lane_gpu_cap(lane, 0) == 8  # no measurements: memory decides
    s._rate[("camera/vipe", 0)][1].extend([10.0, 10.0])
    assert s._lane_gpu_cap(lane, 0) == 2  # 1 worker measured: probe a second
    s._rate[("camera/vipe", 0)][2].extend([9.0, 9.0])  # 2 workers: 18 > 1.1 * 10 -> worth it
    assert s._lane_gpu_cap(lane, 0) == 3
    s._rate[("camera/vipe", 0)][3].extend([6.5, 6.5])  # 3 workers: 19.5 < 1.1 * 18 -> stop at 2
    assert s._lane_gpu_cap(lane, 0) == 2


def test_requeue_on_shutdown_does_not_count_an_attempt():
    s = cpu_scheduler(workers=1)
    s.add_video("a", BUILTIN)
    start_all(s)
    assigns(s.next_actions(0))
    assert s.requeue_running() == [("a", "ingest")]
    t = s.task("a", "ingest")
    assert t.state == "ready" and t.attempts == 0
