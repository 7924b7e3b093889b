import fake_truth


class _DepthModel:
    def __init__(self, name):
        fake_truth.log_load("vipe", f"make_depth_model:{name}")
        self.name = name


def make_depth_model(model: str):
    if model.split("-")[0] not in ("unidepth", "metric3d", "moge", "dav3"):
        raise ValueError(f"Unknown depth model: {model}")
    return _DepthModel(model)
