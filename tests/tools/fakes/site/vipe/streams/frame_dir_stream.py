from pathlib import Path

import cv2
import torch

from vipe.streams.base import VideoFrame, VideoStream


class FrameDirStream(VideoStream):
    def __init__(self, path: Path, seek_range=None, name=None):
        self.path = Path(path)
        self._name = name if name is not None else self.path.name
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
        if not self.files:
            raise ValueError(f"No image files found in directory: {path}")
        self._height, self._width = cv2.imread(str(self.files[0])).shape[:2]

    def frame_size(self):
        return (self._height, self._width)

    def fps(self):
        return 30.0  # upstream assumes 30 fps for frame directories

    def name(self):
        return self._name

    def __len__(self):
        return len(self.files)

    def __iter__(self):
        for i, p in enumerate(self.files):
            frame = cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
            yield VideoFrame(raw_frame_idx=i, rgb=(torch.as_tensor(frame).float() / 255.0).cuda())
