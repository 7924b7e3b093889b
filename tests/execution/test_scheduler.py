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
    start_all(s)
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


def test_lanes_share_gpus_by_target_and_seats_are_kept_for_later_stages():
    s = gpu_scheduler(gpus=(("A", 30_000), ("B", 30_000)))
    for i in range(4):
        s.add_video(f"v{i}", GPU_STAGES, done={"ingest"}, frames=50, pixels=100_000)
    acts = start_all(s)
    gpus = [a.gpu for a in acts if isinstance(a, StartWorker) and a.lane == "camera/vipe"]
    # a 13 GB ViPE worker per GPU: the rest of each 29 GB is kept for a TAPIP3D (8 GB) and a WiLoR
    # (4 GB) seat, since those lanes have work coming; a second ViPE would not leave room for them
    assert sorted(gpus) == [0, 1]
    assert s._targets[0] == s._targets[1] == {"camera/vipe": 1, "tracks/tapip3d": 1, "hands/wilor": 1}
    for a in assigns(s.next_actions(0)):
        s.task_done(a.worker_id, 1.0, peak_mb=13_100)
    acts = start_all(s, 1.0)
    lanes_by_gpu = {}
    for a in acts:
        if isinstance(a, StartWorker):
            lanes_by_gpu.setdefault(a.gpu, set()).add(a.lane)
    # tracks and hands workers start next to the camera workers, on both GPUs
    assert lanes_by_gpu[0] == lanes_by_gpu[1] == {"tracks/tapip3d", "hands/wilor"}
    for g in (0, 1):
        assert s.gpu_usage(g) + s.margin_mb <= 30_000


def test_camera_lane_retired_when_done_frees_memory():
    s = gpu_scheduler(gpus=(("A", 30_000),))
    s.add_video("v0", GPU_STAGES, done={"ingest"}, frames=50, pixels=100_000)
    start_all(s)
    a = assigns(s.next_actions(0))[0]
    s.task_done(a.worker_id, 1.0, peak_mb=13_100)
    stops = [x for x in s.next_actions(1.0) if isinstance(x, StopWorker)]
    # camera has no work left at all: its idle worker goes, the others start in its memory
    assert [x.worker_id for x in stops] == [a.worker_id]


def test_idle_workers_above_target_give_way_to_a_lane_below_target():
    s = gpu_scheduler(gpus=(("A", 26_000),), seeds={("camera", "vipe"): MemoryProfile(13_000, 0.0),
                                                    ("tracks", "tapip3d"): MemoryProfile(12_000, 0.0),
                                                    ("hands", "wilor"): MemoryProfile(4_000, 0.0)})
    s.add_video("v0", GPU_STAGES, done={"ingest", "camera"}, frames=50, pixels=100_000)
    s.add_video("v1", GPU_STAGES, done={"ingest"}, frames=50, pixels=100_000)
    acts = start_all(s)
    # ready lanes get seats first, later stages first: hands (4) + tracks (12) fit next to each
    # other, camera (13) does not -- it waits instead of swapping models every task
    started = sorted(a.lane for a in acts if isinstance(a, StartWorker))
    assert started == ["hands/wilor", "tracks/tapip3d"]
    for a in assigns(s.next_actions(0)):
        s.task_done(a.worker_id, 1.0, peak_mb=12_000 if a.stage == "tracks" else 4_000)
    acts = s.next_actions(1.0)
    # v0 is through; v1's camera is the only ready work: tracks/hands (idle, above their new
    # target of 0 for lack of room) are stopped so camera can load
    stops = {x.worker_id.split("-")[0] for x in acts if isinstance(x, StopWorker)}
    assert "tracks" in stops
    for x in acts:
        if isinstance(x, StopWorker):
            s.worker_stopped(x.worker_id, 1.0)
    acts = start_all(s, 1.0)
    assert [a.lane for a in acts if isinstance(a, StartWorker)] == ["camera/vipe"]


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


def _crash_on_gpu0(s, now):
    acts = start_all(s, now)
    failed = []
    for a in assigns(s.next_actions(now)) + assigns(acts):
        if s.workers[a.worker_id].gpu == 0:
            s.task_failed(a.worker_id, now, kind="crash", message="segfault", worker_alive=False)
            failed.append(a.video_id)
    return failed


