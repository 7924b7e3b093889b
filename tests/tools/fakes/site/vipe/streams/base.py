from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from vipe.utils.logging import pbar


class FrameAttribute(Enum):
    POSE = "pose"
    INTRINSICS = "intrinsics"
    CAMERA_TYPE = "camera_type"
    INSTANCE = "instance"
    MASK = "mask"
    METRIC_DEPTH = "metric_depth"


@dataclass(kw_only=True)
class VideoFrame:
    raw_frame_idx: int
    rgb: Any
    pose: Any = None
    camera_type: Any = None
    intrinsics: Any = None
    instance: Any = None
    instance_phrases: dict | None = None
    mask: Any = None
    metric_depth: Any = None

    def size(self):
        return (self.rgb.shape[0], self.rgb.shape[1])


class VideoStream:
    def frame_size(self):
        raise NotImplementedError

    def name(self):
        raise NotImplementedError

    def fps(self):
        raise NotImplementedError

    def __len__(self):
        raise NotImplementedError

    def attributes(self):
        return set()


class StreamProcessor(Protocol):
    n_passes_required: int = 1

    def update_fps(self, previous_fps):
        return previous_fps

    def update_frame_size(self, previous_frame_size):
        return previous_frame_size

    def update_attributes(self, previous_attributes):
        return previous_attributes

    def update_iterator(self, previous_iterator, pass_idx):
        for frame_idx, frame in enumerate(previous_iterator):
            yield self(frame_idx, frame)

    def __call__(self, frame_idx, frame): ...


class AssignAttributesProcessor(StreamProcessor):
    def __init__(self, stream_attributes):
        self.stream_attributes = stream_attributes

    def update_attributes(self, previous_attributes):
        return previous_attributes | set(self.stream_attributes)

    def __call__(self, frame_idx, frame):
        for attribute, values in self.stream_attributes.items():
            setattr(frame, attribute.value, values[frame_idx])
        return frame


class CachedVideoStream(VideoStream):
    def __init__(self, stream, desc="Caching"):
        self.stream = stream
        self.data = None

    def fps(self):
        return self.stream.fps()

    def frame_size(self):
        return self.stream.frame_size()

    def name(self):
        return self.stream.name()

    def __len__(self):
        return len(self.stream)

    def attributes(self):
        return self.stream.attributes()

    def __iter__(self):
        if self.data is None:
            self.data = [f for f in pbar(iter(self.stream), total=len(self.stream), desc="Caching")]
        return iter(self.data)


class ProcessedVideoStream(VideoStream):
    def __init__(self, stream, processors):
        self.stream = stream
        self.processors = processors

    def frame_size(self):
        size = self.stream.frame_size()
        for p in self.processors:
            size = p.update_frame_size(size)
        return size

    def fps(self):
        fps = self.stream.fps()
        for p in self.processors:
            fps = p.update_fps(fps)
        return fps

    def attributes(self):
        a = self.stream.attributes()
        for p in self.processors:
            a = p.update_attributes(a)
        return a

    def name(self):
        return self.stream.name()

    def __len__(self):
        return len(self.stream)

    def cache(self, desc="Caching", online=False):
        return CachedVideoStream(self, desc)

    def __iter__(self):
        it = iter(self.stream)
        for p in self.processors:
            it = p.update_iterator(it, 0)
        return it
