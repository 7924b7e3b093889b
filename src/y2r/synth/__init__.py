"""Synthetic scenes with exact ground truth, for tests, benchmarks and ``y2r demo``.

A box room with textured cubes (and optionally an occluder) is ray-cast analytically with numpy, so
camera poses, depth, masks and 3D point tracks are exact. Conventions and the ground-truth file
layout are those of ``/work/shared/fixtures/room_orbit_gt.npz`` (see its README)::

    clip = render("orbit", width=320, height=240, num_frames=32, seed=0)
    clip.save_gt("orbit_gt.npz"); write_video(clip, "orbit.mp4")

Modules: ``scene`` (specs and the ``SCENES`` suite), ``motions`` (camera/object trajectories),
``textures`` (procedural materials), ``raycast`` (ray/geometry intersection), ``render`` (frames and
ground truth), ``clip`` (``SynthClip`` and its npz), ``video_io`` (encoding with PyAV).
"""

from y2r.synth.clip import SynthClip, load_gt, save_gt
from y2r.synth.motions import Orbit, Pivot, Slide, Sweep
from y2r.synth.render import render
from y2r.synth.scene import SCENES, CubeSpec, OccluderSpec, RoomSpec, SceneSpec
from y2r.synth.video_io import write_video

__all__ = ["SCENES", "CubeSpec", "OccluderSpec", "Orbit", "Pivot", "RoomSpec", "SceneSpec", "Slide", "Sweep",
           "SynthClip", "load_gt", "render", "save_gt", "write_video"]
