"""``y2r doctor`` for tool environments: is each configured tool runnable, and if not, how to fix it.

For ViPE, TAPIP3D and WiLoR, a probe runs *in the tool's own interpreter* (argv list, the tool's
checkout as working directory, the same environment a worker gets, a timeout): it reports the
Python version, whether the modules y2r's shim imports can be imported there, torch and CUDA
visibility, the tool's version, and whether y2r leaked into that environment. Checkpoints are
checked on disk. The built-in MediaPipe environment is checked through ``environments.env_status``.

Every problem comes with a one-line fix. Nothing is imported into y2r's process, nothing is
downloaded, nothing is built.
"""

from __future__ import annotations

import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from y2r.errors import ToolUnavailable
from y2r.tools.launch import checkpoint_path, launch_spec

PROBE_TIMEOUT_S = 180.0
PROBE_MARK = "Y2R-PROBE "

# Runs in the tool's interpreter: standard library only, never y2r.
PROBE = r"""
import importlib, importlib.metadata, importlib.util, json, os, sys
modules, dists, hidden = sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3].split(",")
sys.path.insert(0, os.getcwd())
out = {"python": sys.version.split()[0], "executable": sys.executable, "cwd": os.getcwd(),
       "y2r_importable": importlib.util.find_spec("y2r") is not None, "modules": {}, "versions": {}, "missing": []}
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda"] = bool(torch.cuda.is_available())
    out["cuda_devices"] = int(torch.cuda.device_count()) if out["cuda"] else 0
    out["torch_cuda"] = getattr(getattr(torch, "version", None), "cuda", None)
except Exception as e:
    out["torch_error"] = f"{type(e).__name__}: {e}"
for m in modules:
    if not m:
        continue
    try:
        importlib.import_module(m)
        out["modules"][m] = None
    except BaseException as e:
        out["modules"][m] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
for d in dists:
    if d:
        try:
            out["versions"][d] = importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            pass
for m in hidden:
    if m and importlib.util.find_spec(m) is None:
        out["missing"].append(m)
print("Y2R-PROBE " + json.dumps(out), flush=True)
"""


@dataclass(frozen=True)
class ToolSpecForDoctor:
    tool: str
    shim: str
    root_required: bool
    modules: tuple[str, ...]  # imported in the probe (what the shim imports)
    dists: tuple[str, ...]  # distributions whose versions are reported
    hidden: tuple[str, ...]  # modules that must merely exist (compiled extensions)
    checkpoints: dict[str, str] = field(default_factory=dict)  # key -> default path under the root
    files: dict[str, str] = field(default_factory=dict)  # other files under the root -> fix
    needs_cuda: bool = True
    used_by: tuple[tuple[str, str], ...] = ()  # (config section, backend) pairs that need the tool


TOOLS: dict[str, ToolSpecForDoctor] = {
    "vipe": ToolSpecForDoctor(
        "vipe", "vipe_shim.py", False, ("vipe", "vipe.config"), ("nvidia-vipe", "torch", "OpenEXR"), ("vipe_ext",),
        used_by=(("camera", "vipe"),)),
    "tapip3d": ToolSpecForDoctor(
        "tapip3d", "tapip3d_shim.py", True, ("utils.inference_utils", "inference"), ("torch", "numpy"),
        ("pointops2_cuda",), checkpoints={"tapip3d": "checkpoints/tapip3d_final.pth"},
        used_by=(("tracks", "tapip3d"),)),
    "wilor": ToolSpecForDoctor(
        "wilor", "wilor_shim.py", True, ("wilor.models", "wilor.datasets.vitdet_dataset", "ultralytics"),
        ("torch", "ultralytics", "smplx", "pytorch-lightning"), (),
        checkpoints={"wilor": "pretrained_models/wilor_final.ckpt", "model_config": "pretrained_models/model_config.yaml",
                     "detector": "pretrained_models/detector.pt"},
        files={"mano_data/MANO_RIGHT.pkl": "register at mano.is.tue.mpg.de and copy MANO_RIGHT.pkl into <root>/mano_data/"},
        needs_cuda=False, used_by=(("hands", "wilor"),)),
}

