"""Dense depth by plane-sweep multi-view stereo from the estimated camera poses.

For each frame (the reference) a neighbour before and one after it are warped onto fronto-parallel
planes of the reference camera, sampled uniformly in inverse depth (Collins 1996; Gallup et al.
2007). For a plane at inverse depth rho, reference pixel x maps to ``H(rho) x`` in a neighbour,
``H(rho) = K R K^-1 + rho K t e3^T K^-1`` with (R, t) = neighbour_T_ref, so every hypothesis is
one ``warpPerspective``.

Matching cost: every image is locally contrast-normalised once (window mean subtracted, divided by
the window std, stored as 8 bits), and a hypothesis costs the window sum of absolute differences
between the normalised reference and the warped normalised neighbour. For a correct match the two
normalised patches coincide whatever the gain and offset between the frames, like ZNCC, but a
hypothesis costs one 8-bit warp, one absolute difference and one box filter instead of ZNCC's
float warp and three box filters: what makes the sweep fit the speed budget on one core. The
volume is never stored: the best plane and the costs around it are tracked while sweeping, then
refined by a parabola (sub-plane precision).

Validity, in order: enough texture; a minimum inside the sweep (not at its ends); a true ZNCC of
the chosen depth above ``min_correlation`` (computed once per frame at the winner); agreement of
the depth with the neighbours' own depth maps (multi-view consistency: catches occlusions, moving
objects and mismatches); no tiny isolated patches (speckles). Depth is computed at ``scale`` times
the stored resolution and upsampled without blending invalid pixels into valid ones.

Neighbours are chosen per reference so that the depth range spans about ``target_disparity_px``
pixels of image motion: a much shorter baseline gives depth that is mostly noise, a much longer one
changes appearance and occlusions more than needed. Planes are then spaced ``plane_step_px`` apart
in image motion, so ``depth_planes`` is an upper bound: a short baseline cannot separate more.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from y2r.geometry import invert_se3


@dataclass
class DepthOptions:
    planes: int = 64  # at most (see plane_step_px)
    min_planes: int = 16
    scale: float = 0.5
    # Matching window, pixels at depth resolution (odd). Box filters cost the same for any size;
    # on the synthetic suite 7 -> 11 raised valid coverage by 3-8 points at equal AbsRel (textureless
    # tile interiors get matched), at the price of softer depth edges (fronto-parallel windows).
    window: int = 11
    max_frame_gap: int = 10  # neighbours are searched within this many frames
    # Neighbours are chosen so that the depth range spans about this much image motion (pixels at
    # depth resolution): more gives finer depth but more appearance change and occlusion.
    target_disparity_px: float = 48.0
    # Planes are this far apart in image motion: an 11 px window's matching cost is smooth over a
    # few pixels, so a parabola through samples 1.75 px apart loses almost nothing (on the synthetic
    # suite at 512x384: AbsRel +0.001, coverage -0.01 against 1.25 px, at 0.8x the time; 0.75 px
    # gave the same as 1.25 at 1.6x; 2.5 px cost forward motion 1-2 points of coverage).
    plane_step_px: float = 1.75
    # A neighbour whose baseline gives less than this fraction of the target is not used.
    min_baseline_fraction: float = 0.1
    min_correlation: float = 0.5
    min_texture: float = 1.5  # grey levels (0-255): local std of the reference below this is flat
    # Relative depth agreement with a neighbour's depth map for the multi-view consistency check.
    consistency: float = 0.05
    min_consistent: int = 1  # neighbours that must agree
    # Connected patches of valid depth smaller than this fraction of the image are dropped.
    max_speckle_fraction: float = 0.001


@dataclass
class DepthResult:
    depth: np.ndarray  # (T,H,W) float32, z-depth, NaN where invalid
    valid: np.ndarray  # (T,H,W) bool
    stats: dict


def scaled_K(K: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K for an image resized by (sx, sy), keeping integer coordinates at pixel centres."""
    Ks = K.astype(np.float64).copy()
    Ks[0, 0] *= sx
    Ks[0, 1] *= sx
    Ks[1, 1] *= sy
    Ks[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    Ks[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return Ks


def local_stats(img: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the image over a square window at every pixel."""
    k = (window, window)
    mu = cv2.boxFilter(img, -1, k, borderType=cv2.BORDER_REFLECT)
    var = cv2.boxFilter(img * img, -1, k, borderType=cv2.BORDER_REFLECT) - mu * mu
    return mu, np.sqrt(np.maximum(var, 0.0))


# The sweep runs on 8-bit locally normalised images: LCN_GAIN grey levels per local standard
# deviation around 128 (+-4 std fit), 255 reserved for "outside the neighbour". 8-bit warps and
# integer sums of absolute differences are about twice as fast as float32 and the quantisation
# (1/32 std) is far below the matching noise.
LCN_GAIN = 32.0
OUTSIDE = 255
# Mean absolute difference of two unrelated normalised pixels: E|N(0, 2)| * gain = 2/sqrt(pi) * gain.
UNRELATED = 2.0 / np.sqrt(np.pi) * LCN_GAIN


@dataclass
class _Frame:
    """A frame at depth resolution: the image, its local statistics and its normalised version."""

    img: np.ndarray  # float32 grey
    mu: np.ndarray
    std: np.ndarray
    lcn: np.ndarray  # uint8: (img - mu) / std, scaled by LCN_GAIN around 128


def _prepare(img: np.ndarray, window: int, min_texture: float) -> _Frame:
    mu, std = local_stats(img, window)
    lcn = (img - mu) / np.maximum(std, max(min_texture, 1e-3)) * LCN_GAIN + 128.0
    return _Frame(img, mu, std, np.clip(np.rint(lcn), 0, OUTSIDE - 1).astype(np.uint8))


def choose_neighbours(
    centres: np.ndarray, t: int, target_baseline: float, opt: DepthOptions, usable: np.ndarray
) -> list[int]:
    """One neighbour before and one after ``t``, each with the baseline closest to the target."""
    T = len(centres)
    out = []
    for direction in (-1, 1):
        best, best_err = None, np.inf
        for s in range(t + direction, t + direction * (opt.max_frame_gap + 1), direction):
            if s < 0 or s >= T:
                break
            if not usable[s]:
                continue
            b = float(np.linalg.norm(centres[s] - centres[t]))
            if b < opt.min_baseline_fraction * target_baseline:
                continue
            err = abs(np.log(b / target_baseline))
            if err < best_err:
                best, best_err = s, err
            if b > target_baseline:
                break  # baselines only grow further out (for smooth motion); stop at the first overshoot
        if best is not None:
            out.append(best)
    return out


def _plane_homographies(Ks: np.ndarray, rel: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(H0, H1) per neighbour with H(rho) = H0 + rho H1 mapping reference pixels to the neighbour."""
    Kinv = np.linalg.inv(Ks)
    return [(Ks @ T[:3, :3] @ Kinv, np.outer(Ks @ T[:3, 3], Kinv[2])) for T in rel]


def sweep(
    ref: _Frame, neigh: list[_Frame], Ks: np.ndarray, rel: list[np.ndarray], rho: np.ndarray, window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plane sweep with streaming winner-take-all: (inverse depth, best cost, peak-is-interior).

    Cost of a plane and neighbour: the window sum of absolute differences between the normalised
    reference and the warped normalised neighbour, capped at the value of two unrelated patches.
    A neighbour that cannot see the hypothesis (its warp leaves the image) thus contributes exactly
    the cap, "no evidence", with no per-plane visibility bookkeeping: the warp's border value
    ``OUTSIDE`` makes any window that touches the outside exceed the cap. Costs of the neighbours
    are summed; the sweep keeps only the best plane and the costs on either side of it.

    (Evaluating only every other plane and refining around the winner with per-pixel warps was
    tried: twice as fast, but windows whose pixels carry different hypotheses blur the cost curve;
    coverage fell by 4-12 points and AbsRel rose by half on the synthetic suite.)
    """
    h, w = ref.img.shape
    k = (window, window)
    cap = round(UNRELATED * window * window)
    Hs = _plane_homographies(Ks, rel)
    big = np.uint16(65535)
    best = np.full((h, w), big, np.uint16)
    idx = np.zeros((h, w), np.uint16)
    c_prev = np.full((h, w), big, np.uint16)  # cost of the plane before the best one
    c_next = np.full((h, w), big, np.uint16)  # ... and after it
    prev = np.full((h, w), big, np.uint16)
    cost = np.empty((h, w), np.uint16)
    plane = np.empty((h, w), np.uint16)
    for i, r in enumerate(rho):
        cost.fill(0)
        for nb, (H0, H1) in zip(neigh, Hs):
            wp = cv2.warpPerspective(
                nb.lcn,
                H0 + r * H1,
                (w, h),
                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                borderMode=cv2.BORDER_CONSTANT,
                borderValue=OUTSIDE,
            )
            sad = cv2.boxFilter(
                cv2.absdiff(ref.lcn, wp), cv2.CV_16U, k, normalize=False, borderType=cv2.BORDER_REFLECT
            )
            cv2.add(cost, cv2.min(sad, cap), dst=cost)
        # Winner-take-all bookkeeping with OpenCV masks (3x faster than numpy boolean indexing).
        better = cv2.compare(cost, best, cv2.CMP_LT)
        cv2.copyTo(prev, better, c_prev)
        plane.fill(i)
        cv2.copyTo(plane, better, idx)
        cv2.min(best, cost, dst=best)
        if i:
            cv2.copyTo(cost, cv2.compare(idx, i - 1, cv2.CMP_EQ), c_next)
        prev, cost = cost, prev  # reuse the buffers
    P = len(rho)
    # A pixel no neighbour sees on any plane costs the cap everywhere: no minimum, no depth.
    interior = (idx > 0) & (idx < P - 1) & (best < cap * len(neigh))
    b, cp, cn = best.astype(np.float32), c_prev.astype(np.float32), c_next.astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        denom = np.where(interior, cp - 2 * b + cn, 1.0)
        offset = np.where(interior & (denom > 0), 0.5 * (cp - cn) / denom, 0.0)
    offset = np.clip(offset, -0.5, 0.5)
    step = (rho[-1] - rho[0]) / (P - 1)
    return (rho[0] + (idx + offset) * step).astype(np.float32), b, interior


def zncc_at(
    ref: _Frame,
    neigh: list[_Frame],
    Ks: np.ndarray,
    rel: list[np.ndarray],
    inv_depth: np.ndarray,
    window: int,
) -> np.ndarray:
    """ZNCC of each reference window with the neighbours warped by each pixel's chosen depth.

    Mean over the neighbours that see the pixel, -1 where none does: the confidence of the depth.
    """
    h, w = ref.img.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    k = (window, window)
    acc = np.zeros((h, w), np.float32)
    cnt = np.zeros((h, w), np.float32)
    rho = inv_depth.astype(np.float32)
    for nb, (H0, H1) in zip(neigh, _plane_homographies(Ks, rel)):
        H0, H1 = H0.astype(np.float32), H1.astype(np.float32)
        p = [
            H0[r, 0] * u + H0[r, 1] * v + H0[r, 2] + rho * (H1[r, 0] * u + H1[r, 1] * v + H1[r, 2])
            for r in range(3)
        ]
        with np.errstate(divide="ignore", invalid="ignore"):
            mx, my = p[0] / p[2], p[1] / p[2]
        inside = (p[2] > 0) & (mx >= 0) & (mx <= w - 1) & (my >= 0) & (my <= h - 1)
        mx[~inside] = 0
        my[~inside] = 0
        wp = cv2.remap(nb.img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mw, sw = local_stats(wp, window)
        cov = cv2.boxFilter(ref.img * wp, -1, k, borderType=cv2.BORDER_REFLECT) - ref.mu * mw
        acc += np.where(inside, cov / (ref.std * sw + 1e-3), 0.0).astype(np.float32)
        cnt += inside
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, acc / cnt, -1.0).astype(np.float32)


def consistency_mask(
    depth: np.ndarray,
    valid: np.ndarray,
    Ks: np.ndarray,
    cam_T_world: np.ndarray,
    neighbours: list[list[int]],
    tol: float,
    need: int,
) -> np.ndarray:
    """Keep pixels whose 3D point lands, in enough neighbours, on a depth that agrees within ``tol``."""
    T, h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w].astype(np.float32)
    rays = (np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ np.linalg.inv(Ks).T).astype(np.float32)
    out = np.zeros_like(valid)
    for t in range(T):
        m = np.flatnonzero(valid[t].reshape(-1))
        if not len(m) or not neighbours[t]:
            continue
        d = depth[t].reshape(-1)[m].astype(np.float32)
        r = rays[m]
        agree = np.zeros(len(m), np.int32)
        for s in neighbours[t]:
            T_st = cam_T_world[s] @ invert_se3(cam_T_world[t])
            # Pixel in s (homogeneous): K (R d ray + t) = d (K R ray) + K t; its third row is the depth.
            q = (r @ (Ks @ T_st[:3, :3]).T.astype(np.float32)) * d[:, None] + (Ks @ T_st[:3, 3]).astype(
                np.float32
            )
            z = q[:, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                us = np.rint(q[:, 0] / z)
                vs = np.rint(q[:, 1] / z)
            inside = (z > 0) & (us >= 0) & (us <= w - 1) & (vs >= 0) & (vs <= h - 1)
            ii = np.flatnonzero(inside)
            flat = vs[ii].astype(np.int64) * w + us[ii].astype(np.int64)
            ds = depth[s].reshape(-1)[flat]
            ok = valid[s].reshape(-1)[flat] & (np.abs(z[ii] - ds) <= tol * ds)
            agree[ii[ok]] += 1
        out[t].reshape(-1)[m[agree >= need]] = True
    return out


def remove_speckles(depth: np.ndarray, valid: np.ndarray, step: float, max_size: int) -> np.ndarray:
    """Drop small connected patches of valid depth (isolated mismatches that passed the checks).

    Patches are grown over neighbours whose inverse depth differs by less than two plane steps
    (``step`` is the plane spacing in inverse depth); those under ``max_size`` pixels go.
    """
    q = np.full(depth.shape, -1, np.int16)
    # Quarter-step units, clipped to int16: fine enough for "same surface", coarse enough to fit.
    q[valid] = np.clip(np.rint(1.0 / depth[valid] / step * 4.0), 0, 32000).astype(np.int16)
    cv2.filterSpeckles(q, -1, max_size, 8)
    return valid & (q >= 0)


def upsample(depth: np.ndarray, valid: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Upsample depth without inventing values across invalid pixels or depth edges.

    Bilinear (in inverse depth) where every contributing low-resolution pixel is valid, the
    nearest low-resolution value elsewhere inside the valid region; invalid stays invalid.
    """
    inv = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0).astype(np.float32)
    wsum = cv2.resize(valid.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
    isum = cv2.resize(inv, (width, height), interpolation=cv2.INTER_LINEAR)
    near_valid = cv2.resize(valid.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
    near_depth = cv2.resize(
        np.where(valid, depth, 0).astype(np.float32), (width, height), interpolation=cv2.INTER_NEAREST
    )
    full = wsum > 0.999  # every contributing low-resolution pixel was valid
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(full, 1.0 / isum, near_depth).astype(np.float32)
    ok = near_valid & np.isfinite(d) & (d > 0)
    return np.where(ok, d, np.nan).astype(np.float32), ok


def plane_sweep_video(
    grey: np.ndarray,
    K: np.ndarray,
    cam_T_world: np.ndarray,
    depth_ranges: np.ndarray,
    opt: DepthOptions,
    usable: np.ndarray | None = None,
    progress=None,
) -> DepthResult:
    """Depth for every frame of a grey video (T,H,W) uint8 with known K and poses (cam_T_world).

    ``depth_ranges`` (T,2) are per-frame [near, far] bounds (from the sparse reconstruction);
    frames with a non-finite range, or ``usable`` False, get no depth. Memory stays bounded for
    long videos: prepared (normalised) frames are kept only while a reference may still use them.
    """
    T, H, W = grey.shape
    h, w = max(round(H * opt.scale), 8), max(round(W * opt.scale), 8)
    Ks = scaled_K(K, w / W, h / H)
    usable = np.ones(T, bool) if usable is None else usable
    centres = invert_se3(cam_T_world)[:, :3, 3]
    prepared: dict[int, _Frame] = {}

    def frame(i: int) -> _Frame:
        if i not in prepared:
            g = cv2.resize(grey[i], (w, h), interpolation=cv2.INTER_AREA) if (w, h) != (W, H) else grey[i]
            prepared[i] = _prepare(g.astype(np.float32), opt.window, opt.min_texture)
        return prepared[i]

    depth = np.full((T, h, w), np.nan, np.float32)
    valid = np.zeros((T, h, w), bool)
    neighbours: list[list[int]] = [[] for _ in range(T)]
    planes_used: list[int] = []
    steps = np.zeros(T)
    for t in range(T):
        for i in [i for i in prepared if i < t - opt.max_frame_gap]:
            del prepared[i]
        near, far = depth_ranges[t]
        if usable[t] and np.isfinite(near) and np.isfinite(far) and far > near > 0:
            span = 1.0 / near - 1.0 / far
            # A baseline b moves the image of a point by about f * b * (inverse depth) pixels
            # (lateral motion), so the depth range spans f * b * span pixels.
            target_baseline = opt.target_disparity_px / (Ks[0, 0] * span)
            nb = choose_neighbours(centres, t, target_baseline, opt, usable)
            neighbours[t] = nb
            if nb:
                b_max = max(float(np.linalg.norm(centres[s] - centres[t])) for s in nb)
                n_planes = int(
                    np.clip(
                        np.ceil(Ks[0, 0] * b_max * span / opt.plane_step_px) + 1, opt.min_planes, opt.planes
                    )
                )
                planes_used.append(n_planes)
                rho = np.linspace(1.0 / far, 1.0 / near, n_planes)
                rel = [cam_T_world[s] @ invert_se3(cam_T_world[t]) for s in nb]
                ref, neigh = frame(t), [frame(s) for s in nb]
                inv_d, _, interior = sweep(ref, neigh, Ks, rel, rho, opt.window)
                ok = interior & (ref.std >= opt.min_texture) & (inv_d > 0)
                ok &= zncc_at(ref, neigh, Ks, rel, inv_d, opt.window) >= opt.min_correlation
                depth[t] = np.where(ok, 1.0 / np.where(ok, inv_d, 1.0), np.nan)
                valid[t] = ok
                steps[t] = rho[1] - rho[0]
        if progress is not None:
            progress(t + 1, T)
    valid = consistency_mask(depth, valid, Ks, cam_T_world, neighbours, opt.consistency, opt.min_consistent)
    max_speckle = round(opt.max_speckle_fraction * h * w)
    for t in np.flatnonzero(steps > 0):
        valid[t] = remove_speckles(depth[t], valid[t], steps[t], max_speckle)
    depth[~valid] = np.nan
    if (w, h) != (W, H):
        depth_full = np.empty((T, H, W), np.float32)
        valid_full = np.empty((T, H, W), bool)
        for t in range(T):
            depth_full[t], valid_full[t] = upsample(depth[t], valid[t], W, H)
        depth, valid = depth_full, valid_full
    return DepthResult(
        depth=depth,
        valid=valid,
        stats={
            "depth_resolution": [w, h],
            "frames_with_neighbours": int(sum(bool(n) for n in neighbours)),
            "depth_planes_mean": float(np.mean(planes_used)) if planes_used else 0.0,
        },
    )