def test_gpu_where_different_tasks_keep_crashing_is_taken_out_of_service():
    s = gpu_scheduler(gpus=(("A", 40_000), ("B", 40_000)))
    for i in range(6):
        s.add_video(f"v{i}", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    now, crashed = 0.0, set()
    while 0 not in s.gpu_out_of_service and now < 1000:
        crashed |= set(_crash_on_gpu0(s, now))
        now += 100
    assert 0 in s.gpu_out_of_service and 1 not in s.gpu_out_of_service
    assert len(crashed) >= 3  # three different videos crashed there in a row
    # nothing is placed on a retired GPU any more
    acts = start_all(s, now)
    assert all(a.gpu == 1 for a in acts if isinstance(a, StartWorker))


def test_a_poison_video_crashing_every_time_does_not_retire_gpus():
    s = gpu_scheduler(gpus=(("A", 40_000), ("B", 40_000)))
    s.add_video("poison", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    now = 0.0
    outcomes = []
    while not s.finished():
        start_all(s, now)
        for a in assigns(s.next_actions(now)):
            outcomes.append(s.task_failed(a.worker_id, now, kind="crash", message="segfault", worker_alive=False))
        now += 100
    assert [o.state for o in outcomes] == ["retry", "retry", "failed"]  # dropped after 3 deaths
    assert not s.gpu_out_of_service


def test_ooms_do_not_count_against_a_gpu():
    s = gpu_scheduler(gpus=(("A", 40_000), ("B", 40_000)))
    for i in range(4):
        s.add_video(f"v{i}", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    start_all(s)
    for a in assigns(s.next_actions(0)):
        s.task_failed(a.worker_id, 0, kind="oom", message="CUDA out of memory", worker_alive=True)
    assert not s.gpu_out_of_service


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


def _apply(s, acts, now):
    """Play the executor: workers start instantly, stopped workers go away."""
    for x in acts:
        if isinstance(x, StartWorker):
            s.worker_ready(x.worker_id, now)
        elif isinstance(x, StopWorker):
            s.worker_stopped(x.worker_id, now)


def drive(s, now, rounds=4):
    """Ask for actions until none come (workers load instantly); return the assignments made."""
    out = []
    for _ in range(rounds):
        acts = s.next_actions(now)
        if not acts:
            break
        _apply(s, acts, now)
        out += assigns(acts)
    return out


def test_second_oom_runs_the_task_alone_after_draining_its_gpu():
    s = gpu_scheduler(gpus=(("A", 60_000),), seeds={("camera", "vipe"): MemoryProfile(10_000, 0.0),
                                                    ("tracks", "tapip3d"): MemoryProfile(8_000, 0.0),
                                                    ("hands", "wilor"): MemoryProfile(4_000, 0.0)})
    for i in range(4):
        s.add_video(f"v{i}", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    running = {a.video_id: a for a in drive(s, 0)}
    a = running.pop("v0")
    s.task_failed(a.worker_id, 1.0, kind="oom", message="CUDA out of memory", worker_alive=True)
    s.task_done(running.pop("v1").worker_id, 1.0, peak_mb=10_000)
    for x in drive(s, 1.0):
        if x.video_id == "v0":
            a = x
        else:
            running[(x.video_id, x.stage)] = x
    assert a.attempt == 2 and a.predicted_mb >= 1.3 * 10_000 - 1e-6  # retried with more room
    s.task_failed(a.worker_id, 2.0, kind="oom", message="CUDA out of memory", worker_alive=True)
    for x in drive(s, 2.0):
        running[(x.video_id, x.stage)] = x
    t = s.task("v0", "camera")
    assert t.exclusive and t.state == "ready" and s._reserved == {0: ("v0", "camera")}
    assert any(w.state == "busy" for w in s.workers.values())
    # while others run on the GPU nothing new starts there, and v0 waits
    assert drive(s, 3.0) == []
    for other in running.values():
        if other.worker_id in s.workers and s.workers[other.worker_id].task == (other.video_id, other.stage):
            s.task_done(other.worker_id, 4.0, peak_mb=8_000)
    got = [x for x in drive(s, 4.0) if s.workers[x.worker_id].gpu is not None]
    assert [x.video_id for x in got] == ["v0"]  # alone
    assert sum(w.state == "busy" for w in s.workers.values() if w.gpu is not None) == 1
    s.task_done(got[0].worker_id, 5.0, peak_mb=9_000)
    assert not s._reserved  # the GPU is shared again


def test_measured_memory_above_prediction_blocks_placement():
    s = gpu_scheduler(gpus=(("A", 40_000),))
    for i in range(3):
        s.add_video(f"v{i}", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    start_all(s)
    a = assigns(s.next_actions(0))
    before = s.gpu_usage(0)
    # the worker holds far more than predicted (a leak, a tool's cache): placement counts the truth
    s.worker_memory(a[0].worker_id, 30_000)
    assert s.gpu_usage(0) >= before - a[0].predicted_mb + 30_000
    assert not s._fits(0, 13_000)


def test_throughput_cap_from_the_lowest_measured_level():
    s = gpu_scheduler(gpus=(("A", 140_000),))
    lane = s.lanes["camera/vipe"]
    # measured only at 4 and 5 concurrent workers: no evidence against 4, probe 6
    s._rate[("camera/vipe", 0)][4].extend([5.0, 5.0])
    s._rate[("camera/vipe", 0)][5].extend([4.5, 4.5])  # 22.5 >= 1.1 * 20
    assert s._lane_gpu_cap(lane, 0) == 6
    s._rate[("camera/vipe", 0)][6].extend([3.6, 3.6])  # 21.6 < 1.1 * 22.5: saturated at 5
    assert s._lane_gpu_cap(lane, 0) == 5
    s._rate[("camera/vipe", 0)][2].extend([9.0])  # one sample is not a measurement
    assert s._lane_gpu_cap(lane, 0) == 5


def test_a_task_starving_for_memory_gets_a_gpu_reserved():
    s = gpu_scheduler(gpus=(("A", 40_000),), seeds={("camera", "vipe"): MemoryProfile(10_000, 100.0)},
                      starvation_s=30.0, backlog=50)
    camera_only = {**BUILTIN, "camera": "vipe"}
    # big (~30 GB) is first in line, but its ingest is still to do: when it is ready, small tasks
    # (~10 GB each) already fill the GPU, and every time one ends a small one fits where big does not
    s.add_video("big", camera_only, frames=200, pixels=1_000_000)
    for i in range(30):
        s.add_video(f"s{i}", camera_only, done={"ingest"}, frames=10, pixels=10_000)
    now, big_at = 0.0, None
    for a in drive(s, now):
        if a.stage == "ingest":
            s.task_done(a.worker_id, now)
    while big_at is None and now < 300:
        if any(x.video_id == "big" for x in drive(s, now)):
            big_at = now
            break
        # small tasks keep the GPU busy: finish the oldest camera task, a new one takes its place
        busy = sorted((w for w in s.workers.values() if w.state == "busy" and w.gpu is not None),
                      key=lambda w: w.busy_since)
        if busy:
            s.task_done(busy[0].id, now, peak_mb=10_010)
        now += 10.0
    # without a reservation the big task would wait for all 30 small ones (~100 s here)
    assert big_at is not None and big_at <= 30.0 + 4 * 10.0
    assert s.counters["gpu_reservations"] >= 1


def test_unplaceable_task_runs_alone_and_fails_within_its_oom_budget():
    s = gpu_scheduler(gpus=(("A", 20_000),), seeds={("camera", "vipe"): MemoryProfile(25_000, 0.0),
                                                    ("tracks", "tapip3d"): MemoryProfile(1_000, 0.0),
                                                    ("hands", "wilor"): MemoryProfile(1_000, 0.0)})
    s.add_video("huge", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    now = 0.0
    kinds = []
    while not s.finished() and now < 100:
        for a in drive(s, now):
            assert sum(w.state == "busy" for w in s.workers.values()) == 1
            kinds.append(s.task_failed(a.worker_id, now, kind="oom", message="CUDA out of memory",
                                       worker_alive=True).state)
        now += 1
    assert kinds == ["retry", "retry", "retry", "failed"] and s.finished()


def test_next_wakeup_is_the_end_of_a_backoff():
    s = cpu_scheduler(workers=1)
    s.add_video("a", BUILTIN)
    start_all(s)
    a = assigns(s.next_actions(0))[0]
    s.task_failed(a.worker_id, 10.0, kind="error", message="boom", worker_alive=True)
    assert s.next_wakeup(10.0) == 11.0  # backoff 1 s
    assert assigns(s.next_actions(10.5)) == []
    assert assigns(s.next_actions(11.0))


def test_task_timeout_scales_with_video_length():
    s = gpu_scheduler(gpus=(("A", 80_000),))
    s.add_video("short", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    s.add_video("long", GPU_STAGES, done={"ingest"}, frames=1000, pixels=10_000)
    start_all(s)
    t = {a.video_id: a.timeout_s for a in assigns(s.next_actions(0))}
    assert t == {"short": 10 + 1 * 10, "long": 10 + 1 * 1000}  # TimeoutPolicy(10 s, 1 s/frame)


def test_start_oom_raises_the_base_only_while_it_is_unmeasured():
    s = gpu_scheduler(gpus=(("A", 40_000),))
    s.add_video("v", GPU_STAGES, done={"ingest"}, frames=10, pixels=10_000)
    acts = s.next_actions(0)
    w = next(a for a in acts if isinstance(a, StartWorker))
    base0 = s.memory.base("camera", "vipe")
    s.worker_start_failed(w.worker_id, "oom", "CUDA out of memory", 0)
    assert s.memory.base("camera", "vipe") >= 1.3 * base0 - 1e-6
    assert "camera/vipe" not in s.lane_broken
    s.memory.observe("camera", "vipe", 10, 10_000, 13_000)
    base1 = s.memory.base("camera", "vipe")
    w = next(a for a in s.next_actions(1) if isinstance(a, StartWorker))
    s.worker_start_failed(w.worker_id, "oom", "CUDA out of memory", 1)
    assert s.memory.base("camera", "vipe") == base1  # measured: neighbours were over, not this model


def test_admission_limit_follows_worker_slots_plus_backlog():
    s = gpu_scheduler(gpus=(("A", 140_000),), backlog=3)
    for i in range(100):
        s.add_video(f"v{i}", GPU_STAGES)
    start_all(s)
    s.next_actions(0)
    slots = sum(sum(t.values()) for t in s._targets.values())
    assert s.admission_limit() == s.cpu_workers + slots + 3
    assert len({a.video_id for a in assigns(s.next_actions(0))}) <= s.admission_limit()
