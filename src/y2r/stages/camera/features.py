"""Sparse feature tracks: Shi-Tomasi corners followed frame to frame with pyramidal Lucas-Kanade.

Every track gets an integer id when its corner is detected and keeps it for as long as it survives a
forward-backward check. Camera geometry downstream (two-view init, PnP, bundle adjustment,
degeneracy tests) only ever sees ``TrackSet``: per frame, which tracks are seen and where.

Why KLT and not descriptor matching: video frames are close in time, so differential tracking is
both faster and sub-pixel accurate, and a track links a point over many frames for free (which is
what bundle adjustment needs). Tracking is done at the stored resolution unless the frame is large,
because LK's cost grows with the number of points and the window, not with the image size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class TrackerOptions:
    max_features: int = 1500
    # Minimum distance between corners (pixels at the tracking resolution): spreads features out.
    min_distance: float = 7.0
    # Relative corner quality (Shi-Tomasi) and absolute floor on the smallest structure-tensor
    # eigenvalue. The absolute floor is what makes a flat, noisy image yield *no* corners instead
    # of 1500 corners on sensor noise (goodFeaturesToTrack's quality level is relative to the best).
    quality_level: float = 0.005
    # Measured on 8-bit frames with an 11 px block: corners of rendered texture sit at 2e-4..1e-2,
    # those of a real, low-texture desk (egocentric video, downscaled to 512 px) at 5e-5..3e-4;
    # Gaussian noise peaks near 1.6e-5 * sigma^2 (sigma in grey levels). Strong corners are
    # preferred: weak ones are mostly edge-like and their tracks slide along the edge (on the
    # synthetic occluder scene they doubled the trajectory error). Weak corners are accepted only
    # when a frame has fewer than ``min_strong_corners`` strong ones, as ORB-SLAM lowers its FAST
    # threshold in cells without corners. Corners on noise that pass die at the forward-backward
    # check and never count as tracked (``tracked_counts``).
    min_eigen: float = 3e-4
    min_eigen_weak: float = 5e-5
    min_strong_corners: int = 300
    window: int = 11
    levels: int = 3
    # A track is dropped when tracking back lands further than this from where it started.
    fb_threshold_px: float = 0.7
    # Re-detect corners when fewer than this fraction of the tracks present after the last
    # detection survive (detection costs as much as tracking; texture-limited frames never reach
    # max_features, so a threshold on max_features alone would re-detect every frame).
    replenish_fraction: float = 0.8
    # Frames larger than this (long side, pixels) are tracked at reduced resolution.
    max_track_side: int = 720


@dataclass
class TrackSet:
    """Feature tracks of one video, in stored-frame pixel coordinates (integer = pixel centre)."""

    ids: list[np.ndarray]  # per frame (n_t,) int64 track ids, sorted ascending
    uv: list[np.ndarray]  # per frame (n_t, 2) float64 pixel positions
    num_tracks: int
    # Per frame, the number of corners that passed the absolute texture floor when the frame was
    # (re)detected; -1 where no detection ran. Used to flag low-texture videos.
    corners_detected: np.ndarray = field(default_factory=lambda: np.zeros(0, int))
    _homographies: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def num_frames(self) -> int:
        return len(self.ids)

    def common(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Tracks seen in both frames ``a`` and ``b``: (ids, uv in a, uv in b)."""
        ids, ia, ib = np.intersect1d(self.ids[a], self.ids[b], assume_unique=True, return_indices=True)
        return ids, self.uv[a][ia], self.uv[b][ib]

    def homography_inliers(
        self, a: int, b: int, thresh_px: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Tracks common to frames a and b, and the inliers of a RANSAC homography between them.

        The homography does not depend on the camera model, and several estimators (rotation
        model, focal search, initialisation) ask for the same pairs: it is computed once.
        """
        key = (a, b, thresh_px)
        if key not in self._homographies:
            ids, ua, ub = self.common(a, b)
            inl = np.ones(len(ids), bool)
            if len(ids) >= 8:
                _, mask = cv2.findHomography(ua, ub, cv2.RANSAC, 2.0 * thresh_px)
                if mask is not None:
                    inl = mask.ravel() > 0
            self._homographies[key] = (ids, ua, ub, inl)
        return self._homographies[key]

    def counts(self) -> np.ndarray:
        return np.array([len(i) for i in self.ids])

    def tracked_counts(self) -> np.ndarray:
        """Per frame from the second on, the tracks followed from the previous frame: what texture
        actually supports (fresh detections on noise or shading do not survive a frame)."""
        return np.array(
            [len(np.intersect1d(a, b, assume_unique=True)) for a, b in zip(self.ids[:-1], self.ids[1:])]
        )


def to_grey(frame: np.ndarray) -> np.ndarray:
    """RGB uint8 (H,W,3) -> grey uint8 (H,W)."""
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


class FeatureTracker:
    """Tracks corners through a sequence of grey frames, one frame at a time (streaming)."""

    def __init__(self, width: int, height: int, options: TrackerOptions | None = None):
        self.opt = options or TrackerOptions()
        long_side = max(width, height)
        self.scale = min(1.0, self.opt.max_track_side / long_side)
        self._prev: np.ndarray | None = None
        self._prev_pts = np.zeros((0, 2), np.float32)  # tracking-resolution coordinates
        self._prev_ids = np.zeros(0, np.int64)
        self._next_id = 0
        self._ids: list[np.ndarray] = []
        self._uv: list[np.ndarray] = []
        self._corners: list[int] = []
        self._after_detect = 0  # tracks alive right after the last detection
        self._criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 20, 0.01)

    # ------------------------------------------------------------------ internals
    def _resize(self, grey: np.ndarray) -> np.ndarray:
        if self.scale == 1.0:
            return grey
        return cv2.resize(grey, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)

    def _to_stored(self, pts: np.ndarray) -> np.ndarray:
        # Pixel centres map as u_stored = (u_track + 0.5) / s - 0.5.
        if self.scale == 1.0:
            return pts.astype(np.float64)
        return (pts.astype(np.float64) + 0.5) / self.scale - 0.5

    def _lk(self, a: np.ndarray, b: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.opt.window
        nxt, st, _ = cv2.calcOpticalFlowPyrLK(
            a, b, pts, None, winSize=(w, w), maxLevel=self.opt.levels, criteria=self._criteria
        )
        return nxt.reshape(-1, 2), st.reshape(-1).astype(bool)

    def _detect(self, img: np.ndarray, existing: np.ndarray, want: int) -> tuple[np.ndarray, int]:
        """New corners away from ``existing`` ones; also returns how many textured corners exist."""
        # Forbid a disc around every existing track (dilating their pixels is faster than drawing).
        mask = np.zeros(img.shape, np.uint8)
        if len(existing):
            ui = np.clip(np.round(existing[:, 0]).astype(int), 0, img.shape[1] - 1)
            vi = np.clip(np.round(existing[:, 1]).astype(int), 0, img.shape[0] - 1)
            mask[vi, ui] = 255
            r = round(self.opt.min_distance)
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
        mask = cv2.bitwise_not(mask)
        pts = cv2.goodFeaturesToTrack(
            img,
            maxCorners=want,
            qualityLevel=self.opt.quality_level,
            minDistance=self.opt.min_distance,
            mask=mask,
            blockSize=3,
        )
        if pts is None:
            return np.zeros((0, 2), np.float32), len(existing)
        pts = pts.reshape(-1, 2)
        # Absolute texture floor, same measure LK uses (min eigenvalue of the normalised structure
        # tensor): corners on noise or smooth shading are rejected here.
        eig = cv2.cornerMinEigenVal(img, blockSize=self.opt.window, ksize=3)
        ui = np.clip(np.round(pts[:, 0]).astype(int), 0, img.shape[1] - 1)
        vi = np.clip(np.round(pts[:, 1]).astype(int), 0, img.shape[0] - 1)
        strength = eig[vi, ui]
        keep = strength >= self.opt.min_eigen
        if len(existing) + keep.sum() < self.opt.min_strong_corners:
            keep = strength >= self.opt.min_eigen_weak
        pts = pts[keep].astype(np.float32)
        return pts, len(existing) + len(pts)

    # ------------------------------------------------------------------ API
    def add(self, grey: np.ndarray) -> None:
        img = self._resize(grey)
        h, w = img.shape
        pts, ids = self._prev_pts, self._prev_ids
        if self._prev is not None and len(pts):
            fwd, ok1 = self._lk(self._prev, img, pts)
            back, ok2 = self._lk(img, self._prev, fwd)
            fb = np.linalg.norm(back - pts, axis=1)
            inside = (fwd[:, 0] >= 0) & (fwd[:, 0] <= w - 1) & (fwd[:, 1] >= 0) & (fwd[:, 1] <= h - 1)
            keep = ok1 & ok2 & inside & (fb < self.opt.fb_threshold_px)
            pts, ids = fwd[keep].astype(np.float32), ids[keep]
        elif self._prev is not None:
            pts, ids = np.zeros((0, 2), np.float32), np.zeros(0, np.int64)
        corners = -1
        first = self._prev is None
        if first or len(pts) < self.opt.replenish_fraction * min(self._after_detect, self.opt.max_features):
            new, corners = self._detect(img, pts, self.opt.max_features - len(pts))
            if len(new):
                new_ids = np.arange(self._next_id, self._next_id + len(new), dtype=np.int64)
                self._next_id += len(new)
                pts = np.concatenate([pts, new]).astype(np.float32)
                ids = np.concatenate([ids, new_ids])
            self._after_detect = len(pts)
        self._prev, self._prev_pts, self._prev_ids = img, pts, ids
        order = np.argsort(ids, kind="stable")
        self._ids.append(ids[order])
        self._uv.append(self._to_stored(pts[order]))
        self._corners.append(corners)

    def result(self) -> TrackSet:
        return TrackSet(
            ids=self._ids,
            uv=self._uv,
            num_tracks=self._next_id,
            corners_detected=np.array(self._corners, int),
        )


def track_frames(frames: np.ndarray, options: TrackerOptions | None = None, progress=None) -> TrackSet:
    """Track corners through RGB frames (T,H,W,3) uint8."""
    T, H, W = frames.shape[:3]
    tracker = FeatureTracker(W, H, options)
    for t in range(T):
        tracker.add(to_grey(frames[t]))
        if progress is not None:
            progress(t + 1, T)
    return tracker.result()