FIX_INSTALL = {
    "vipe": "install ViPE in its environment: pip install nvidia-vipe (or pip install -e <vipe checkout>), see docs/tools.md",
    "tapip3d": "check tools.tapip3d.root is the TAPIP3D checkout and its requirements are installed (docs/tools.md)",
    "wilor": "check tools.wilor.root is the WiLoR checkout and pip install -r requirements.txt ran in its environment",
}
FIX_HIDDEN = {
    "vipe_ext": "build ViPE's CUDA extension (pip install --no-build-isolation -e . in the vipe checkout); without it "
                "ViPE JIT-compiles at first use, which needs nvcc and downloads Eigen",
    "pointops2_cuda": "build TAPIP3D's extension: cd <root>/third_party/pointops2 && python setup.py install",
}


@dataclass
class Problem:
    message: str
    fix: str


@dataclass
class ToolCheck:
    """One row of ``y2r doctor``'s tool table."""

    tool: str
    configured: bool  # tools.<tool>.python is set (or, for mediapipe, the managed env exists)
    needed: bool  # the config selects a backend that uses it
    ok: bool  # configured and no problem
    python: str | None = None
    python_version: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    cuda: bool | None = None
    problems: list[Problem] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add(self, message: str, fix: str) -> None:
        self.problems.append(Problem(message, fix))
        self.ok = False


def _needed(config: Any, spec: ToolSpecForDoctor) -> bool:
    return any(getattr(getattr(config, section), "backend", None) == backend for section, backend in spec.used_by)


def git_commit(root: Path) -> str | None:
    """The checkout's commit, read from .git without running git."""
    head = root / ".git" / "HEAD"
    try:
        ref = head.read_text().strip()
    except OSError:
        return None
    if not ref.startswith("ref:"):
        return ref[:12]
    name = ref.split(None, 1)[1]
    try:
        return (root / ".git" / name).read_text().strip()[:12]
    except OSError:
        pass
    try:
        for line in (root / ".git" / "packed-refs").read_text().splitlines():
            if line.endswith(" " + name):
                return line.split()[0][:12]
    except OSError:
        pass
    return None


