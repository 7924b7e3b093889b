"""Camera poses from feature tracks: keyframes, two-view initialisation, incremental PnP + BA.

The design is that of keyframe-based monocular SfM/SLAM (PTAM, ORB-SLAM), reduced to what an
offline video pass needs:

1. keyframes: a new one whenever the median track motion since the last keyframe exceeds
   ``keyframe_parallax_px`` or too few tracks survive;
2. initialisation: the first keyframe pair whose static majority shows parallax (after removing
   the best rotation) and enough triangulation angle, through the essential matrix (5-point
   RANSAC) and its cheirality-checked decomposition;
3. incremental registration of the remaining keyframes (outwards from the initial pair) by
   PnP-RANSAC on already triangulated tracks, triangulating new tracks as the baseline allows;
   local bundle adjustment every few keyframes and one early global BA, then a final global BA,
   the only one that frees the focal when self-calibrating;
4. every other frame: a robust motion-only PnP against the final points, started from the
   interpolation of its neighbouring keyframes.

Tracks whose reprojection is inconsistent after BA (independently moving objects, tracks that slid
along an occluding edge) are blacklisted and never triangulated again (``outlier_points``).

Self-calibration starts from ``sfm_focal_search`` (a 1-D search scored by quick reconstructions).
The rotation-only model (``rotation_only_poses``) is the same machinery with translations pinned at
zero and points as directions: it is what a purely rotating camera gets; ``rotation_focal_search``
and ``rotation_residuals`` measure how well a rotation explains the tracks, the evidence for that
degeneracy (see degeneracy.py).

Poses are returned as ``cam_T_world`` in the reconstruction's own world frame and scale; the
backend re-anchors them on frame 0 and normalises the scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise

import cv2
import numpy as np
from scipy.spatial.transform import Rotation, Slerp

from y2r.geometry import invert_se3, make_se3
from y2r.stages.camera.bundle_adjustment import BundleResult, bundle_adjust
from y2r.stages.camera.features import TrackSet
from y2r.stages.camera.intrinsics import K_from_focal


@dataclass
class PoseOptions:
    keyframe_parallax_px: float = 40.0
    # ... and at least this many keyframes per clip, evenly spread where motion alone gives fewer.
    # Why: the focal is observed only through how the views' rotations and translations combine;
    # a slow sideways clip reaching 12 px of median motion three times has three views, whose
    # focal is uncertain (1% marginal std on the synthetic pan) and easily biased by a sliding
    # object (+37% on the occluder scene); 16 views brought both within 0.5%.
    min_keyframes: int = 16
    # A keyframe is also started when fewer than this fraction of the last keyframe's tracks remain.
    keyframe_min_shared: float = 0.6
    refine: bool = True  # bundle adjustment on keyframes
    # Two-view initialisation needs this median triangulation angle (degrees) ...
    init_min_angle_deg: float = 2.0
    # ... and new points need at least this angle between their two viewing rays.
    triangulation_min_angle_deg: float = 1.0
    ransac_px: float = 1.0
    huber_px: float = 1.0
    # After BA a track is an outlier when one residual exceeds outlier_px, or its residuals fail
    # a chi-square test against the video's noise level (at least noise_floor_px).
    outlier_px: float = 3.0
    noise_floor_px: float = 0.15
    outlier_rounds: int = 4
    max_obs_per_point: int = 10  # observations of one track used in a bundle adjustment
    min_pnp_inliers: int = 12
    local_ba_every: int = 4
    local_ba_window: int = 6  # keyframes a local BA moves
    local_ba_anchors: int = 3  # older keyframes it includes but holds fixed


@dataclass
class Reconstruction:
    cam_T_world: np.ndarray  # (T,4,4), world = the reconstruction's own frame
    registered: np.ndarray  # (T,) bool: pose measured (PnP/BA), False where interpolated
    keyframes: np.ndarray  # (K,) frame indices
    points: np.ndarray  # (P,3) world points
    point_ids: np.ndarray  # (P,) track id of each point
    focal: float
    rms_px: float  # robust reprojection RMS of the final keyframe BA
    focal_rel_std: float | None = None  # marginal std of the focal / focal (self-calibration only)
    # ... its cluster-robust version (points as clusters: bundle_adjustment.bundle_adjust)
    focal_rel_std_tracks: float | None = None
    stats: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------- keyframes
def select_keyframes(
    tracks: TrackSet, parallax_px: float, min_shared: float, min_keyframes: int = 0
) -> np.ndarray:
    """Frame 0, then a new keyframe whenever tracks moved (median) or thinned out enough; last frame too.

    ``min_keyframes`` also caps the gap between keyframes at ``(T - 1) / (min_keyframes - 1)``
    frames, so that a short or slow clip still has that many (see ``PoseOptions.min_keyframes``).
    """
    T = tracks.num_frames
    max_gap = max(1, (T - 1) // (min_keyframes - 1)) if min_keyframes > 1 else T
    kfs = [0]
    for t in range(1, T):
        k = kfs[-1]
        ids, a, b = tracks.common(k, t)
        n_k = max(len(tracks.ids[k]), 1)
        moved = np.median(np.linalg.norm(b - a, axis=1)) if len(ids) else np.inf
        if moved >= parallax_px or len(ids) < min_shared * n_k or len(ids) < 30 or t - k >= max_gap:
            kfs.append(t)
    if kfs[-1] != T - 1:
        kfs.append(T - 1)
    return np.array(kfs, dtype=int)


# ----------------------------------------------------------------------------------- geometry
def _rays(K: np.ndarray, uv: np.ndarray) -> np.ndarray:
    Kinv = np.linalg.inv(K)
    return np.concatenate([uv, np.ones((len(uv), 1))], 1) @ Kinv.T


def _project(K, Rt: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    Xc = X @ Rt[:3, :3].T + Rt[:3, 3]
    z = Xc[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (Xc[:, :2] / z[:, None]) * K[0, 0] + K[:2, 2]
    return uv, z


def triangulate(
    K: np.ndarray,
    T1: np.ndarray,
    T2: np.ndarray,
    uv1: np.ndarray,
    uv2: np.ndarray,
    max_px: float,
    min_angle_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Linear two-view triangulation of pixel pairs; returns (X (N,3), ok (N,)) with the usual checks.

    ``T1, T2`` are cam_T_world. ok requires: in front of both cameras, reprojection under
    ``max_px`` in both, and an angle between the viewing rays of at least ``min_angle_deg``
    (a smaller angle gives depth that is mostly noise).
    """
    if len(uv1) == 0:
        return np.zeros((0, 3)), np.zeros(0, bool)
    P1 = K @ T1[:3]
    P2 = K @ T2[:3]
    Xh = cv2.triangulatePoints(P1, P2, uv1.T.astype(np.float64), uv2.T.astype(np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        X = (Xh[:3] / Xh[3]).T
    p1, z1 = _project(K, T1, X)
    p2, z2 = _project(K, T2, X)
    c1 = invert_se3(T1)[:3, 3]
    c2 = invert_se3(T2)[:3, 3]
    r1, r2 = X - c1, X - c2
    with np.errstate(divide="ignore", invalid="ignore"):
        cosang = np.sum(r1 * r2, 1) / (np.linalg.norm(r1, axis=1) * np.linalg.norm(r2, axis=1))
    ok = (
        np.isfinite(X).all(1)
        & (z1 > 0)
        & (z2 > 0)
        & (np.linalg.norm(p1 - uv1, axis=1) < max_px)
        & (np.linalg.norm(p2 - uv2, axis=1) < max_px)
        & (cosang < np.cos(np.deg2rad(min_angle_deg)))
    )
    return X, ok


PNP_RANSAC_POINTS = 300
GLOBAL_BA_AT = 8  # keyframes registered when the one intermediate global bundle adjustment runs


def _pnp(
    K: np.ndarray, X: np.ndarray, uv: np.ndarray, guess: np.ndarray | None, ransac_px: float, min_inliers: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """cam_T_world from 3D-2D matches: RANSAC (EPnP) then Levenberg-Marquardt on the inliers."""
    if len(X) < max(min_inliers, 6):
        return None, np.zeros(len(X), bool)
    X = np.ascontiguousarray(X, np.float64)
    uv = np.ascontiguousarray(uv, np.float64)
    # RANSAC only needs a hypothesis: a fixed, evenly spread subset keeps its cost independent of
    # the number of tracks; the refinement below uses every inlier.
    sub = np.linspace(0, len(X) - 1, min(len(X), PNP_RANSAC_POINTS)).astype(int)
    ok, rvec, tvec, inl = cv2.solvePnPRansac(
        X[sub],
        uv[sub],
        K,
        None,
        iterationsCount=100,
        reprojectionError=2.0 * ransac_px,
        confidence=0.999,
        flags=cv2.SOLVEPNP_EPNP,
    )
    if not ok or inl is None or len(inl) < min(min_inliers, len(sub)):
        if guess is None:
            return None, np.zeros(len(X), bool)
        rvec, tvec = cv2.Rodrigues(guess[:3, :3])[0], guess[:3, 3].reshape(3, 1).copy()
    inl_mask = np.zeros(len(X), bool)
    for _ in range(2):  # refine, re-select inliers with the refined pose, refine again
        Rt = make_se3(cv2.Rodrigues(rvec)[0], tvec.ravel())
        p, z = _project(K, Rt, X)
        err = np.linalg.norm(p - uv, axis=1)
        inl_mask = (z > 0) & (err < 2.0 * ransac_px)
        if inl_mask.sum() < min_inliers:
            return None, inl_mask
        rvec, tvec = cv2.solvePnPRefineLM(X[inl_mask], uv[inl_mask], K, None, rvec, tvec)
    Rt = make_se3(cv2.Rodrigues(rvec)[0], tvec.ravel())
    p, z = _project(K, Rt, X)
    inl_mask = (z > 0) & (np.linalg.norm(p - uv, axis=1) < 2.0 * ransac_px)
    return Rt, inl_mask


def interpolate_poses(frames: np.ndarray, poses: np.ndarray, query: np.ndarray) -> np.ndarray:
    """cam_T_world at ``query`` frames from known ones: slerp on rotations, lerp on camera centres."""
    frames = np.asarray(frames)
    if len(frames) == 1:
        return np.repeat(poses[:1], len(query), 0)
    q = np.clip(query, frames[0], frames[-1]).astype(np.float64)
    wTc = invert_se3(poses)
    rots = Rotation.from_matrix(wTc[:, :3, :3])
    R = Slerp(frames.astype(np.float64), rots)(q).as_matrix()
    c = np.stack([np.interp(q, frames, wTc[:, i, 3]) for i in range(3)], 1)
    return invert_se3(make_se3(R, c))


# ----------------------------------------------------------------------------------- the map
class _Map:
    """Keyframe poses, triangulated tracks, blacklisted tracks: the state of incremental SfM."""

    def __init__(self, tracks: TrackSet, keyframes: np.ndarray, K: np.ndarray, opt: PoseOptions):
        self.tracks = tracks
        self.kfs = keyframes
        self.K = K.copy()
        self.opt = opt
        self.pose: dict[int, np.ndarray] = {}  # keyframe -> cam_T_world
        self.X = np.full((tracks.num_tracks, 3), np.nan)  # track id -> world point
        self.bad = np.zeros(tracks.num_tracks, bool)

    @property
    def focal(self) -> float:
        return float(self.K[0, 0])

    def has_point(self, ids: np.ndarray) -> np.ndarray:
        return np.isfinite(self.X[ids, 0]) & ~self.bad[ids]

    def triangulate_new(self, k: int) -> int:
        """Triangulate tracks seen in keyframe k and some registered keyframe, not yet in the map."""
        ids_k, uv_k = self.tracks.ids[k], self.tracks.uv[k]
        todo = ~self.has_point(ids_k) & ~self.bad[ids_k]
        added = 0
        # Partners: registered keyframes, farthest first (largest baseline -> best angle).
        partners = sorted((j for j in self.pose if j != k), key=lambda j: -abs(j - k))
        for j in partners:
            if not todo.any():
                break
            ids, ik, ij = np.intersect1d(
                ids_k[todo], self.tracks.ids[j], assume_unique=True, return_indices=True
            )
            if len(ids) == 0:
                continue
            sel = np.flatnonzero(todo)[ik]
            X, ok = triangulate(
                self.K,
                self.pose[k],
                self.pose[j],
                uv_k[sel],
                self.tracks.uv[j][ij],
                max_px=2.0 * self.opt.ransac_px,
                min_angle_deg=self.opt.triangulation_min_angle_deg,
            )
            self.X[ids[ok]] = X[ok]
            todo[sel[ok]] = False
            added += int(ok.sum())
        return added

    def observations(self, frames: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frame-list index, track id, uv) of the map points observed in ``frames``.

        A track seen by more than ``max_obs_per_point`` of the frames keeps about that many
        observations, evenly spread over its life (first and last included). Why: the reduced
        camera system costs the sum over points of (observations)^2, and a track followed through
        60 keyframes would dominate it; its evenly spread subset keeps the long-range constraint it
        provides. The subset is staggered per track (a phase from the track id): with the same
        subset for every track, the keyframes it skips would keep only the short tracks'
        observations and their poses would float (3.8 degrees off on the synthetic pan).
        """
        ci, ti, uv = [], [], []
        for n, k in enumerate(frames):
            ids = self.tracks.ids[k]
            m = self.has_point(ids)
            ci.append(np.full(m.sum(), n))
            ti.append(ids[m])
            uv.append(self.tracks.uv[k][m])
        ci, ti, uv = np.concatenate(ci), np.concatenate(ti), np.concatenate(uv)
        cap = self.opt.max_obs_per_point
        order = np.lexsort((ci, ti))  # by track, then frame
        ci, ti, uv = ci[order], ti[order], uv[order]
        _, start, count = np.unique(ti, return_index=True, return_counts=True)
        if len(count) and count.max() > cap:
            rank = np.arange(len(ti)) - np.repeat(start, count)  # position within its track
            n_obs = np.repeat(count, count)
            # Interior observations (ranks 1..n-2) fall into cap - 2 bins of width w; the first one
            # of each bin is kept, bins shifted by a per-track phase (golden-ratio sequence).
            w = np.maximum(n_obs - 2, 1) / max(cap - 2, 1)
            shift = np.mod(ti * 0.6180339887498949, 1.0) * w
            x = rank - 1
            new_bin = np.floor((x + shift) / w) > np.floor((x - 1 + shift) / w)
            keep = (n_obs <= cap) | (rank == 0) | (rank == n_obs - 1) | new_bin
            ci, ti, uv = ci[keep], ti[keep], uv[keep]
        return ci, ti, uv

    def bundle(
        self,
        frames: list[int],
        fixed: set[int],
        optimize_focal: bool,
        rounds: int = 1,
        max_iterations: int = 30,
        strict: bool = True,
    ) -> BundleResult | None:
        """BA over keyframes ``frames`` (those in ``fixed`` held constant) and the points they see.

        After each round, outlier tracks (``outlier_points``) are removed for good and the BA is
        repeated (up to ``rounds`` times). Why repeat: an independently moving object pulls the
        cameras towards explaining it, which hides part of its inconsistency; once the worst of its
        points are gone the rest stand out.
        """
        res = None
        for _ in range(rounds):
            ci, ti, uv = self.observations(frames)
            if len(ti) < 20:
                return res
            pts, pi = np.unique(ti, return_inverse=True)
            Ts = np.stack([self.pose[k] for k in frames])
            fixed_mask = np.array([k in fixed for k in frames])
            res = bundle_adjust(
                Ts[:, :3, :3],
                Ts[:, :3, 3],
                self.X[pts],
                self.focal,
                self.K[:2, 2],
                ci,
                pi,
                uv,
                fixed_cams=fixed_mask,
                optimize_focal=optimize_focal,
                huber_px=self.opt.huber_px,
                max_iterations=max_iterations,
            )
            for n, k in enumerate(frames):
                self.pose[k] = make_se3(res.R[n], res.t[n])
            self.X[pts] = res.X
            if optimize_focal:
                self.K[0, 0] = self.K[1, 1] = res.focal
            kill = outlier_points(pi, res.residual_px, len(pts), self.opt, strict)
            self.bad[pts[kill]] = True
            self.X[pts[kill]] = np.nan
            if kill.sum() <= max(2, 0.002 * len(pts)):
                break  # another round would move nothing that matters
        return res


def outlier_points(
    pt_of_obs: np.ndarray, residual_px: np.ndarray, n_points: int, opt: PoseOptions, strict: bool = True
) -> np.ndarray:
    """Points whose reprojection errors are not explained by the noise level of the video.

    The noise sigma is estimated robustly from all residuals (for inliers the squared residual
    norm is sigma^2 * chi2(2), whose median is 2 ln 2). A point seen k times then fails when its
    sum of squared residuals exceeds the 99.9% quantile of sigma^2 * chi2(2k - 3): a test that, unlike
    a fixed pixel threshold, gets stricter for long tracks, which is what exposes a slowly moving
    object whose every single residual is small. Sigma has a floor so that a near-perfect fit does
    not turn sub-pixel tracker noise into outliers; one residual above ``outlier_px`` always fails.

    With ``strict`` False only that gross test applies. Used while the focal is still a guess: a
    wrong focal leaves the points that would correct it (near and far ones, wide baselines) with
    the largest residuals, and removing them for good would lock the wrong focal in.
    """
    sq = residual_px**2
    sigma2 = max(float(np.median(sq)) / (2 * np.log(2)), opt.noise_floor_px**2)
    n_obs = np.bincount(pt_of_obs, minlength=n_points)
    ssr = np.bincount(pt_of_obs, sq, minlength=n_points)
    dof = np.maximum(2 * n_obs - 3, 1)
    worst = np.zeros(n_points)
    np.maximum.at(worst, pt_of_obs, residual_px)
    gross = worst > opt.outlier_px
    # Imported here: scipy.stats takes ~0.5 s to import, and the driver imports this module (for the
    # backend's declarations) without ever solving a camera.
    from scipy.stats import chi2  # noqa: PLC0415

    return (gross | (ssr > sigma2 * chi2.ppf(0.999, dof))) if strict else gross


def rotation_compensated_parallax(
    K: np.ndarray, ua: np.ndarray, ub: np.ndarray, inl: np.ndarray
) -> np.ndarray:
    """Per match, the image motion a pure rotation cannot explain (pixels): the parallax.

    The rotation is fitted to the homography inliers ``inl``, so independently moving points do
    not bias it; the median over all matches then measures the parallax of the static majority.
    """
    R = relative_rotation(K, ua, ub, inl)
    p = _rays(K, ua) @ R.T
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p[:, :2] / p[:, 2:3] * K[0, 0] + K[:2, 2]
    return np.linalg.norm(p - ub, axis=1)


def _init_pair(tracks: TrackSet, kfs: np.ndarray, K: np.ndarray, opt: PoseOptions):
    """First keyframe pair (a, b) whose static majority has enough parallax for a stable start.

    Two-view geometry at low parallax is nearly degenerate (a rotation explains it), and then a
    small independently moving object can decide the essential matrix on its own. Hence the
    parallax is measured after compensating the best rotation, over all matches (the median is
    the majority's), and the essential matrix must explain at least half of the matches. The
    rotation-compensated parallax is far smaller than the triangulation angle suggests (a rotation
    absorbs most of the flow of a translation over a narrow field of view; what is left comes from
    depth differences), so its threshold is only "clearly above tracking noise".
    """
    min_parallax_px = 2.0 * opt.ransac_px
    for ia in range(len(kfs) - 1):
        a = kfs[ia]
        for b in kfs[ia + 1 :]:
            ids, ua, ub, h_inl = tracks.homography_inliers(int(a), int(b), opt.ransac_px)
            if len(ids) < 30:
                break  # tracks from a are gone; try a later first keyframe
            if np.median(rotation_compensated_parallax(K, ua, ub, h_inl)) < min_parallax_px:
                continue
            E, mask = cv2.findEssentialMat(ua, ub, K, cv2.RANSAC, 0.999, opt.ransac_px)
            if E is None or E.shape != (3, 3):
                continue
            _, R, t, mask = cv2.recoverPose(E, ua, ub, K, mask=mask.copy())
            inl = mask.ravel() > 0
            Ta = np.eye(4)
            Tb = make_se3(R, t.ravel())
            X, ok = triangulate(K, Ta, Tb, ua, ub, max_px=2.0 * opt.ransac_px, min_angle_deg=0.0)
            ok &= inl
            if ok.sum() < max(30, 0.5 * len(ids)):
                continue
            ra, rb = X[ok], X[ok] - invert_se3(Tb)[:3, 3]
            cosang = np.sum(ra * rb, 1) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1))
            if np.median(np.rad2deg(np.arccos(np.clip(cosang, -1, 1)))) < opt.init_min_angle_deg:
                continue
            return a, b, Ta, Tb, ids[ok], X[ok]
    return None


def incremental_sfm(
    tracks: TrackSet,
    K: np.ndarray,
    opt: PoseOptions,
    *,
    optimize_focal: bool,
    keyframes: np.ndarray | None = None,
    register_all: bool = True,
) -> Reconstruction | None:
    """Keyframe SfM over the whole video; None when no keyframe pair has enough parallax.

    With ``register_all`` False only the keyframes get poses (the rest stay zero, unregistered).
    """
    kfs = (
        select_keyframes(tracks, opt.keyframe_parallax_px, opt.keyframe_min_shared, opt.min_keyframes)
        if keyframes is None
        else keyframes
    )
    init = _init_pair(tracks, kfs, K, opt)
    if init is None:
        return None
    a, b, Ta, Tb, ids, X = init
    m = _Map(tracks, kfs, K, opt)
    strict = not optimize_focal  # see outlier_points: lenient until the focal is estimated
    m.pose[a], m.pose[b] = Ta, Tb
    m.X[ids] = X
    if opt.refine:
        m.bundle([a, b], fixed={a}, optimize_focal=False, rounds=2, strict=strict)

    # Registration order: forward from b, then backward from a (keyframes between a and b too).
    ia, ib = int(np.searchsorted(kfs, a)), int(np.searchsorted(kfs, b))
    order = [k for k in kfs[ia + 1 : ib]] + [k for k in kfs[ib + 1 :]] + [k for k in kfs[:ia][::-1]]
    # Bundle adjustment while growing: local windows every few keyframes and the whole map once,
    # early (at GLOBAL_BA_AT keyframes, to settle the gauge and scale the rest builds on). Later
    # global passes were measured to buy nothing an offline final BA does not (local windows keep
    # PnP well conditioned) at ~1.5x the final BA's cost. The focal stays fixed until the final
    # adjustment: it is the most weakly constrained unknown, its valley with the translations is
    # long, and crawling along it on a partial map is wasted work.
    since_local, global_done = 0, False
    lost = 0
    for k in order:
        ids_k = tracks.ids[k]
        have = m.has_point(ids_k)
        # Guess: the nearest registered keyframe (PnP falls back to it when RANSAC fails).
        near = min(m.pose, key=lambda j: abs(j - k))
        Rt, _ = _pnp(
            m.K, m.X[ids_k[have]], tracks.uv[k][have], m.pose[near], opt.ransac_px, opt.min_pnp_inliers
        )
        if Rt is None:
            lost += 1
            continue
        m.pose[k] = Rt
        m.triangulate_new(k)
        since_local += 1
        if opt.refine and since_local >= opt.local_ba_every:
            since_local = 0
            reg = sorted(m.pose)
            pos = reg.index(k)
            if not global_done and len(reg) >= GLOBAL_BA_AT:
                global_done = True
                m.bundle(
                    reg, fixed={reg[0]}, optimize_focal=False, rounds=2, max_iterations=10, strict=strict
                )
            else:
                # The newest keyframes move; a few older ones are held fixed to anchor the gauge.
                lo = max(0, pos - opt.local_ba_window - opt.local_ba_anchors + 1)
                window = reg[lo : pos + 1]
                fixed = set(reg[lo : max(lo, pos - opt.local_ba_window + 1)]) | {reg[0]}
                m.bundle(window, fixed=fixed, optimize_focal=False, max_iterations=6, strict=strict)
    reg = sorted(m.pose)
    final: BundleResult | None = None
    if opt.refine and len(reg) >= 2:
        # Clean outliers with the focal fixed (cheap; gross outliers also make the focal's valley
        # hard to descend), add points that became triangulable, then the full adjustment.
        m.bundle(reg, fixed={reg[0]}, optimize_focal=False, rounds=2, max_iterations=4, strict=strict)
        for k in reg:
            m.triangulate_new(k)
        final = m.bundle(
            reg, fixed={reg[0]}, optimize_focal=optimize_focal, rounds=opt.outlier_rounds, max_iterations=50
        )

    T = tracks.num_frames
    cam_T_world = np.zeros((T, 4, 4))
    registered = np.zeros(T, bool)
    for k in reg:
        cam_T_world[k] = m.pose[k]
        registered[k] = True
    valid_pts = m.has_point(np.arange(tracks.num_tracks))
    point_ids = np.flatnonzero(valid_pts)
    rec = Reconstruction(
        cam_T_world=cam_T_world,
        registered=registered,
        keyframes=np.array(reg),
        points=m.X[point_ids],
        point_ids=point_ids,
        focal=m.focal,
        rms_px=final.rms_px if final is not None else float("nan"),
        focal_rel_std=(final.focal_std / final.focal)
        if (final is not None and optimize_focal and final.focal_std is not None)
        else None,
        focal_rel_std_tracks=(final.focal_std_tracks / final.focal)
        if (final is not None and optimize_focal and final.focal_std_tracks is not None)
        else None,
        stats={
            "keyframes": len(kfs),
            "keyframes_registered": len(reg),
            "keyframes_lost": lost,
            "init_pair": [int(a), int(b)],
            "points": len(point_ids),
        },
    )
    if register_all:
        register_frames(rec, tracks, m.K, opt)
    return rec


def register_frames(rec: Reconstruction, tracks: TrackSet, K: np.ndarray, opt: PoseOptions) -> None:
    """Motion-only PnP for every frame that is not a registered keyframe (in place)."""
    T = tracks.num_frames
    Xmap = np.full((tracks.num_tracks, 3), np.nan)
    Xmap[rec.point_ids] = rec.points
    kf = np.flatnonzero(rec.registered)
    guess_all = interpolate_poses(kf, rec.cam_T_world[kf], np.arange(T))
    for t in range(T):
        if rec.registered[t]:
            continue
        ids = tracks.ids[t]
        have = np.isfinite(Xmap[ids, 0])
        Rt, inl = _pnp(
            K, Xmap[ids[have]], tracks.uv[t][have], guess_all[t], opt.ransac_px, opt.min_pnp_inliers
        )
        if Rt is None or inl.sum() < opt.min_pnp_inliers:
            rec.cam_T_world[t] = guess_all[t]
        else:
            rec.cam_T_world[t] = Rt
            rec.registered[t] = True


# ----------------------------------------------------------------------------------- focal search
def multiview_reprojection(
    tracks: TrackSet, frames: list[int], cam_T_world: np.ndarray, K: np.ndarray, min_views: int = 3
) -> np.ndarray:
    """Reprojection errors (px) of every track seen in ``min_views`` of ``frames``, each track
    re-triangulated linearly (DLT over all its views) with the given poses.

    Unlike the residuals of a bundle adjustment, this uses every track, inliers or not, so the
    median compares fairly between reconstructions made under different assumptions.
    """
    ti = np.concatenate([tracks.ids[k] for k in frames])
    ci = np.concatenate([np.full(len(tracks.ids[k]), n) for n, k in enumerate(frames)])
    uv = np.concatenate([tracks.uv[k] for k in frames])
    ids, inv, cnt = np.unique(ti, return_inverse=True, return_counts=True)
    keep = cnt[inv] >= min_views
    ti, ci, uv, inv = ti[keep], ci[keep], uv[keep], inv[keep]
    if len(ti) == 0:
        return np.zeros(0)
    Pm = np.stack([K @ cam_T_world[k][:3] for k in frames])[ci]  # (M,3,4)
    rows = np.concatenate([uv[:, :1] * Pm[:, 2] - Pm[:, 0], uv[:, 1:] * Pm[:, 2] - Pm[:, 1]], 0)  # (2M,4)
    # Normalise rows so that every observation weighs the same in the DLT.
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    owner = np.concatenate([inv, inv])
    AtA = np.zeros((len(ids), 4, 4))
    outer = rows[:, :, None] * rows[:, None, :]
    for i in range(4):
        for j in range(4):
            AtA[:, i, j] = np.bincount(owner, outer[:, i, j], minlength=len(ids))
    _, vecs = np.linalg.eigh(AtA)
    Xh = vecs[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        X = Xh[:, :3] / Xh[:, 3:4]
    p = np.einsum("mij,mj->mi", Pm, np.concatenate([X[inv], np.ones((len(inv), 1))], 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        err = np.linalg.norm(p[:, :2] / p[:, 2:3] - uv, axis=1)
    err[~np.isfinite(err) | (p[:, 2] <= 0)] = 1e3
    return err


def sfm_focal_search(
    tracks: TrackSet,
    kfs: np.ndarray,
    width: int,
    height: int,
    opt: PoseOptions,
    f_min: float,
    f_max: float,
    max_keyframes: int = 6,
) -> tuple[float, dict] | None:
    """Initial focal for self-calibration: the focal whose (cheap) reconstruction explains the tracks best.

    Epipolar methods (Kruppa, Mendonca-Cipolla) are unreliable for video: fundamental matrices of
    narrow, short-baseline pairs barely constrain the focal. Here each candidate focal gets a
    reconstruction of a keyframe subset (two-view init + PnP, no BA: a few ms), and is scored by the
    median multi-view reprojection error of all tracks; a log-spaced grid and one parabolic
    refinement find the minimum. It only needs to land in the basin of attraction of the final
    bundle adjustment, which estimates the focal jointly with everything else.
    """
    if len(kfs) < 3:
        return None
    sub = (
        kfs
        if len(kfs) <= max_keyframes
        else kfs[np.unique(np.linspace(0, len(kfs) - 1, max_keyframes).round().astype(int))]
    )
    # Keep consecutive subset keyframes connected: fall back to all keyframes of a central window.
    if any(len(tracks.common(int(a), int(b))[0]) < 30 for a, b in pairwise(sub)):
        mid = len(kfs) // 2
        lo = max(0, mid - max_keyframes // 2)
        sub = kfs[lo : lo + max_keyframes]
    quick = PoseOptions(**{**opt.__dict__, "refine": False})

    def score(f: float) -> float:
        K = K_from_focal(f, width, height)
        rec = incremental_sfm(tracks, K, quick, optimize_focal=False, keyframes=sub, register_all=False)
        if rec is None or rec.registered.sum() < 3:
            return np.inf
        frames = [int(k) for k in np.flatnonzero(rec.registered)]
        err = multiview_reprojection(tracks, frames, rec.cam_T_world, K)
        return float(np.median(err)) if len(err) else np.inf

    grid = np.geomspace(f_min, f_max, 8)
    costs = np.array([score(f) for f in grid])
    if not np.isfinite(costs).any():
        return None
    i = int(np.argmin(costs))
    f = float(grid[i])
    # One refinement: the vertex of the parabola through the best grid point and its neighbours
    # (in log focal). The final bundle adjustment only needs a start in its basin (it converged
    # from 15% off), so golden-section iterations here bought nothing but time.
    if 0 < i < len(grid) - 1 and np.isfinite(costs[i - 1 : i + 2]).all():
        x, c = np.log(grid[i - 1 : i + 2]), costs[i - 1 : i + 2]
        curv = c[0] - 2 * c[1] + c[2]
        if curv > 0:
            step = x[1] - x[0]
            vertex = float(np.exp(x[1] + 0.5 * step * (c[0] - c[2]) / curv))
            if score(vertex) < costs[i]:
                f = vertex
    return f, {
        "initial_focal_px": f,
        "initial_focal_grid": {
            f"{g_:.0f}": (None if not np.isfinite(c) else round(c, 4)) for g_, c in zip(grid, costs)
        },
    }


# ----------------------------------------------------------------------------------- rotation only
def _kabsch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation R minimising sum |b - R a|^2 for unit vectors (N,3)."""
    H = a.T @ b
    U, _, Vt = np.linalg.svd(H)
    D = np.eye(3)
    D[2, 2] = np.sign(np.linalg.det(Vt.T @ U.T))
    return Vt.T @ D @ U.T


def _unit_rays(K: np.ndarray, uv: np.ndarray) -> np.ndarray:
    r = _rays(K, uv)
    return r / np.linalg.norm(r, axis=1, keepdims=True)


def relative_rotation(K: np.ndarray, ua: np.ndarray, ub: np.ndarray, inl: np.ndarray) -> np.ndarray:
    """b_R_a under the pure-rotation model: Kabsch on the rays of the (homography) inliers."""
    if inl.sum() < 3:
        return np.eye(3)
    return _kabsch(_unit_rays(K, ua[inl]), _unit_rays(K, ub[inl]))


@dataclass
class KeyframePair:
    a: int
    b: int
    ua: np.ndarray  # (n,2) pixels in a
    ub: np.ndarray  # (n,2) pixels in b
    h_inliers: np.ndarray  # (n,) bool: inliers of a RANSAC homography (focal-independent)


def wide_keyframe_pairs(
    tracks: TrackSet, kfs: np.ndarray, thresh_px: float, max_pairs: int = 24, min_common: int = 30
) -> list[KeyframePair]:
    """For keyframes spread over the video, the pair reaching the farthest keyframe that still
    shares enough tracks: wide pairs carry the most rotation and parallax evidence."""
    starts = np.unique(np.linspace(0, len(kfs) - 2, min(max_pairs, max(len(kfs) - 1, 0))).round().astype(int))
    out = []
    for i in starts:
        a = int(kfs[i])
        n_a = len(tracks.ids[a])
        best = None
        for j in range(i + 1, len(kfs)):
            if len(tracks.common(a, int(kfs[j]))[0]) < max(min_common, 0.3 * n_a):
                break
            best = int(kfs[j])
        if best is None:
            continue
        _, ua, ub, inl = tracks.homography_inliers(a, best, thresh_px)
        out.append(KeyframePair(a, best, ua, ub, inl))
    return out


def rotation_residuals(K: np.ndarray, pair: KeyframePair) -> np.ndarray:
    """Every match's residual (px) under the pair's best pure rotation: its rotation-compensated parallax."""
    return rotation_compensated_parallax(K, pair.ua, pair.ub, pair.h_inliers)


def rotation_focal_search(
    pairs: list[KeyframePair], width: int, height: int, f_min: float, f_max: float
) -> tuple[float, float] | None:
    """Focal of a rotating camera: the one whose best rotations explain the matches best.

    Returns (focal, median residual px at that focal). Under pure rotation only the right focal
    makes every pair a rotation (Hartley's self-calibration of a rotating camera, here as a 1-D
    search: the homography inliers do not depend on the focal, only the Kabsch fits do).
    """
    if not pairs:
        return None

    def cost(f: float) -> float:
        K = K_from_focal(f, width, height)
        return float(np.median(np.concatenate([rotation_residuals(K, p)[p.h_inliers] for p in pairs])))

    # Coarse (20% steps), then fine (3% steps) around the best: the rotation-only bundle
    # adjustment refines the focal of a rotating camera; the degeneracy test needs only the valley.
    grid = np.geomspace(f_min, f_max, 16)
    c = np.array([cost(f) for f in grid])
    i = int(np.argmin(c))
    fine = np.geomspace(grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)], 13)
    cf = np.array([cost(f) for f in fine])
    j = int(np.argmin(cf))
    return float(fine[j]), float(cf[j])


def rotation_only_poses(
    tracks: TrackSet,
    K: np.ndarray,
    opt: PoseOptions,
    *,
    optimize_focal: bool,
    keyframes: np.ndarray | None = None,
) -> Reconstruction:
    """Poses of a camera that only rotates about its centre (translations exactly zero)."""
    T = tracks.num_frames
    kfs = (
        select_keyframes(tracks, opt.keyframe_parallax_px, opt.keyframe_min_shared, opt.min_keyframes)
        if keyframes is None
        else keyframes
    )
    # Chain keyframe rotations.
    R_kf = {int(kfs[0]): np.eye(3)}
    for i in range(1, len(kfs)):
        a, b = int(kfs[i - 1]), int(kfs[i])
        ids, ua, ub, inl = tracks.homography_inliers(a, b, opt.ransac_px)
        R_kf[b] = relative_rotation(K, ua, ub, inl) @ R_kf[a]
    # Points = world directions of tracks, from the first keyframe that sees them.
    X = np.full((tracks.num_tracks, 3), np.nan)
    for k in kfs:
        ids = tracks.ids[k]
        new = ~np.isfinite(X[ids, 0])
        X[ids[new]] = _unit_rays(K, tracks.uv[k][new]) @ R_kf[int(k)]  # R^T ray, row form
    focal, rms, frel, frel_tracks = float(K[0, 0]), float("nan"), None, None
    Kc = K.copy()
    frames = [int(k) for k in kfs]
    if opt.refine and len(frames) >= 2:
        bad = np.zeros(tracks.num_tracks, bool)
        for _ in range(2):
            ci, ti, uv = [], [], []
            for n, k in enumerate(frames):
                ids = tracks.ids[k]
                m = np.isfinite(X[ids, 0]) & ~bad[ids]
                ci.append(np.full(m.sum(), n))
                ti.append(ids[m])
                uv.append(tracks.uv[k][m])
            ci, ti, uv = np.concatenate(ci), np.concatenate(ti), np.concatenate(uv)
            # A track seen by a single keyframe constrains nothing here.
            cnt = np.bincount(ti, minlength=tracks.num_tracks)
            keep = cnt[ti] >= 2
            ci, ti, uv = ci[keep], ti[keep], uv[keep]
            if len(ti) < 10:
                break
            pts, pi = np.unique(ti, return_inverse=True)
            Rs = np.stack([R_kf[k] for k in frames])
            fixed = np.zeros(len(frames), bool)
            fixed[0] = True
            res = bundle_adjust(
                Rs,
                np.zeros((len(frames), 3)),
                X[pts],
                focal,
                Kc[:2, 2],
                ci,
                pi,
                uv,
                fixed_cams=fixed,
                optimize_focal=optimize_focal,
                rotation_only=True,
                huber_px=opt.huber_px,
            )
            for n, k in enumerate(frames):
                R_kf[k] = res.R[n]
            X[pts] = res.X / np.linalg.norm(res.X, axis=1, keepdims=True)
            focal, rms = res.focal, res.rms_px
            frel = res.focal_std / res.focal if (optimize_focal and res.focal_std is not None) else None
            frel_tracks = (
                res.focal_std_tracks / res.focal if (optimize_focal and res.focal_std_tracks is not None) else None
            )
            Kc[0, 0] = Kc[1, 1] = focal
            worst = np.zeros(len(pts))
            np.maximum.at(worst, pi, res.residual_px)
            bad[pts[worst > opt.outlier_px]] = True
    cam_T_world = np.tile(np.eye(4), (T, 1, 1))
    registered = np.zeros(T, bool)
    for k in frames:
        cam_T_world[k, :3, :3] = R_kf[k]
        registered[k] = True
    # Non-keyframes: Kabsch between their rays and the world directions of their tracks.
    kf_arr = np.array(frames)
    guess = interpolate_poses(kf_arr, cam_T_world[kf_arr], np.arange(T))
    for t in range(T):
        if registered[t]:
            continue
        ids = tracks.ids[t]
        m = np.isfinite(X[ids, 0])
        if m.sum() >= 3:
            rays = _unit_rays(Kc, tracks.uv[t][m])
            R = _kabsch(X[ids[m]], rays)
            # one reweighting pass against outliers (angular residual > ~outlier_px)
            err = np.linalg.norm(rays - X[ids[m]] @ R.T, axis=1) * focal
            inl = err < opt.outlier_px
            if inl.sum() >= 3:
                R = _kabsch(X[ids[m]][inl], rays[inl])
            cam_T_world[t, :3, :3] = R
            registered[t] = True
        else:
            cam_T_world[t] = guess[t]
    return Reconstruction(
        cam_T_world=cam_T_world,
        registered=registered,
        keyframes=kf_arr,
        points=np.zeros((0, 3)),
        point_ids=np.zeros(0, int),
        focal=focal,
        rms_px=rms,
        focal_rel_std=frel,
        focal_rel_std_tracks=frel_tracks,
        stats={"keyframes": len(kfs)},
    )
