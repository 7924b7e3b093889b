"""parse_typed_config with Hydra-style overrides over a few presets (the keys y2r's shim touches)."""

from __future__ import annotations

import copy
from types import SimpleNamespace

DEFAULT_INSTANCE = "vipe.pipeline.default.DefaultAnnotationPipeline"
_BASE = {
    "instance": DEFAULT_INSTANCE,
    "init": {"camera_type": "pinhole", "intrinsics": "geocalib",
             "instance": {"kf_gap_sec": 2.0, "phrases": ["person"], "add_sky": True}},
    "slam": {"buffer": 1024, "infill_chunk_size": 16, "keyframe_depth": "unidepth-l", "optimize_intrinsics": None,
             "visualize": False, "ba": {"dense_disp_alpha": 0.001}},
    "post": {"depth_align_model": "adaptive_unidepth-l_svda"},
    "output": {"path": "vipe_results/", "skip_exists": False, "save_artifacts": False, "save_slam_map": False,
               "save_viz": True, "viz_downsample": 2},
}
PRESETS = {
    "default": _BASE,
    "no_vda": {**_BASE, "post": {"depth_align_model": "adaptive_unidepth-l"}},
    "panorama": {**_BASE, "instance": "vipe.pipeline.panorama.PanoramaAnnotationPipeline"},
}


def _value(raw: str):
    low = raw.lower()
    if low in ("null", "none", "~"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(raw)
        except ValueError:
            pass
    return raw.strip("'\"")


class _Pipeline(SimpleNamespace):
    def to_dictconfig(self):
        return copy.deepcopy(self.cfg)


def parse_typed_config(config_name="default", hydra_args=(), config_dir=None):
    preset = "default"
    sets = []
    for arg in hydra_args:
        key, _, raw = arg.partition("=")
        if key == "pipeline":
            preset = raw
        elif key.startswith("pipeline."):
            sets.append((key.split(".")[1:], _value(raw)))
        else:
            raise ValueError(f"Could not override '{key}'")
    if preset not in PRESETS:
        raise ValueError(f"Could not find 'pipeline/{preset}'")
    cfg = copy.deepcopy(PRESETS[preset])
    explicit_opt = False
    for path, value in sets:
        node = cfg
        for p in path[:-1]:
            if not isinstance(node.get(p), dict):
                raise ValueError(f"Could not override 'pipeline.{'.'.join(path)}'. Key '{p}' is not in struct")
            node = node[p]
        if path[-1] not in node:
            raise ValueError(f"Could not override 'pipeline.{'.'.join(path)}'. Key '{path[-1]}' is not in struct")
        node[path[-1]] = value
        explicit_opt |= path == ["slam", "optimize_intrinsics"]
    if not explicit_opt:  # ${neq:${..init.intrinsics},"gt"}
        cfg["slam"]["optimize_intrinsics"] = cfg["init"]["intrinsics"] != "gt"
    return SimpleNamespace(pipeline=_Pipeline(instance=cfg["instance"], cfg=cfg), streams=None)
