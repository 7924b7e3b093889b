"""``y2r status`` rendering of a live run: per-GPU measured / device / predicted memory, workers."""

from y2r.status import print_status


def test_live_gpu_table_shows_measured_device_and_predicted_memory(capsys):
    live = {"live": True, "pid": 123, "elapsed_s": 42.0, "eta_s": 300.0, "throughput_frames_per_s": {"camera": 55.5},
            "lanes": {"camera/vipe": {"workers": 3, "busy": 2, "starting": 1, "broken": None}},
            "gpus": [{"index": 0, "name": "NVIDIA H200", "capacity_mb": 143000.0, "predicted_mb": 61234.0,
                      "measured_mb": 58765.0, "device_used_mb": 60111.0, "workers": ["a", "b", "c"], "busy": 2,
                      "reserved_for": None, "out_of_service": None},
                     {"index": 1, "name": "NVIDIA H200", "capacity_mb": 143000.0, "predicted_mb": 0.0,
                      "measured_mb": None, "device_used_mb": None, "workers": [], "busy": 0,
                      "reserved_for": "v7/camera", "out_of_service": None}]}
    st = {"out": "OUT", "ledgers": ["ledger.sqlite"], "videos": 10, "stages": {}, "failures": [], "unfinished": [],
          "live": live}
    print_status(st)
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "ETA 300 s" in text and "camera 55.5" in text
    for v in ("58765", "60111", "61234", "143000"):
        assert v in text
    assert "kept for" in text and "v7/camera" in text  # GPU 1 is kept for a task that must run alone
