import logging

disable_progress_bar = False


def configure_logging():
    return logging.getLogger("vipe")


def pbar(iterable, **kwargs):
    return iterable
