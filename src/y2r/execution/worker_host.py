"""A y2r worker process: serves (video, stage) requests with backends loaded once per process.

Started by an executor as ``python -m y2r.execution.worker_host`` -- a fresh interpreter in its own
process group (never a fork), speaking the same JSON-lines protocol as the tool shims
(``tools/shims/y2r_shim.py``). Backends are constructed on first use and kept, so a model (or a
tool shim such as MediaPipe's) loads once per worker, not once per video.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

from y2r.tools.shims import y2r_shim


class BackendHost(y2r_shim.Handler):
    name = "y2r-worker"

    def __init__(self) -> None:
        self.config = None
        self.ctx = None
        self.backends: dict[tuple[str, str], object] = {}
        self.load_s: dict[str, float] = {}

    def hello(self) -> dict:
        import y2r  # noqa: PLC0415

        return {"y2r_version": y2r.__version__}

    def load(self, params: dict) -> dict:
        from y2r.config import Config  # noqa: PLC0415 - keep `hello` light
        from y2r.stages.base import WorkerContext  # noqa: PLC0415

        self.config = Config.model_validate(params["config"])
        threads = int(params.get("threads") or 1)
        try:
            import cv2  # noqa: PLC0415

            # One worker per core: OpenCV's own thread pool would only oversubscribe the machine.
            cv2.setNumThreads(threads)
        except ImportError:
            pass
        # A simulated GPU is memory booked on the CPU: the backend runs on "cpu" (simulated_gpus.py).
        on_gpu = params.get("gpu") is not None and not params.get("simulated_gpu")
        self.ctx = WorkerContext(worker_id=params.get("worker_id", "worker"), log_dir=Path(params.get("log_dir", ".")),
                                 device="cuda" if on_gpu else "cpu", gpu_index=params.get("gpu"))
        loaded = []
        # GPU lanes load their model now, so the load is paid (and measured) once, at worker start.
        for stage, backend in params.get("preload", []):
            self._backend(stage, backend)
            loaded.append(f"{stage}/{backend}")
        return {"loaded": loaded, "load_s": self.load_s, "pid": os.getpid()}

    def _backend(self, stage: str, name: str):
        from y2r.stages.base import backend_class  # noqa: PLC0415

        key = (stage, name)
        if key not in self.backends:
            t0 = time.perf_counter()
            self.backends[key] = backend_class(stage, name)(self.config, self.ctx)
            self.load_s[f"{stage}/{name}"] = time.perf_counter() - t0
        return self.backends[key]

    def run(self, params: dict, ctx: y2r_shim.RequestContext) -> dict:
        from y2r.artifacts import VideoMeta, read_json  # noqa: PLC0415
        from y2r.stages.base import Job  # noqa: PLC0415

        stage, name = params["stage"], params["backend"]
        inputs = {k: Path(v) for k, v in params.get("inputs", {}).items()}
        meta = VideoMeta.from_dict(read_json(inputs["ingest"] / "meta.json")) if "ingest" in inputs else None
        job = Job(video_id=params["video_id"], stage=stage, meta=meta, source_path=Path(params["source_path"]),
                  inputs=inputs, out_dir=Path(params["out_dir"]), log_path=Path(params["log_path"]),
                  attempt=int(params.get("attempt", 1)), progress=ctx.progress)
        backend = self._backend(stage, name)
        t0 = time.perf_counter()
        artifact = backend.process(job)
        artifact.save(job.out_dir)
        result = {"describe": backend.describe(), "process_s": time.perf_counter() - t0,
                  "quality": getattr(artifact, "quality", {}) or {}}
        if stage == "ingest":
            result["meta"] = asdict(artifact.meta)
        return result

    def close(self) -> None:
        for b in self.backends.values():
            try:
                b.close()
            except Exception:  # noqa: BLE001 - closing is best effort; the process exits next
                pass


if __name__ == "__main__":
    y2r_shim.serve(BackendHost())
