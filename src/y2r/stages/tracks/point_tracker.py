"""The built-in point tracker: 2D tracks with visibility, re-acquisition after occlusion, and 3D lifting.

Per frame and point, both forward and backward in time from the query frame:

1. **Predict.** A *static* point (see "static anchors" below) is predicted by projecting its world
   anchor with this frame's K and pose, and its template's affine shape by projecting its lifted
   query patch; any other point by its recent 2D velocity (decaying while unseen) and last shape.
2. **Flow.** Points visible in the previous frame are tracked frame to frame with pyramidal
   Lucas-Kanade started at the prediction, with a forward-backward check (``optical_flow.py``).
   A failure is retried once from zero motion (a bad prediction must not cost the point).
3. **Refine against the query template** (``template_alignment.py``): affine inverse-compositional
   alignment of the *query-frame* patch, started at the flow result. The reference never changes,
   so error does not accumulate (drift control). Under motion blur the template is first smeared
   along the point's motion into this frame, as the frame smears it (``motion_blur.py``; the
   clip's exposure is estimated on its first fast frames). Template pixels that were on another surface in
   the query frame, or are covered by something nearer now (depth), are left out. Where the query
   template no longer matches but the flow is consistent, a *recent* template (re-captured every
   few frames while the point is confidently seen) is tried, guarded by a looser correlation with
   the query template: gradual appearance change (a face turning away, a deforming hand) is
   followed, a jump elsewhere is not.
4. **Search** (``reacquisition.py``) around the prediction for every point still without a
   measurement (occluded, out of view, or its flow failed), and for a static point also around
   where its 2D motion leads (its object may have started to move); then refine, with a stricter
   NCC than for a point followed by flow.
5. **Judge** (``occlusion.py``): a measurement must be inside the image, not behind a nearer
   surface in the depth map, and -- for a static point -- agree with its anchor's projection
   (Mahalanobis gate on their combined covariance: the alignment's for the measurement; the
   camera's reprojection error plus the anchor's own covariance projected into this frame for
   the projection); agreeing, the two are fused (a Kalman update: along an edge the measurement
   is uncertain and the projection decides). A static point's
   projection is itself a hypothesis that can make the point visible (partial occlusion of its
   patch, where the appearance test alone fails) when the depth map shows a surface at the
   anchor's depth there and the template agrees loosely, or -- where the depth map cannot show
   it -- when the template alone agrees as strictly as for a re-acquisition. A measurement
   contradicting a static point is believed only when that hypothesis is refuted, and, if it was
   found by search (no flow evidence), only near the projection (``max_contradiction_px``);
   otherwise it is a tracker error: an occluder's edge dragging the patch, a window stuck at the
   image border, a similar spot elsewhere in the search window.
6. **Update.** A visible point takes the chosen position, shape and velocity; its 3D position is
   lifted from this frame's depth. A point not visible keeps its *predicted* position as its uv
   (the best estimate, as TAPIP3D and CoTracker report occluded points too); its world position
   is its anchor when it is static, else unknown (NaN).

**Static anchors.** Each point carries a world anchor, first its query-frame 3D point. Observations
that agree with the anchor's projection (and do not contradict its depth) count up; after
``static_agreement_frames`` of them the point is static. An observation that disagrees replaces the
anchor by the current 3D position and resets the count (the point is on something that moves; if
it comes to rest it becomes static again). Every clean agreeing measurement also adds its ray to
the anchor (``anchors.py``): the anchor is the least-squares point of its depth-map sample and
those rays, so as the baseline grows it is triangulated from the point's own track rather than
resting on one (fronto-parallel, plane-sweep) depth sample. The last trusted anchor is kept as a fallback and tried
when the point is lost (it was dragged off by an occluder, not moved). So static/moving is decided
per point from evidence; bad poses or missing depth simply leave points moving, tracked in 2D.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from y2r.stages.tracks.anchors import prior_information, projection_covariance, ray_information, solve
from y2r.stages.tracks.camera_geometry import CameraModel
from y2r.stages.tracks.motion_blur import BlurredTemplates, ExposureEstimate
from y2r.stages.tracks.motion_model import NeighbourMotion
from y2r.stages.tracks.occlusion import (
    depth_consistent,
    depth_contradicts,
    depth_noise,
    depth_occluded,
    inside_image,
)
from y2r.stages.tracks.optical_flow import FlowFrame, track_forward_backward
from y2r.stages.tracks.reacquisition import search, warped_patches
from y2r.stages.tracks.template_alignment import TemplateAligner, window_offsets

# 99% quantile of the chi-square distribution with 2 degrees of freedom (a 2D Mahalanobis gate).
_CHI2_2DOF_99 = 9.21
# Huber threshold (in standard deviations) of a measurement's distance to its anchor's projection.
_HUBER_K = 1.5
# The exposure is voted on by frames with this many flow results moving at least this far (px).
_PROBE_MIN_POINTS = 16
_PROBE_MIN_MOTION_PX = 5.0


@dataclass(frozen=True)
class TrackerSettings:
    """Tuning of the tracker (the backend fills the first group from ``tracks.builtin``)."""

    window: int = 21  # LK window (pixels)
    levels: int = 3  # LK pyramid levels above the base
    fb_threshold_px: float = 1.0  # forward-backward error above which a flow step is rejected
    occlusion_depth_tol: float = 0.05  # relative depth margin of the occlusion and consistency tests
    occlusion_noise_k: float = 3.0  # the depth tests' margin grows by this many times the frame's depth noise
    template_radius: int = 7  # template patch is (2r+1)^2
    ncc_visible: float = 0.7  # template NCC for a point followed by flow
    ncc_reacquire: float = 0.8  # stricter NCC for a point found by search (no flow evidence)

    ncc_geometric: float = 0.5  # NCC enough for a static point whose projection the depth map confirms
    ncc_drift_guard: float = 0.4  # query-template NCC a recent-template match must keep
    score_sigma: float = 3.5  # Gaussian window (pixels) of the NCC that judges appearance
    align_iterations: int = 5  # Gauss-Newton iterations of the template alignment (most stop earlier)
    max_correction_px: float = 3.0  # largest template correction of a flow / search result
    template_update_frames: int = 3  # the recent template is re-captured at most this often
    min_in_image: float = 0.75  # share of the template inside the image needed to accept a measurement
    min_support: float = 0.4  # ... and share both inside and not covered by a nearer surface
    surface_depth_tol: float = 0.15  # relative depth step beyond which a template pixel is another surface
    static_tolerance_px: float = 3.0  # largest distance at which a measurement can agree with its anchor
    static_agreement_frames: int = 3  # agreeing observations after which a re-anchored point is static
    anchor_depth_sigma: float = 0.02  # relative depth uncertainty of an anchor lifted from the depth map
    ray_sigma_px: float = 0.3  # smallest pixel uncertainty of a measurement added to its anchor
    ray_min_support: float = 0.95  # share of its template a measurement needs to be added
    search_radius_px: float = 8.0  # re-acquisition search radius for a moving point just lost
    search_growth_px: float = 4.0  # ... growing by this much per frame unseen
    max_search_radius_px: float = 48.0
    static_search_radius_px: float = 4.0  # search radius around a static point's projection (+1 px/frame)
    max_contradiction_px: float = 8.0  # farthest a searched match may contradict a static point's projection
    contradiction_sigmas: float = 3.0  # ... or this many times the projection's uncertainty, if more
    velocity_decay: float = 0.8  # per unseen frame, for the constant-velocity prediction
    motion_neighbours: int = 8  # query neighbours whose motion carries a point that is not seen
    smooth_sigma: float = 1.0  # Gaussian smoothing (pixels) of the images the templates see


@dataclass
class Tracks:
    uv: np.ndarray  # (T,N,2) float64; measured where visible, predicted elsewhere; NaN where no estimate
    visible: np.ndarray  # (T,N) bool
    xyz_world: np.ndarray  # (T,N,3) float64; NaN where unknown
    static: np.ndarray  # (T,N) bool, the point's static/moving state at that frame
    stats: dict = field(default_factory=dict)


@dataclass
class _State:
    """Per-point state carried from one frame to the next within one pass."""

    pos: np.ndarray  # (N,2) position estimate at the previous frame
    visible: np.ndarray  # (N,) bool
    A: np.ndarray  # (N,2,2) affine shape of the query template in the image
    vel: np.ndarray  # (N,2) 2D velocity (pixels / frame)
    anchor: np.ndarray  # (N,3) world anchor (NaN: none)
    anchor_info: np.ndarray  # (N,3,3) its information matrix (anchors.py) ...
    anchor_vec: np.ndarray  # (N,3) ... and information vector
    query_anchored: np.ndarray  # (N,) bool, the anchor is (refined from) the query-frame one
    static: np.ndarray  # (N,) bool
    agree: np.ndarray  # (N,) int, consecutive visible frames that agreed with the anchor
    fallback: np.ndarray  # (N,3) the last trusted anchor, kept after re-anchoring (NaN: none)
    fallback_info: np.ndarray  # (N,3,3)
    fallback_vec: np.ndarray  # (N,3)
    fallback_query: np.ndarray  # (N,) bool
    z_last: np.ndarray  # (N,) last observed camera depth (NaN: none)
    A_capture: np.ndarray  # (N,2,2) query-template shape when the recent template was captured
    since_capture: np.ndarray  # (N,) int, frames since the recent template was captured
    unseen: np.ndarray  # (N,) int, frames since last visible

    def copy(self) -> _State:
        return _State(*(np.array(getattr(self, f.name)) for f in fields(self)))


@dataclass
class _Measurements:
    """Image measurements of one frame (NaN position where none was accepted)."""

    pos: np.ndarray  # (N,2)
    A: np.ndarray  # (N,2,2) query-template shape
    ncc: np.ndarray  # (N,) appearance score of the template that matched
    cov: np.ndarray  # (N,2,2) position covariance
    support: np.ndarray  # (N,) share of the template usable (inside the image, not covered)

    @classmethod
    def empty(cls, A: np.ndarray) -> _Measurements:
        N = len(A)
        return cls(np.full((N, 2), np.nan), A.copy(), np.full(N, -1.0), np.tile(np.eye(2), (N, 1, 1)),
                   np.zeros(N))

    def accept(self, idx: np.ndarray, pos: np.ndarray, A: np.ndarray, ncc: np.ndarray,
               cov: np.ndarray, support: np.ndarray) -> None:
        self.pos[idx], self.A[idx], self.ncc[idx], self.cov[idx] = pos, A, ncc, cov
        self.support[idx] = support

    @property
    def have(self) -> np.ndarray:
        return np.isfinite(self.pos).all(1)


class PointTracker:
    """Tracks query points of one frame through a clip (see the module docstring)."""

    def __init__(self, settings: TrackerSettings | None = None):
        self.s = settings or TrackerSettings()

    def track(
        self,
        frames: Sequence[np.ndarray] | np.ndarray,
        query_uv: np.ndarray,
        query_frame: int,
        camera: CameraModel | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> Tracks:
        """Track ``query_uv`` (N,2), given on frame ``query_frame``, through ``frames`` (T,H,W,3) uint8.

        ``camera`` None tracks in 2D only (xyz all NaN).
        """
        s = self.s
        T = len(frames)
        H, W = frames[0].shape[:2]
        q = np.asarray(query_uv, np.float64).reshape(-1, 2)
        N = len(q)
        cam = camera if camera is not None else CameraModel.absent(T, H, W)
        self._cam = cam
        self._counts = dict.fromkeys(
            ("flow_ok", "flow_tried", "reacquired", "depth_occluded", "recent_template"), 0)
        out = Tracks(uv=np.full((T, N, 2), np.nan), visible=np.zeros((T, N), bool),
                     xyz_world=np.full((T, N, 3), np.nan), static=np.zeros((T, N), bool))

        qf = FlowFrame.from_rgb(frames[query_frame], s.smooth_sigma)
        z0 = cam.observed_depth(query_frame, q)
        anchor = cam.lift(query_frame, q, cam.anchor_depth(z0))
        offsets = window_offsets(s.template_radius)
        # Depth of each template pixel in the query frame; those on another surface than the point
        # (a depth jump beyond surface_depth_tol) are left out of its template.
        self._template_depth = cam.depth_at(query_frame, q[:, None, :] + offsets[None])  # (N,P), inf: unknown
        self._template_mask = ~depth_contradicts(z0[:, None], np.where(np.isfinite(self._template_depth),
                                                                         self._template_depth, np.nan),
                                                 s.surface_depth_tol)
        self._z0 = z0
        self._query_anchor = anchor
        self._query_smooth = qf.smooth
        self._q = q
        self._aligner = self._new_aligner()
        self._blurred = BlurredTemplates(self._aligner, qf.smooth, q)
        # (one estimate for both passes: the exposure is the camera's, not the direction's)
        self._exposure = ExposureEstimate()
        self._neighbours = NeighbourMotion(q, anchor, k=s.motion_neighbours)
        # A coarse grid of the template's same-surface pixels lifted to 3D: projected into a later
        # frame, it gives a static point's affine shape there (CameraModel.local_affine).
        step = max(s.template_radius // 2, 1)
        self._shape_offsets = offsets[(np.abs(offsets) % step == 0).all(1)]
        px = q[:, None, :] + self._shape_offsets[None]
        zs = cam.depth_at(query_frame, px)
        same = depth_consistent(z0[:, None], np.where(np.isfinite(zs), zs, np.nan), s.surface_depth_tol)
        zs = np.where(same, zs, np.nan)
        self._shape_world = cam.lift(query_frame, px.reshape(-1, 2), zs.reshape(-1)).reshape(
            N, len(self._shape_offsets), 3)

        static0 = np.isfinite(anchor).all(1) & cam.poses_usable
        info, vec = self._prior(query_frame, q, anchor)
        init = _State(
            pos=q.copy(), visible=inside_image(q, (H, W)), A=np.tile(np.eye(2), (N, 1, 1)),
            vel=np.zeros((N, 2)),
            anchor=anchor, anchor_info=info, anchor_vec=vec, query_anchored=np.ones(N, bool), static=static0,
            # The query anchor starts trusted: the first observation that contradicts it re-anchors.
            agree=np.where(static0, s.static_agreement_frames, 0), fallback=np.full((N, 3), np.nan),
            fallback_info=np.zeros((N, 3, 3)), fallback_vec=np.zeros((N, 3)), fallback_query=np.zeros(N, bool),
            z_last=z0,
            A_capture=np.tile(np.eye(2), (N, 1, 1)), since_capture=np.zeros(N, int), unseen=np.zeros(N, int),
        )
        out.uv[query_frame] = q
        out.visible[query_frame] = init.visible
        out.xyz_world[query_frame] = cam.lift(query_frame, q, z0)
        out.static[query_frame] = init.static

        done = 1
        for order in (range(query_frame, T), range(query_frame, -1, -1)):
            state, prev = init.copy(), qf
            self._recent = self._new_aligner()  # each pass starts from the query templates
            for t in order[1:]:
                cur = FlowFrame.from_rgb(frames[t], s.smooth_sigma)
                state = self._step(prev, cur, t, state, out)
                prev = cur
                done += 1
                if progress is not None:
                    progress(done, T)
        c = self._counts
        out.stats = {
            "flow_success": c["flow_ok"] / max(c["flow_tried"], 1),
            "reacquired": int(c["reacquired"]),
            "depth_occluded": int(c["depth_occluded"]),
            "recent_template_matches": int(c["recent_template"]),
            "visible_fraction": float(out.visible.mean()) if out.visible.size else 0.0,
            "static_fraction": float(out.static.mean()) if out.static.size else 0.0,
            "weak_texture_queries": int((self._aligner.min_eig < 1.0).sum()),
            "exposure_fraction": self._exposure.fraction,
        }
        return out

    def _prior(self, t: int, uv: np.ndarray, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Information of anchors ``X`` lifted from frame t's depth at ``uv`` (anchors.py)."""
        cam = self._cam
        return prior_information(cam.K[t], cam.world_T_cam[t], uv, X, self.s.anchor_depth_sigma,
                                 cam.projection_sigma_px)

    def _new_aligner(self) -> TemplateAligner:
        return TemplateAligner(self._query_smooth, self._q, radius=self.s.template_radius,
                               score_sigma=self.s.score_sigma, template_mask=self._template_mask)

    # ------------------------------------------------------------------------------ one frame
    def _step(self, prev: FlowFrame, cur: FlowFrame, t: int, st: _State, out: Tracks) -> _State:
        s, cam = self.s, self._cam
        shape = cur.shape

        # 1. Predict position, depth and template shape. A point seen in the previous frame moves
        #    on with its own velocity; one not seen, with its neighbours (motion_model.py).
        proj, z_proj = cam.project(t, st.anchor)
        static = st.static & np.isfinite(proj).all(1)
        motion = st.pos + st.vel
        lost = np.flatnonzero(~st.visible)
        if lost.size:
            carried = self._neighbours.predict(lost, motion, st.visible)
            ok = np.isfinite(carried).all(1)
            motion[lost[ok]] = carried[ok]
        pred = np.where(static[:, None], proj, motion)
        z_hint = np.where(static, z_proj, st.z_last)
        A_prior = st.A.copy()
        # (the lifted query patch belongs to the query anchor: only points still there use it)
        si = np.flatnonzero(static & st.query_anchored)
        A_geo = cam.local_affine(t, self._shape_world[si], self._shape_offsets,
                                 cam.project(t, self._query_anchor[si])[0])
        has = np.isfinite(A_geo).all((1, 2))
        A_prior[si[has]] = A_geo[has]

        # 2-3. Flow, refined on the query template, else on the recent one.
        m = _Measurements.empty(A_prior)
        idx = np.flatnonzero(st.visible)
        # Image motion into this frame: measured by the flow where it succeeds, else predicted.
        step = np.nan_to_num(pred - st.pos)
        if idx.size:
            fl = track_forward_backward(prev, cur, st.pos[idx], pred[idx], window=s.window, levels=s.levels,
                                        fb_threshold_px=s.fb_threshold_px)
            retry = ~fl.ok & np.any(pred[idx] != st.pos[idx], axis=1)
            if retry.any():
                r = idx[retry]
                fl2 = track_forward_backward(prev, cur, st.pos[r], st.pos[r], window=s.window,
                                             levels=s.levels, fb_threshold_px=s.fb_threshold_px)
                fl.points[retry], fl.ok[retry] = fl2.points, fl2.ok
            self._counts["flow_tried"] += idx.size
            self._counts["flow_ok"] += int(fl.ok.sum())
            step[idx[fl.ok]] = fl.points[fl.ok] - st.pos[idx[fl.ok]]
            if not self._exposure.settled:
                self._probe_exposure(cur, t, idx[fl.ok], fl.points[fl.ok], step, A_prior, z_hint)
        # Each point's blur streak in this frame: its motion into it over the exposure (motion_blur.py).
        blur = self._exposure.fraction * step
        if idx.size:
            self._refine(cur, t, idx[fl.ok], fl.points[fl.ok], A_prior, z_hint, blur, s.ncc_visible, m)
            lost = fl.ok & ~m.have[idx]
            self._refine_recent(cur, t, idx[lost], fl.points[lost], A_prior, st.A_capture, z_hint, blur, m)

        # 4. Search near the prediction for every point still without a measurement. A static point
        #    is also searched for where its 2D motion would have taken it: the object it is on may
        #    just have started to move.
        moving_radius = np.minimum(s.search_radius_px + s.search_growth_px * st.unseen,
                                   s.max_search_radius_px)
        need = np.flatnonzero(~m.have & (inside_image(pred, shape) | inside_image(motion, shape)))
        if need.size:
            patches = warped_patches(self._query_smooth, self._q[need], A_prior[need], s.template_radius,
                                     blur[need])
            static_radius = np.minimum(s.static_search_radius_px + st.unseen[need], s.max_search_radius_px)
            radius = np.where(static[need], static_radius, moving_radius[need])
            found, score = search(cur.smooth, patches, pred[need], radius)
            alt = static[need] & (np.linalg.norm(motion[need] - pred[need], axis=1) > 1.0)
            if alt.any():
                j = need[alt]
                found_alt, score_alt = search(cur.smooth, patches[alt], motion[j], moving_radius[j])
                better = score_alt > score[alt]
                found[np.flatnonzero(alt)[better]] = found_alt[better]
            self._refine(cur, t, need, found, A_prior, z_hint, blur, s.ncc_reacquire, m)
        searched = np.zeros(len(st.pos), bool)
        searched[need] = m.have[need]

        # 5a. The measurement against the anchor: gate, fusion, occlusion by depth. The projection's
        #    covariance: the camera's reprojection error plus the anchor's own uncertainty seen from
        #    here (anchors.py: depth prior and rays so far).
        have = m.have
        P = projection_covariance(cam.K[t], cam.world_T_cam[t], st.anchor, st.anchor_info)
        P = np.where(np.isfinite(P), P, 1e6 * np.eye(2)) + cam.projection_sigma_px ** 2 * np.eye(2)
        diff = np.nan_to_num(m.pos - proj, nan=1e6)
        S_inv = np.linalg.inv(m.cov + P)
        d2 = np.einsum("ni,nij,nj->n", diff, S_inv, diff)
        consistent = (have & np.isfinite(proj).all(1) & (d2 <= _CHI2_2DOF_99)
                      & (np.linalg.norm(diff, axis=1) <= s.static_tolerance_px))
        near = consistent & static
        fused = proj + np.einsum("nij,njk,nk->ni", P, S_inv, diff)
        z_meas = cam.observed_depth(t, np.where(have[:, None], m.pos, -1.0))
        # From here on, depth tests allow for this frame's depth noise (occlusion.py), measured on
        # the static points that agree with their anchors: a depth disagreement is evidence (of an
        # occluder, of a point not where its anchor is) only beyond what the depth map gets wrong.
        tol = s.occlusion_depth_tol + s.occlusion_noise_k * depth_noise(z_meas[near], z_proj[near])
        occluded = have & depth_occluded(np.where(near, z_proj, st.z_last), z_meas, tol)
        self._counts["depth_occluded"] += int(occluded.sum())
        meas_ok = have & ~occluded & inside_image(m.pos, shape)

        # 5b. The static hypothesis at the projection; a contradicting measurement needs it refuted.
        #    Where the depth map does not show the surface there (no depth: a rotating camera, the
        #    border of the depth map; or its noise at a depth edge), the template alone can confirm
        #    it, as strictly as a re-acquisition: otherwise the search's best match elsewhere in the
        #    window is believed. On the synthetic suite half of the searched matches that contradicted
        #    a static point's projection were wrong (87 of 172, up to 58 px off, re-anchoring the
        #    point there), while the projection itself was within 3 px in 121 of them.
        geo_ncc, surface_there = self._hypothesis(t, cur, static, proj, z_proj, A_prior, blur, tol)
        geo_ok = static & surface_there & (geo_ncc >= s.ncc_geometric)
        untested = static & ~surface_there & inside_image(proj, shape)
        looks = self._appearance(cur, untested, proj, A_prior, blur)
        seen_there = looks >= s.ncc_reacquire
        geo_ok |= seen_there
        geo_ncc = np.where(seen_there, looks, geo_ncc)
        z_at_proj = cam.observed_depth(t, proj)
        # (untestable -- no depth at the projection -- counts as refuted: then the image decides)
        refuted = static & inside_image(proj, shape) & ~geo_ok & (
            surface_there | ~np.isfinite(z_at_proj) | depth_contradicts(z_proj, z_at_proj, tol))
        meas_ok &= ~(static & ~near & ~refuted)
        # A match found by search (no flow evidence) far from a static point's projection is not
        # believed even then: on the synthetic suite 15 of the 19 such matches beyond 8 px were
        # wrong, and believing one re-anchors the point on the wrong spot. The point stays hidden
        # at its projection; flow still re-anchors a point whose object starts to move. (The reach
        # grows with the projection's uncertainty: a poor camera does not lock points out.)
        proj_sigma = np.sqrt(0.5 * np.einsum("nii->n", P))
        reach = np.maximum(s.max_contradiction_px, s.contradiction_sigmas * proj_sigma)
        meas_ok &= ~(searched & static & (np.linalg.norm(diff, axis=1) > reach))
        # 5c. A lost point that had a trusted anchor before: is it back there?
        fb_proj, fb_z = cam.project(t, st.fallback)
        revert_try = ~static & ~meas_ok & np.isfinite(fb_proj).all(1)
        fb_ncc, fb_there = self._hypothesis(t, cur, revert_try, fb_proj, fb_z, A_prior, blur, tol)
        reverted = revert_try & fb_there & (fb_ncc >= s.ncc_reacquire)
        geo_ok |= reverted
        geo_proj = np.where(reverted[:, None], fb_proj, proj)
        geo_ncc = np.where(reverted, fb_ncc, geo_ncc)
        # 5d. Choose.
        use_geo = geo_ok & (~meas_ok | (~near & (geo_ncc >= m.ncc)))
        vis = meas_ok | geo_ok
        pos = np.where(use_geo[:, None], geo_proj, np.where((near & meas_ok)[:, None], fused, m.pos))
        self._counts["reacquired"] += int((vis & ~st.visible).sum())

        # 6. Update.
        new = st.copy()
        new.pos = np.where(vis[:, None], pos, pred)
        new.visible = vis
        new.A = np.where((vis & ~use_geo)[:, None, None], m.A, A_prior)
        decay = np.where(static, 1.0, s.velocity_decay)[:, None]
        new.vel = np.where((vis & st.visible)[:, None], new.pos - st.pos,
                           np.where(vis[:, None], 0.0, st.vel * decay))
        new.unseen = np.where(vis, 0, st.unseen + 1)
        pos_safe = np.where(vis[:, None], pos, -1.0)
        z_obs = cam.observed_depth(t, pos_safe)
        xyz_obs = cam.lift(t, pos_safe, z_obs)
        new.z_last = np.where(vis & np.isfinite(z_obs), z_obs, st.z_last)
        # Template update (re-capture the recent template of confidently measured points, every few
        # frames: a slower update accumulates less drift on the frames where it is all there is).
        capture = (vis & ~use_geo & (m.ncc >= s.ncc_reacquire)
                   & (st.since_capture + 1 >= s.template_update_frames))
        ci = np.flatnonzero(capture)
        if ci.size:
            around = cam.depth_at(t, pos[ci][:, None, :] + self._aligner.offsets[None])
            mask = ~depth_contradicts(z_obs[ci][:, None], np.where(np.isfinite(around), around, np.nan),
                                      s.surface_depth_tol)
            self._recent.replace(ci, cur.smooth, pos[ci], mask)
            new.A_capture[ci] = new.A[ci]
        new.since_capture = np.where(capture, 0, st.since_capture + 1)
        # Static anchors (module docstring).
        info = np.where(reverted[:, None, None], st.fallback_info, st.anchor_info)
        vec = np.where(reverted[:, None], st.fallback_vec, st.anchor_vec)
        anchor = np.where(reverted[:, None], st.fallback, st.anchor)
        query_anchored = np.where(reverted, st.fallback_query, st.query_anchored)
        agrees = vis & (use_geo | (meas_ok & consistent)) & ~depth_contradicts(
            np.where(reverted, fb_z, z_proj), z_obs, tol)
        reanchor = vis & ~agrees
        new.agree = np.where(reverted, s.static_agreement_frames,
                             np.where(vis, np.where(agrees, st.agree + 1, 0), st.agree))
        keep = reanchor & st.static
        new.fallback = np.where(keep[:, None], st.anchor, st.fallback)
        new.fallback_info = np.where(keep[:, None, None], st.anchor_info, st.fallback_info)
        new.fallback_vec = np.where(keep[:, None], st.anchor_vec, st.fallback_vec)
        new.fallback_query = np.where(keep, st.query_anchored, st.fallback_query)
        # An image measurement that agrees with the anchor adds its ray to it (anchors.py); the
        # measurement itself, not the fused position (which already leans on the anchor).
        # Only clean measurements: a whole template that matches well (an occluder's edge creeping
        # over the patch biases the fit before it fails it), weighed down (Huber) when far from
        # the anchor's projection for their noise.
        seen = (agrees & meas_ok & consistent & ~reverted & ~use_geo & (m.ncc >= s.ncc_reacquire)
                & (m.support >= s.ray_min_support))
        ri = np.flatnonzero(seen & np.isfinite(anchor).all(1))
        if ri.size:
            dist = np.linalg.norm(anchor[ri] - cam.world_T_cam[t, :3, 3], axis=1)
            sig = np.sqrt(np.maximum(0.5 * np.einsum("nii->n", m.cov[ri]), s.ray_sigma_px ** 2))
            r = np.linalg.norm(m.pos[ri] - proj[ri], axis=1)
            sig = sig * np.sqrt(np.maximum(1.0, r / (_HUBER_K * sig)))
            r_info, r_vec = ray_information(cam.K[t], cam.world_T_cam[t], m.pos[ri], dist, sig)
            info[ri] += r_info
            vec[ri] += r_vec
            refined = solve(info[ri], vec[ri])
            ok = np.isfinite(refined).all(1)
            anchor[ri[ok]] = refined[ok]
        relifted = cam.lift(t, pos_safe, cam.anchor_depth(z_obs))
        re = np.flatnonzero(reanchor)
        if re.size:
            info[re], vec[re] = self._prior(t, pos_safe[re], relifted[re])
        new.anchor = np.where(reanchor[:, None], relifted, anchor)
        new.anchor_info, new.anchor_vec = info, vec
        new.query_anchored = query_anchored & ~reanchor
        new.static = new.agree >= s.static_agreement_frames

        out.uv[t] = new.pos
        out.visible[t] = vis
        out.static[t] = new.static
        # (a rotating camera's anchors sit at a nominal depth: known direction, unknown position)
        hidden_known = new.static & (cam.rotation_only_depth is None)
        hidden_xyz = np.where(hidden_known[:, None], new.anchor, np.nan)
        out.xyz_world[t] = np.where(vis[:, None], xyz_obs, hidden_xyz)
        return new

    # --------------------------------------------------------------------------- measurements
    def _uncovered(self, t: int, centre: np.ndarray, A: np.ndarray, idx: np.ndarray,
                   z_expected: np.ndarray) -> np.ndarray:
        """(M,P) 1 where a placed query-template pixel is not covered by a nearer surface in frame t.

        A pixel is expected at its query-frame depth scaled by the point's depth change
        (``z_expected / z0``); a current depth nearer than that by more than twice the occlusion
        tolerance is an occluder. Unknown depths never mask.
        """
        now = self._cam.depth_at(t, self._aligner.placed(centre, A))
        ref = np.where(np.isfinite(self._template_depth[idx]),
                       self._template_depth[idx] * (z_expected / self._z0[idx])[:, None], z_expected[:, None])
        covered = depth_occluded(ref, np.where(np.isfinite(now), now, np.nan), 2 * self.s.occlusion_depth_tol)
        return (~covered).astype(np.float32)

    def _refine(self, cur: FlowFrame, t: int, idx: np.ndarray, start: np.ndarray, A: np.ndarray,
                z_hint: np.ndarray, blur: np.ndarray, ncc_threshold: float, m: _Measurements) -> None:
        """Align query templates ``idx`` (blurred by ``blur``) from ``start``; accept into ``m`` those that pass.

        Accepted: the fit converged, stayed within ``max_correction_px`` of its start, its NCC
        reached ``ncc_threshold``, and enough of the template lay inside the image and uncovered to
        judge that (a window mostly over the border or behind an occluder matches almost anything).
        """
        if idx.size == 0:
            return
        s = self.s
        mask = self._uncovered(t, start, A[idx], idx, z_hint[idx])
        res = self._aligner.align(cur.smooth, start, A[idx], index=idx, mask=mask,
                                  iterations=s.align_iterations,
                                  templates=self._blurred.templates(idx, A[idx], blur[idx]))
        moved = np.linalg.norm(res.centre - start, axis=1)
        in_image = self._aligner.support(cur.shape, res.centre, res.A, idx)
        ok = (res.converged & (moved <= s.max_correction_px) & (res.ncc >= ncc_threshold)
              & (in_image >= s.min_in_image) & (res.support >= s.min_support))
        m.accept(idx[ok], res.centre[ok], res.A[ok], res.ncc[ok], res.cov[ok], np.minimum(res.support, in_image)[ok])

    def _refine_recent(self, cur: FlowFrame, t: int, idx: np.ndarray, start: np.ndarray, A: np.ndarray,
                       A_capture: np.ndarray, z_hint: np.ndarray, blur: np.ndarray, m: _Measurements) -> None:
        """Align the *recent* templates ``idx`` from the flow result ``start``; accept into ``m``.

        Accepted like ``_refine`` with ``ncc_visible`` on the recent template, plus the drift guard:
        the query template, placed with the shape this implies, must still correlate at least
        ``ncc_drift_guard`` (the point may look different, not be somewhere else). The result is
        reported in query-template terms (shape ``A_recent @ A_capture``).
        """
        if idx.size == 0:
            return
        s = self.s
        res = self._recent.align(cur.smooth, start, A[idx] @ np.linalg.inv(A_capture[idx]), index=idx,
                                 iterations=s.align_iterations)
        A_query = res.A @ A_capture[idx]
        # (the recent template was captured from a frame already smeared like its neighbours: only
        # the query template is blurred)
        guard = self._score(cur, idx, res.centre, A_query, blur,
                            self._uncovered(t, res.centre, A_query, idx, z_hint[idx]))
        moved = np.linalg.norm(res.centre - start, axis=1)
        in_image = self._recent.support(cur.shape, res.centre, res.A, idx)
        ok = (res.converged & (moved <= s.max_correction_px) & (res.ncc >= s.ncc_visible)
              & (in_image >= s.min_in_image) & (guard >= s.ncc_drift_guard))
        m.accept(idx[ok], res.centre[ok], A_query[ok], res.ncc[ok], res.cov[ok], np.minimum(res.support, in_image)[ok])
        self._counts["recent_template"] += int(ok.sum())

    def _probe_exposure(self, cur: FlowFrame, t: int, idx: np.ndarray, start: np.ndarray, step: np.ndarray,
                        A: np.ndarray, z_hint: np.ndarray) -> None:
        """One frame's vote on the exposure fraction (motion_blur.py), from its fastest flow results.

        Only points moving at least ``_PROBE_MIN_MOTION_PX`` take part, so that the candidate
        streaks differ by a pixel or more; a frame with fewer than ``_PROBE_MIN_POINTS`` of them
        does not vote.
        """
        fast = np.linalg.norm(step[idx], axis=1) >= _PROBE_MIN_MOTION_PX
        if fast.sum() < _PROBE_MIN_POINTS:
            return
        pick = np.flatnonzero(fast)[np.linspace(0, fast.sum() - 1, _PROBE_MIN_POINTS).astype(int)]
        i, c0 = idx[pick], start[pick]
        mask = self._uncovered(t, c0, A[i], i, z_hint[i])
        scores = []
        for f in self._exposure.CANDIDATES:
            res = self._aligner.align(cur.smooth, c0, A[i], index=i, mask=mask, iterations=self.s.align_iterations,
                                      templates=self._blurred.templates(i, A[i], f * step[i]))
            scores.append(np.median(res.ncc))
        self._exposure.vote(np.array(scores))

    def _hypothesis(self, t: int, cur: FlowFrame, which: np.ndarray, uv: np.ndarray, z: np.ndarray,
                    A: np.ndarray, blur: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
        """Test "point n is at ``uv[n]`` with depth ``z[n]``" for the points in ``which`` (N,) bool.

        Returns (query-template NCC there (N,), -1 where not scored; surface_there (N,): inside the
        image and the depth map shows a surface at depth ``z`` there, within ``tol`` (relative)).
        """
        N = len(which)
        ncc = np.full(N, -1.0)
        there = np.zeros(N, bool)
        cand = np.flatnonzero(which & inside_image(uv, cur.shape))
        if cand.size:
            z_at = self._cam.observed_depth(t, uv[cand])
            c = cand[depth_consistent(z[cand], z_at, tol)]
            there[c] = True
            if c.size:
                mask = self._uncovered(t, uv[c], A[c], c, z[c])
                ncc[c] = self._score(cur, c, uv[c], A[c], blur, mask)
        return ncc, there

    def _appearance(self, cur: FlowFrame, which: np.ndarray, uv: np.ndarray, A: np.ndarray,
                    blur: np.ndarray) -> np.ndarray:
        """Query-template NCC at ``uv[n]`` for the points in ``which`` (N,) bool; -1 where not scored.

        The image alone: no pixel is left out for depth (used where the depth map cannot tell).
        """
        ncc = np.full(len(which), -1.0)
        c = np.flatnonzero(which)
        if c.size:
            ncc[c] = self._score(cur, c, uv[c], A[c], blur, None)
        return ncc

    def _score(self, cur: FlowFrame, idx: np.ndarray, uv: np.ndarray, A: np.ndarray, blur: np.ndarray,
               mask: np.ndarray | None) -> np.ndarray:
        """NCC of query templates ``idx``, blurred like this frame, placed at ``uv`` with shapes ``A``."""
        blurred = self._blurred.templates(idx, A, blur[idx])
        return self._aligner.score(cur.smooth, uv, A, idx, mask, None if blurred is None else blurred[0])
