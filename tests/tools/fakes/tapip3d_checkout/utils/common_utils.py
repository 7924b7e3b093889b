def setup_logger():
    pass
