from vipe.utils.logging import pbar  # noqa: F401 - patched by y2r's progress hook like upstream's