def run_probe(argv_python: str, cwd: Path | None, env: dict[str, str | None], spec: ToolSpecForDoctor,
              timeout_s: float = PROBE_TIMEOUT_S) -> tuple[dict | None, str]:
    """Run the probe in the tool's interpreter; returns (report or None, error text)."""
    import os  # noqa: PLC0415

    full_env = dict(os.environ)
    for k, v in env.items():
        if v is None:
            full_env.pop(k, None)
        else:
            full_env[k] = v
    argv = [argv_python, "-c", PROBE, ",".join(spec.modules), ",".join(spec.dists), ",".join(spec.hidden)]
    try:
        proc = subprocess.run(argv, cwd=cwd, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,  # noqa: S603
                              text=True, timeout=timeout_s, stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired:
        return None, f"the probe did not finish in {timeout_s:.0f} s"
    except OSError as e:
        return None, f"cannot run {argv_python}: {e.strerror}"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(PROBE_MARK):
            return json.loads(line[len(PROBE_MARK):]), ""
    tail = " | ".join(proc.stdout.strip().splitlines()[-3:])
    return None, f"the interpreter exited with code {proc.returncode}: {tail[:300]}"


def check_tool(config: Any, tool: str, timeout_s: float = PROBE_TIMEOUT_S) -> ToolCheck:
    spec = TOOLS[tool]
    env = getattr(config.tools, tool)
    t0 = time.monotonic()
    check = ToolCheck(tool=tool, configured=env.python is not None, needed=_needed(config, spec), ok=True,
                      python=str(env.python) if env.python else None)
    if env.python is None:
        check.ok = False
        if check.needed:
            check.add(f"{tool} is selected ({', '.join(f'{s}.backend={b}' for s, b in spec.used_by)}) but "
                      f"tools.{tool}.python is not set",
                      f"install {tool} in its own environment and set tools.{tool}.python (docs/tools.md)")
        return check
    try:
        launch = launch_spec(tool, env, spec.shim, root_required=spec.root_required)
    except ToolUnavailable as e:
        check.add(e.message.split(";")[0], e.message.split(";", 1)[1].strip() if ";" in e.message else
                  f"fix tools.{tool} in the config")
        return check
    root = launch.cwd
    for key, default in spec.checkpoints.items():
        try:
            checkpoint_path(tool, env, key, default, root)
        except ToolUnavailable as e:
            check.add(e.message.split(";")[0], f"download it (docs/tools.md) or set tools.{tool}.checkpoints.{key}")
    for rel, fix in spec.files.items():
        if root is not None and not (root / rel).exists():
            check.add(f"{root / rel} is missing", fix)
    if root is not None and (commit := git_commit(root)):
        check.versions["checkout"] = commit
    report, error = run_probe(launch.argv[0], root, launch.env, spec, timeout_s)
    check.elapsed_s = round(time.monotonic() - t0, 2)
    if report is None:
        check.add(f"{tool}'s interpreter does not run the probe: {error}",
                  f"check tools.{tool}.python points at a working python of the {tool} environment")
        return check
    check.python_version = report.get("python")
    check.versions.update(report.get("versions", {}))
    if "torch" in report:
        check.versions["torch"] = report["torch"]
        check.cuda = bool(report.get("cuda"))
    else:
        check.add(f"torch does not import in {tool}'s environment ({report.get('torch_error', 'not installed')})",
                  f"install the torch build {tool} requires into that environment (docs/tools.md)")
    for module, err in report.get("modules", {}).items():
        if err is not None:
            check.add(f"'import {module}' fails in {tool}'s environment: {err}", FIX_INSTALL[tool])
    for module in report.get("missing", []):
        check.add(f"compiled module {module} is not installed", FIX_HIDDEN.get(module, FIX_INSTALL[tool]))
    if spec.needs_cuda and check.cuda is False:
        check.add(f"CUDA is not visible in {tool}'s environment (torch.cuda.is_available() is False)",
                  "check the NVIDIA driver, CUDA_VISIBLE_DEVICES and that torch is a CUDA build "
                  f"(torch.version.cuda={report.get('torch_cuda')})")
    if report.get("y2r_importable"):
        check.add(f"y2r is importable in {tool}'s environment (environments are mixed)",
                  f"uninstall y2r from {tool}'s environment; y2r talks to tools only through its shims")
    return check


def check_mediapipe(config: Any) -> ToolCheck | None:
    """The built-in hands backend's managed environment (``y2r setup``), when that module exists."""
    try:
        from y2r.tools import environments  # noqa: PLC0415
    except ImportError:
        return None
    needed = config.hands.backend == "builtin"
    if config.tools.mediapipe.python is not None:
        py = Path(config.tools.mediapipe.python).expanduser()
        check = ToolCheck("mediapipe", configured=True, needed=needed, ok=py.exists(), python=str(py))
        if not py.exists():
            check.add(f"tools.mediapipe.python: {py} does not exist", "fix the path or unset it to use `y2r setup`'s env")
        return check
    status = environments.env_status("mediapipe")
    check = ToolCheck("mediapipe", configured=status.exists, needed=needed, ok=status.ok,
                      python=str(status.python) if status.python else None)
    if status.versions:
        check.versions["mediapipe, opencv, numpy"] = status.versions
    if not status.ok:
        check.problems.append(Problem(status.problem or "environment not ready", status.fix or "run `y2r setup`"))
    return check


def check_tools(config: Any, timeout_s: float = PROBE_TIMEOUT_S) -> list[ToolCheck]:
    """One ToolCheck per external tool (probes run in parallel), then the built-in MediaPipe env."""
    with ThreadPoolExecutor(max_workers=len(TOOLS)) as pool:
        checks = list(pool.map(lambda t: check_tool(config, t, timeout_s), TOOLS))
    mp = check_mediapipe(config)
    if mp is not None:
        checks.append(mp)
    return checks
