def recursive_to(x, target):
    if isinstance(x, dict):
        return {k: recursive_to(v, target) for k, v in x.items()}
    if hasattr(x, "to"):
        return x.to(target)
    return x
