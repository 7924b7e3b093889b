"""Drift-free refinement: align each point's query-frame patch to the current frame with an affine warp.

Frame-to-frame optical flow accumulates a little error at every step (a random walk), so long
tracks drift. Re-aligning against the *original* query-frame patch removes that drift: this is
the "template update with drift correction" strategy of Matthews, Ishikawa and Baker (PAMI 2004),
with the frame-to-frame result as the starting point and the first template as the reference.

The alignment is inverse-compositional Lucas-Kanade (Baker and Matthews, IJCV 2004) with a
6-parameter affine warp per point, vectorised over all points:

- The warp maps a template offset ``x`` (pixels around the query point) to the current image:
  ``W(x) = c + A x``. An affine warp follows the rotation, scale and foreshortening that a
  surface patch undergoes when the camera or object moves, which a pure translation cannot.
- Inverse-compositional means the Jacobian is taken on the fixed template, so the steepest-descent
  images are computed once per point; each iteration only samples the current image.
- Intensities are compared after normalising each patch to zero mean and unit variance (weighted),
  which makes the fit and the score invariant to gain and bias changes (exposure, shading).
- A Gaussian window and Tukey weights on the residual keep pixels from another surface from
  pulling the fit. Where depth is known, the caller also passes masks that remove such pixels
  outright: template pixels that were on another surface in the query frame, and pixels covered
  by something nearer in the current frame (see ``point_tracker.py``).

The score is the weighted normalised cross-correlation (NCC) of the aligned patch with the
template in a narrower central window: it says whether the *point itself* looks like it did in
the query frame, which is what visibility is about.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Tukey biweight constant in units of the robust residual scale (95% efficiency for Gaussian noise).
_TUKEY_C = 4.685
# Normalised-intensity residual scale never assumed below this (a perfect match would otherwise
# make every slightly-off pixel an outlier).
_MIN_SCALE = 0.05
# Samples per row of the maps given to cv2.remap.
_ROW = 4096


def window_offsets(radius: int) -> np.ndarray:
    """(P,2) float32 offsets (dx, dy) of a (2r+1)^2 patch, row-major."""
    r = np.arange(-radius, radius + 1, dtype=np.float32)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    return np.stack([dx.ravel(), dy.ravel()], axis=1)


def sample(image: np.ndarray, xy: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Samples of a float32 image at positions ``xy`` (...,2) -> (...), border replicated.

    Bilinear by default (OpenCV interpolates with 1/32-pixel weights, well below the accuracy that
    matters here); ``nearest`` for maps that must not be blended, such as depth.
    """
    shape = xy.shape[:-1]
    if xy.size == 0:
        return np.zeros(shape, np.float32)
    flat = xy.reshape(-1, 2).astype(np.float32)
    if not np.isfinite(flat).all():
        flat = np.where(np.isfinite(flat), flat, np.float32(-1e4))  # NaN/inf sample the border
    # cv2.remap wants 2D maps of fewer than 2^15 columns: lay the samples out in rows of _ROW.
    n = len(flat)
    rows = -(-n // _ROW)
    maps = np.full((rows * _ROW, 2), -1e4, np.float32)
    maps[:n] = flat
    mx = np.ascontiguousarray(maps[:, 0]).reshape(rows, _ROW)
    my = np.ascontiguousarray(maps[:, 1]).reshape(rows, _ROW)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    out = cv2.remap(image, mx, my, interpolation=interp, borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1)[:n].reshape(shape)


def weighted_normalise(values: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Zero-mean, unit-variance (weighted, per row) version of ``values`` (N,P); also the std."""
    sw = np.maximum(w.sum(1, keepdims=True), 1e-9)
    mu = (values * w).sum(1, keepdims=True) / sw
    centred = values - mu
    std = np.sqrt((centred * centred * w).sum(1, keepdims=True) / sw)
    return centred / np.maximum(std, 1e-6), std[:, 0]


def steepest_descent(tx: np.ndarray, ty: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N,P,6) steepest-descent images of templates with gradients ``tx``, ``ty`` (N,P) at ``offsets`` (P,2).

    For the warp W(x; p) = [(1+p1)x + p3 y + p5, p2 x + (1+p4) y + p6].
    """
    dx = offsets[None, :, 0]
    dy = offsets[None, :, 1]
    return np.stack([tx * dx, ty * dx, tx * dy, ty * dy, tx, ty], axis=-1)


def _inside(pos: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    H, W = shape
    return (pos[..., 0] >= 0) & (pos[..., 0] <= W - 1) & (pos[..., 1] >= 0) & (pos[..., 1] <= H - 1)


@dataclass
class AlignmentResult:
    centre: np.ndarray  # (M,2) aligned position of the query point
    A: np.ndarray  # (M,2,2) linear part of the warp
    ncc: np.ndarray  # (M,) central-window NCC with the template, in [-1, 1]; -1 where not computed
    converged: np.ndarray  # (M,) bool: the position settled and the warp stayed well conditioned
    support: np.ndarray  # (M,) share of the template's fit-window weight that was usable (see ``support``)
    cov: np.ndarray  # (M,2,2) covariance (px^2, image axes) of ``centre``: fit curvature and residual


class TemplateAligner:
    """Query-frame templates of N points and their inverse-compositional affine alignment.

    Args:
        image: the query frame, float32 grey (already smoothed like every frame given to ``align``).
        points: (N,2) query positions (u, v), sub-pixel allowed.
        radius: the patch is (2 radius + 1)^2 pixels.
        score_sigma: standard deviation (pixels) of the Gaussian window of the NCC score.
        affine_damping: strength of the prior that keeps the affine shape where it was (see ``align``).
        template_mask: (N,P) bool/float, template pixels to use (e.g. those on the point's own
            surface in the query frame); None uses all.
    """

    def __init__(self, image: np.ndarray, points: np.ndarray, radius: int = 7, score_sigma: float = 2.5,
                 affine_damping: float = 0.3, template_mask: np.ndarray | None = None,
                 stop_step_px: float = 0.01):
        self.radius = int(radius)
        self.stop_step_px = float(stop_step_px)
        self.affine_damping = float(affine_damping)
        self.offsets = window_offsets(self.radius)  # (P,2)
        d2 = (self.offsets ** 2).sum(1)
        # Fit window wide (uses the whole texture), score window narrow (about the point itself).
        self.fit_window = np.exp(-0.5 * d2 / (0.6 * self.radius) ** 2).astype(np.float32)
        self.score_window = np.exp(-0.5 * d2 / score_sigma ** 2).astype(np.float32)
        # Weighted mean of x^2 over the fit window: converts translation curvature into the
        # curvature of an affine parameter (a unit change moves a pixel at offset x by x).
        self.second_moment = float((self.fit_window * 0.5 * d2).sum() / self.fit_window.sum())
        t = self._extract(image, points, template_mask)
        self.template_valid, self.template, self.template_std, self.sd, self.min_eig = t

    def _extract(self, image: np.ndarray, points: np.ndarray, template_mask: np.ndarray | None):
        """Templates of ``points`` in ``image``: valid, normalised values, std, steepest descent, min eig."""
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        pos = pts[:, None, :] + self.offsets[None]  # (N,P,2)
        valid = _inside(pos, image.shape).astype(np.float32)
        if template_mask is not None:
            valid *= np.asarray(template_mask, np.float32)
        w = valid * self.fit_window
        template, std = weighted_normalise(sample(image, pos), w)
        # Gradients of the *normalised* template (same scaling as its values).
        s = 1.0 / np.maximum(std, 1e-6)[:, None]
        tx = sample(cv2.Scharr(image, cv2.CV_32F, 1, 0, scale=1.0 / 32.0), pos) * s
        ty = sample(cv2.Scharr(image, cv2.CV_32F, 0, 1, scale=1.0 / 32.0), pos) * s
        sd = steepest_descent(tx, ty, self.offsets)
        # Texture strength: the smaller eigenvalue of the translation block of the Hessian
        # (Shi-Tomasi) per unit of window weight, in raw intensity units (grey levels^2 / px^2).
        k = std ** 2
        gxx, gyy, gxy = (tx * tx * w).sum(1) * k, (ty * ty * w).sum(1) * k, (tx * ty * w).sum(1) * k
        half_tr, det = (gxx + gyy) / 2, gxx * gyy - gxy * gxy
        min_eig = (half_tr - np.sqrt(np.maximum(half_tr ** 2 - det, 0))) / np.maximum(w.sum(1), 1e-9)
        return valid, template, std, sd, min_eig

    def replace(self, index: np.ndarray, image: np.ndarray, points: np.ndarray,
                template_mask: np.ndarray | None = None) -> None:
        """Re-extract templates ``index`` from ``image`` at ``points`` (M,2) (template update)."""
        index = np.asarray(index)
        if index.size == 0:
            return
        rows = (self.template_valid, self.template, self.template_std, self.sd, self.min_eig)
        for dst, src in zip(rows, self._extract(image, points, template_mask), strict=True):
            dst[index] = src

    def __len__(self) -> int:
        return self.sd.shape[0]

    def placed(self, centre: np.ndarray, A: np.ndarray) -> np.ndarray:
        """Positions (M,P,2) of the template pixels placed at ``centre`` (M,2) with shape ``A`` (M,2,2)."""
        # float32 is exact to ~1e-4 px at image sizes below 8k, and several times faster here.
        c = np.asarray(centre, np.float32).reshape(-1, 1, 2)
        return c + np.matmul(self.offsets, np.swapaxes(np.asarray(A, np.float32), 1, 2))

    def support(self, shape: tuple[int, int], centre: np.ndarray, A: np.ndarray, index: np.ndarray,
                mask: np.ndarray | None = None) -> np.ndarray:
        """Share of each placed template's fit-window weight inside the image (and in ``mask`` if given)."""
        w = self.template_valid[index] * self.fit_window[None]
        use = _inside(self.placed(centre, A), shape) * (1.0 if mask is None else mask)
        return (w * use).sum(1) / np.maximum(w.sum(1), 1e-9)

    def align(
        self,
        image: np.ndarray,
        centre: np.ndarray,
        A: np.ndarray,
        index: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        iterations: int = 8,
        max_step_px: float = 2.0,
        start_prior_px: float = 1.0,
        templates: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> AlignmentResult:
        """Align templates ``index`` (default all) to ``image`` starting at ``centre`` (M,2), ``A`` (M,2,2).

        ``mask`` (M,P) weights template pixels for this frame (0 = covered / unusable here).
        ``templates``: (values (M,P), steepest descent (M,P,6)) to use instead of the stored ones
        of ``index``, normalised like them (e.g. motion-blurred copies, ``motion_blur.py``).
        """
        idx = np.arange(len(self)) if index is None else np.asarray(index)
        c = np.asarray(centre, np.float64).reshape(-1, 2).copy()
        A = np.asarray(A, np.float64).reshape(-1, 2, 2).copy()
        M = len(idx)
        if M == 0:
            return AlignmentResult(c, A, np.zeros(0), np.zeros(0, bool), np.zeros(0), np.zeros((0, 2, 2)))
        T, SD = (self.template[idx], self.sd[idx]) if templates is None else templates
        # (SD float32: sums of a few hundred products, then solved in float64)
        base_w = self.template_valid[idx] * self.fit_window[None]
        if mask is not None:
            base_w = base_w * mask
        active = np.ones(M, bool)
        last_shift = np.full(M, np.inf)
        c0 = c.copy()
        # Translation covariance in template axes, from the last iteration each point ran:
        # sigma^2 (H^-1)_tt (Gauss-Newton), sigma^2 the weighted residual variance. Along an edge
        # H is nearly singular and the covariance is long in that direction (aperture problem).
        cov_t = np.tile(np.eye(2) * 1e6, (M, 1, 1))
        eye = np.eye(6)
        for it in range(iterations):
            a = np.flatnonzero(active)
            if a.size == 0:
                break
            pos = self.placed(c[a], A[a])
            w = base_w[a] * _inside(pos, image.shape)
            img_n, _ = weighted_normalise(sample(image, pos), w)
            # The template re-normalised over the pixels used here (a mask or the image border
            # changes which count), and its steepest-descent images rescaled to match.
            T_n, T_std = weighted_normalise(T[a], w)
            SDa = SD[a] / np.maximum(T_std, 1e-6)[:, None, None]
            e = (img_n - T_n).astype(np.float32)
            # Robust scale per point from the residuals; Tukey biweight on top of the window.
            scale = np.maximum(1.4826 * np.median(np.abs(e), axis=1), np.float32(_MIN_SCALE))[:, None]
            u = e / (_TUKEY_C * scale)
            w = w * np.where(np.abs(u) < 1, (1 - u * u) ** 2, np.float32(0.0))
            sdw = SDa * w[..., None]
            Hs = np.matmul(sdw.transpose(0, 2, 1), SDa).astype(np.float64)
            b = np.matmul(e[:, None, :], sdw)[:, 0].astype(np.float64)
            # Noise floor of the residual variance: 5% of the patch's contrast.
            sigma2 = np.maximum((w * e * e).sum(1, dtype=np.float64) / np.maximum(w.sum(1), 1e-9), 0.05 ** 2)
            # A weak prior (std ``start_prior_px``) that the centre stays at its start: it decides
            # only directions the image does not constrain at all (a flat patch, the length of a
            # straight edge), where the start (flow or prediction) beats wherever noise would slide
            # it. In the increment's terms (c_new ~ c - A dp_t): + mu A^T A on H_tt, + mu A^T (c - c0) on b_t.
            mu = sigma2 / start_prior_px ** 2
            At = A[a]
            Hs[:, 4:, 4:] += mu[:, None, None] * np.matmul(np.swapaxes(At, 1, 2), At)
            b[:, 4:] += mu[:, None] * np.einsum("nji,nj->ni", At, c[a] - c0[a])
            # Damping (Levenberg): translation lightly; the four affine parameters strongly, in
            # proportion to the translation curvature times the window's second moment, so that a
            # well-textured patch still follows rotation and scale while an edge-like or mostly
            # hidden patch (rank-deficient affine block) keeps its previous warp instead of
            # letting noise move it. The first iterations and thin-support patches are translation only.
            ht = 0.5 * (Hs[:, 4, 4] + Hs[:, 5, 5]) + 1e-9
            support = w.sum(1) / np.maximum(base_w[a].sum(1), 1e-9)
            affine_on = (it >= 2) & (support > 0.6)
            lam_a = np.where(affine_on, self.affine_damping * ht * self.second_moment, 1e12 * ht)
            lam = np.stack([lam_a] * 4 + [1e-3 * ht] * 2, axis=1)
            Hd_inv = np.linalg.inv(Hs + lam[:, :, None] * eye[None])
            dp = np.einsum("nij,nj->ni", Hd_inv, b)
            # The translation block of the *full* inverse (not the inverse of the translation block):
            # a patch textured on one side only leaves its centre coupled to the affine shape, and
            # that coupling is real uncertainty.
            cov_t[a] = sigma2[:, None, None] * Hd_inv[:, 4:, 4:]
            # Step size as the largest displacement it causes in the patch (translation plus the
            # affine part at the patch corner), so iteration continues while the shape changes.
            step = np.linalg.norm(dp[:, 4:], axis=1) + self.radius * np.abs(dp[:, :4]).max(1)
            big = step > max_step_px
            dp[big] *= (max_step_px / step[big])[:, None]
            # Compose with the inverse increment: W <- W o W(dp)^-1.
            D = np.stack([np.stack([1 + dp[:, 0], dp[:, 2]], -1), np.stack([dp[:, 1], 1 + dp[:, 3]], -1)], 1)
            A_new = A[a] @ np.linalg.inv(D)
            c[a] = c[a] - np.einsum("nij,nj->ni", A_new, dp[:, 4:])
            A[a] = A_new
            last_shift[a] = np.minimum(np.linalg.norm(dp[:, 4:], axis=1), max_step_px)
            active[a[step < self.stop_step_px]] = False
        # Conditioning: a warp that collapsed or blew up (scale outside [1/10, 10]) is a failed fit.
        sv = np.linalg.svd(A, compute_uv=False)
        sane = (sv[:, 1] > 0.1) & (sv[:, 0] < 10.0) & np.isfinite(c).all(1)
        c_safe = np.where(sane[:, None], c, 0.0)
        ncc = np.where(sane, self.score(image, c_safe, A, idx, mask, None if templates is None else T), -1.0)
        support = np.where(sane, self.support(image.shape, c_safe, A, idx, mask), 0.0)
        # Converged means the *position* settled: a fit still moving the centre by a tenth of a pixel
        # after all iterations is oscillating. (The shape may still creep under its damping.)
        cov = A @ cov_t @ np.swapaxes(A, 1, 2)  # template axes -> image axes (position = c + A x)
        return AlignmentResult(c, A, ncc, sane & (last_shift < 0.1), support, cov)

    def score(self, image: np.ndarray, centre: np.ndarray, A: np.ndarray, index: np.ndarray,
              mask: np.ndarray | None = None, values: np.ndarray | None = None) -> np.ndarray:
        """Central-window NCC of templates ``index`` placed at ``centre`` (M,2) with shape ``A`` (M,2,2).

        ``values`` (M,P): template values to use instead of the stored ones (as in ``align``).
        -1 where fewer than a quarter of the window's weight is usable (too little to judge).
        """
        idx = np.asarray(index)
        pos = self.placed(centre, A)
        full = self.template_valid[idx] * self.score_window[None]
        w = full * _inside(pos, image.shape) * (1.0 if mask is None else mask)
        img_n, _ = weighted_normalise(sample(image, pos), w)
        Tn, _ = weighted_normalise(self.template[idx] if values is None else values, w)
        sw = w.sum(1)
        ncc = (img_n * Tn * w).sum(1) / np.maximum(sw, 1e-9)
        return np.where(sw >= 0.25 * full.sum(1), ncc, -1.0)
