"""GPU inventory honours the job's CUDA_VISIBLE_DEVICES (SLURM), by index or UUID."""

from y2r.execution.gpus import GpuDevice, allowed_by_environment


def _devs():
    return [GpuDevice(i, "H200", f"GPU-{i}aaa-bbbb", 143771.0, 600.0, 143171.0) for i in range(4)]


def test_unset_means_every_device():
    assert [d.index for d in allowed_by_environment(_devs(), None)] == [0, 1, 2, 3]


def test_indices_and_uuids_restrict_and_empty_means_none():
    assert [d.index for d in allowed_by_environment(_devs(), "1,3")] == [1, 3]
    assert [d.index for d in allowed_by_environment(_devs(), "GPU-2aaa, GPU-0aaa-bbbb")] == [0, 2]
    assert allowed_by_environment(_devs(), "") == []
    assert allowed_by_environment(_devs(), "7") == []
