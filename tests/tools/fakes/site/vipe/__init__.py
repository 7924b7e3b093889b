"""Fake ViPE (tests only): nv-tlabs/vipe v1.1.0's module paths and call signatures, numpy "models"
that write ViPE's real output formats (float16 EXR depth in a zip, PNG masks, pose/intrinsics npz)."""

__version__ = "1.1.0+fake"
