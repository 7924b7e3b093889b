"""``y2r run --dry-run`` with GPU lanes: probed video sizes, memory models, per-GPU placement."""


from cli_runner import run_main

from y2r.config import load_config
from y2r.execution.plan import estimate_sizes


def test_estimate_sizes_as_ingest_would_store_them(video_factory):
    v = video_factory("v.mp4", T=20, H=96, W=128, fps=20.0)
    cfg = load_config(None, ["ingest.fps=10", "ingest.width=64", "ingest.height=48"])
    frames, pixels = estimate_sizes([v], cfg)[v]
    assert frames == 10 and pixels == 64 * 48  # resampled 20 -> 10 fps, resized to the stored size


def test_dry_run_shows_gpu_placement_on_simulated_gpus_and_writes_nothing(tmp_path, video_factory, capsys):
    vids = [video_factory(f"v{i}.mp4", seed=i) for i in range(3)]
    out = tmp_path / "out"
    sets = ["camera.backend=synthetic", "tracks.backend=synthetic", "hands.backend=synthetic",
            "execution.gpus.simulate=[40000]", "camera.synthetic.gpu=true", "camera.synthetic.base_mb=13000",
            "tracks.synthetic.gpu=true", "tracks.synthetic.base_mb=8000", "hands.synthetic.gpu=true",
            "hands.synthetic.base_mb=4000", "execution.workers=2"]
    args = ["run", *map(str, vids), "-o", str(out), "--dry-run"]
    for s in sets:
        args += ["--set", s]
    code, text = run_main(args, capsys)
    assert code == 0, text
    assert "GPUs (simulated): 0 simulated (40000 MB free)" in text
    assert "GPU placement once the videos are ingested" in text and "v0/camera 13000 MB" in text
    # 38 GB usable: seats for all three lanes, then water-filling: 13 + 2 x 8 + 2 x 4 = 37 GB
    line = next(x for x in text.splitlines() if x.strip().startswith("GPU 0"))
    assert all(f in line for f in ("camera/synthetic x1", "tracks/synthetic x2", "hands/synthetic x2")), line
    assert not out.exists()
