"""`y2r doctor`'s tool checks, against the fake tool environments (and deliberately broken ones)."""

from __future__ import annotations

from pathlib import Path

import y2r
from tools import fake_envs
from y2r.config import Config
from y2r.tools.doctor import check_tool, check_tools


def config(tmp_path, **tools) -> Config:
    return Config.model_validate({"tools": tools, "camera": {"backend": "vipe"}, "hands": {"backend": "wilor"}})


def problems(check) -> str:
    return " | ".join(f"{p.message} -> {p.fix}" for p in check.problems)


def test_doctor_reports_working_tools_and_their_missing_pieces(tmp_path):
    cfg = config(tmp_path,
                 vipe=fake_envs.tool_env(tmp_path / "v"),
                 tapip3d=fake_envs.tool_env(tmp_path / "t", fake_envs.tapip3d_root(tmp_path, (8, 8))),
                 wilor=fake_envs.tool_env(tmp_path / "w", fake_envs.wilor_root(tmp_path)))
    checks = {c.tool: c for c in check_tools(cfg)}
    assert set(checks) >= {"vipe", "tapip3d", "wilor"}
    v, t, w = checks["vipe"], checks["tapip3d"], checks["wilor"]
    for c in (v, t, w):
        assert c.configured and c.python_version and c.versions["torch"] == "0.0+fake" and c.cuda is True
        assert all(p.fix for p in c.problems)
    assert v.needed and w.needed and not t.needed
    # The fakes import fine; what a real install would also need is reported with its fix.
    assert [p.message for p in v.problems] == ["compiled module vipe_ext is not installed"]
    assert "nvcc" in v.problems[0].fix
    assert [p.message for p in t.problems] == ["compiled module pointops2_cuda is not installed"]
    assert "third_party/pointops2" in t.problems[0].fix
    assert w.ok and not w.problems, problems(w)
    if "mediapipe" in checks:
        assert checks["mediapipe"].needed is False and all(p.fix for p in checks["mediapipe"].problems)


def test_doctor_finds_each_kind_of_breakage(tmp_path):
    src = str(Path(y2r.__file__).resolve().parents[1])
    no_torch = fake_envs.tool_env(tmp_path / "a")
    no_torch["env"]["PYTHONPATH"] = ""  # neither torch nor vipe importable
    c = check_tool(config(tmp_path, vipe=no_torch), "vipe")
    assert not c.ok and "torch does not import" in problems(c) and "'import vipe' fails" in problems(c)

    no_cuda = fake_envs.tool_env(tmp_path / "b", FAKE_TORCH_CUDA="0")
    c = check_tool(config(tmp_path, vipe=no_cuda), "vipe")
    assert c.cuda is False and "CUDA is not visible" in problems(c) and "CUDA_VISIBLE_DEVICES" in problems(c)

    mixed = fake_envs.tool_env(tmp_path / "c")
    mixed["env"]["PYTHONPATH"] += ":" + src
    c = check_tool(config(tmp_path, vipe=mixed), "vipe")
    assert "y2r is importable in vipe's environment" in problems(c)

    c = check_tool(config(tmp_path, vipe={"python": str(tmp_path / "nope")}), "vipe")
    assert not c.ok and "does not exist" in problems(c)

    c = check_tool(config(tmp_path), "vipe")  # selected by camera.backend but not configured
    assert not c.ok and not c.configured and "tools.vipe.python is not set" in problems(c)

    root = fake_envs.wilor_root(tmp_path)
    (root / "pretrained_models" / "detector.pt").unlink()
    (root / "mano_data" / "MANO_RIGHT.pkl").unlink()
    c = check_tool(config(tmp_path, wilor=fake_envs.tool_env(tmp_path / "d", root)), "wilor")
    text = problems(c)
    assert "checkpoint 'detector' not found" in text and "mano.is.tue.mpg.de" in text
