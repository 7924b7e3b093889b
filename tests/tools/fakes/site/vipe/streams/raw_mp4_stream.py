from pathlib import Path

import cv2
import torch

from vipe.streams.base import VideoFrame, VideoStream


class RawMp4Stream(VideoStream):
    def __init__(self, path: Path, seek_range=None, name=None):
        self.path = path
        self._name = name if name is not None else Path(path).stem
        vcap = cv2.VideoCapture(str(path))
        self._width = int(vcap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self._height = int(vcap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self._fps = vcap.get(cv2.CAP_PROP_FPS)
        self._n = int(vcap.get(cv2.CAP_PROP_FRAME_COUNT))
        vcap.release()

    def frame_size(self):
        return (self._height, self._width)

    def fps(self):
        return self._fps

    def name(self):
        return self._name

    def __len__(self):
        return self._n

    def __iter__(self):
        vcap = cv2.VideoCapture(str(self.path))
        i = 0
        while True:
            ok, frame = vcap.read()
            if not ok:
                break
            frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
            yield VideoFrame(raw_frame_idx=i, rgb=(torch.as_tensor(frame).float() / 255.0).cuda())
            i += 1
        vcap.release()
