"""Dataset statistics, ``OUT/stats.json``: per key count / mean / std / min / max / quantiles.

Computed in one streaming pass over the episodes, holding per key only O(reservoir) memory, and
mergeable: ``RunningStats.merge`` combines two partial results exactly as if their data had been
seen together, so shards (``--shard i/N``) or parallel workers can each compute their part.

- count, mean, std (population, ddof=0), min, max are exact: float64 moments merged with Chan et
  al.'s parallel update.
- quantiles (1, 5, 25, 50, 75, 95, 99 %) come from a **uniform random sample of rows** (a
  reservoir of at most ``RESERVOIR_SIZE`` rows per key). Two reservoirs merge into a uniform sample
  of their union by drawing how many rows come from each side from the hypergeometric
  distribution. With 65,536 rows the standard error of a quantile q is about sqrt(q(1-q)/65536),
  i.e. <= 0.2 percentile points; quantiles are exact when a key has fewer rows than that.
  A histogram was rejected because its range must be known before the data is seen.

Only meaningful entries enter the statistics: valid depth pixels, visible tracks, valid hand frames.
Vector keys (e.g. xyz) have per-component statistics; NaN entries are skipped per component.

Incremental: every run ends by rewriting ``stats.json``, and reading every episode again would make
a no-op re-run of a 1,000-video dataset cost minutes (the depth of one 300-frame 512x384 episode
takes ~2 s to read). So the merged state is kept beside it (``stats.state.npz``: moments, samples
in float64 so that a re-run reproduces stats.json exactly, and the (name, size, mtime) of every
episode already in it) and a run merges only the episodes that are new. If an episode in the state
was replaced or removed, everything is recomputed: moments cannot be un-merged. Shards finishing at
the same time may each write the state; whichever lands last may miss another's new episodes, and
the next run adds them.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from y2r.artifacts import HAND_SIDES, ArtifactStore, file_fingerprint, write_atomic, write_json_atomic
from y2r.dataset.reader import Episode, find_episode_files
from y2r.errors import SchemaError

STATS_FILE = "stats.json"
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.50, 0.75, 0.95, 0.99)
RESERVOIR_SIZE = 65536
_BLOCK_FRAMES = 16


def quantile_key(q: float) -> str:
    return f"q{round(q * 100):02d}"


class RunningStats:
    """Mergeable statistics of a stream of rows with ``C`` components (NaN skipped per component)."""

    def __init__(
        self,
        components: Sequence[str],
        *,
        reservoir: int = RESERVOIR_SIZE,
        rng: np.random.Generator | None = None,
        units: str = "",
        selection: str = "",
    ):
        self.components = list(components)
        C = len(self.components)
        self.units = units
        self.selection = selection
        self.capacity = int(reservoir)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.count = np.zeros(C, np.int64)
        self.mean = np.zeros(C)
        self.m2 = np.zeros(C)
        self.min = np.full(C, np.inf)
        self.max = np.full(C, -np.inf)
        self.rows_seen = 0  # rows offered to the reservoir (its population size)
        self.sample = np.empty((0, C))

    # ---------------------------------------------------------------- updates
    def update(self, rows: np.ndarray) -> None:
        """Add rows ``(n, C)`` (or ``(n,)`` when C == 1)."""
        x = np.asarray(rows)
        if not np.issubdtype(x.dtype, np.floating):
            x = x.astype(np.float64)
        x = x.reshape(-1, len(self.components))
        if x.shape[0] == 0:
            return
        fin = np.isfinite(x)
        if fin.all():
            # The common case (depth pixels, visible tracks): moments accumulated in float64 straight
            # from the stored dtype, without float64 copies and masks of millions of rows.
            n_b = np.full(len(self.components), x.shape[0], np.int64)
            mean_b = x.mean(0, dtype=np.float64)
            m2_b = x.var(0, dtype=np.float64) * x.shape[0]
            lo, hi = x.min(0).astype(np.float64), x.max(0).astype(np.float64)
        else:
            x = x.astype(np.float64, copy=False)
            n_b = fin.sum(0)
            xz = np.where(fin, x, 0.0)
            with np.errstate(invalid="ignore", divide="ignore"):
                mean_b = np.where(n_b > 0, xz.sum(0) / np.maximum(n_b, 1), 0.0)
                m2_b = (np.where(fin, x - mean_b, 0.0) ** 2).sum(0)
            lo, hi = np.where(fin, x, np.inf).min(0), np.where(fin, x, -np.inf).max(0)
        self._merge_moments(n_b, mean_b, m2_b)
        self.min = np.minimum(self.min, lo)
        self.max = np.maximum(self.max, hi)
        seen = x.shape[0]
        if seen > self.capacity:
            x = x[self.rng.choice(seen, self.capacity, replace=False)]
        self._merge_sample(x.astype(np.float64, copy=False), seen)

    def merge(self, other: RunningStats) -> RunningStats:
        """Fold ``other`` into this one (same components); returns self."""
        if other.components != self.components:
            raise ValueError(f"cannot merge stats of {other.components} into {self.components}")
        self._merge_moments(other.count, other.mean, other.m2)
        self.min = np.minimum(self.min, other.min)
        self.max = np.maximum(self.max, other.max)
        self._merge_sample(other.sample, other.rows_seen)
        return self

    def _merge_moments(self, n_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray) -> None:
        n_a = self.count
        n = n_a + n_b
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mean_b - self.mean
            frac = np.where(n > 0, n_b / np.maximum(n, 1), 0.0)
            self.mean = self.mean + delta * frac
            self.m2 = self.m2 + m2_b + delta**2 * n_a * frac
        self.count = n

    def _merge_sample(self, sample_b: np.ndarray, seen_b: int) -> None:
        """Uniform sample of the union of two uniformly sampled populations."""
        sample_a, seen_a = self.sample, self.rows_seen
        total = seen_a + seen_b
        k = min(self.capacity, total)
        if (
            len(sample_a) + len(sample_b) <= self.capacity
            and len(sample_a) == seen_a
            and len(sample_b) == seen_b
        ):
            self.sample = np.concatenate([sample_a, sample_b]) if len(sample_b) else sample_a
        else:
            if seen_a < 10**9 and seen_b < 10**9:
                na = (
                    int(self.rng.hypergeometric(seen_a, seen_b, k))
                    if seen_a and seen_b
                    else (k if seen_a else 0)
                )
            else:  # numpy's hypergeometric is limited to populations < 1e9; binomial is exact in the limit
                na = int(self.rng.binomial(k, seen_a / total))
            na = min(max(na, k - len(sample_b)), len(sample_a))
            nb = k - na
            pick_a = sample_a[self.rng.choice(len(sample_a), na, replace=False)] if na else sample_a[:0]
            pick_b = sample_b[self.rng.choice(len(sample_b), nb, replace=False)] if nb else sample_b[:0]
            self.sample = np.concatenate([pick_a, pick_b])
        self.rows_seen = total

    # ---------------------------------------------------------------- results
    @property
    def std(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sqrt(np.where(self.count > 0, self.m2 / np.maximum(self.count, 1), np.nan))

    def quantiles(self, levels: Sequence[float] = QUANTILES) -> dict[str, np.ndarray]:
        C = len(self.components)
        S = self.sample
        if len(S) == 0:
            Q = np.full((len(levels), C), np.nan)
        elif np.isfinite(S).all():
            Q = np.quantile(S, list(levels), axis=0)
        else:
            with warnings.catch_warnings():  # an all-NaN component has no quantiles: NaN is the answer
                warnings.simplefilter("ignore", RuntimeWarning)
                S = np.where(np.isfinite(S), S, np.nan)
                Q = np.nanquantile(S, list(levels), axis=0)
        return {quantile_key(q): Q[i] for i, q in enumerate(levels)}

    def to_dict(self, levels: Sequence[float] = QUANTILES) -> dict[str, Any]:
        has = self.count > 0
        d: dict[str, Any] = {
            "components": self.components,
            "units": self.units,
            "selection": self.selection,
            "count": self.count.tolist(),
            "mean": _list(np.where(has, self.mean, np.nan)),
            "std": _list(self.std),
            "min": _list(np.where(has, self.min, np.nan)),
            "max": _list(np.where(has, self.max, np.nan)),
        }
        for k, v in self.quantiles(levels).items():
            d[k] = _list(v)
        d["sampled_rows"] = int(len(self.sample))
        d["exact_quantiles"] = bool(len(self.sample) == self.rows_seen)
        return d


def _list(a: np.ndarray) -> list[float | None]:
    return [float(x) if math.isfinite(x) else None for x in np.asarray(a, dtype=np.float64)]


# ------------------------------------------------------------------------------------ per episode
XYZ = ("x", "y", "z")
UV = ("u", "v")


class StatsSet:
    """A dict of RunningStats by key, mergeable as a whole."""

    def __init__(self, reservoir: int = RESERVOIR_SIZE, seed: int | str = 0):
        self.reservoir = reservoir
        self.seed = seed
        self.stats: dict[str, RunningStats] = {}
        self.episodes = 0
        self.frames = 0

    def _rng(self, key: str) -> np.random.Generator:
        h = hashlib.sha256(f"{self.seed}/{key}".encode()).digest()
        return np.random.default_rng(int.from_bytes(h[:8], "little"))

    def add(
        self, key: str, rows: np.ndarray, components: Sequence[str], units: str = "", selection: str = ""
    ) -> None:
        if key not in self.stats:
            self.stats[key] = RunningStats(
                components, reservoir=self.reservoir, rng=self._rng(key), units=units, selection=selection
            )
        self.stats[key].update(rows)

    def merge(self, other: StatsSet) -> StatsSet:
        for k, s in other.stats.items():
            if k in self.stats:
                self.stats[k].merge(s)
            else:
                self.stats[k] = s
        self.episodes += other.episodes
        self.frames += other.frames
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: self.stats[k].to_dict() for k in sorted(self.stats)}

    # ---------------------------------------------------------------- persistence
    def save(self, path: Path, episodes: dict[str, list[int]]) -> None:
        """Write the state and the fingerprints of the ``episodes`` it holds, atomically."""
        arrays: dict[str, np.ndarray] = {}
        keys = []
        for i, (k, r) in enumerate(sorted(self.stats.items())):
            keys.append({"key": k, "components": r.components, "units": r.units, "selection": r.selection,
                         "rows_seen": int(r.rows_seen)})
            arrays.update({f"{i}/count": r.count, f"{i}/mean": r.mean, f"{i}/m2": r.m2, f"{i}/min": r.min,
                           f"{i}/max": r.max, f"{i}/sample": r.sample})
        meta = {"version": 1, "reservoir": self.reservoir, "seed": str(self.seed), "episodes_count": self.episodes,
                "frames": self.frames, "keys": keys, "episodes": episodes}
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_atomic(path, buf.getvalue(), durable=False)  # a cache: a lost one means a full pass

    @classmethod
    def load(cls, path: Path) -> tuple[StatsSet, dict[str, list[int]]]:
        """The state written by ``save`` and its episode fingerprints."""
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
            if meta.get("version") != 1:
                raise ValueError(f"unknown stats state version {meta.get('version')!r}")
            s = cls(int(meta["reservoir"]), seed=meta["seed"])
            s.episodes, s.frames = int(meta["episodes_count"]), int(meta["frames"])
            for i, k in enumerate(meta["keys"]):
                # a fresh generator per load: later merges draw independently of earlier ones
                r = RunningStats(k["components"], reservoir=s.reservoir,
                                 rng=s._rng(f"{k['key']}/{s.episodes}"), units=k["units"], selection=k["selection"])
                r.count, r.mean, r.m2 = z[f"{i}/count"], z[f"{i}/mean"], z[f"{i}/m2"]
                r.min, r.max = z[f"{i}/min"], z[f"{i}/max"]
                r.sample, r.rows_seen = z[f"{i}/sample"], int(k["rows_seen"])
                s.stats[k["key"]] = r
        return s, meta["episodes"]


def episode_stats(path: str | Path, reservoir: int = RESERVOIR_SIZE) -> StatsSet:
    """Statistics of one episode file (merge several with ``StatsSet.merge``)."""
    with Episode(path) as ep:
        s = StatsSet(reservoir, seed=ep.episode_id)
        s.episodes, s.frames = 1, ep.num_frames
        metric = ep.metric_scale
        m = "m" if metric else "scene units"
        s.add("episode/num_frames", np.array([ep.num_frames]), ["frames"], "frames", "one row per episode")
        s.add("episode/duration_s", np.array([ep.duration_s]), ["duration"], "s", "one row per episode")
        K = ep.K()
        s.add(
            "camera/K",
            np.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]], -1),
            ["fx", "fy", "cx", "cy"],
            "px",
            "all frames",
        )
        P = ep.world_T_cam()
        s.add("camera/world_T_cam.translation", P[:, :3, 3], XYZ, m, "all frames (camera centre in world)")
        if len(P) > 1:
            speed = np.linalg.norm(np.diff(P[:, :3, 3].astype(np.float64), axis=0), axis=1) * ep.fps
            s.add("camera/speed", speed, ["speed"], f"{m}/s", "between consecutive frames")
        if ep.has("depth/depth"):
            ds, dv = ep.file["depth/depth"], ep.file["depth/valid"]
            for a in range(0, ep.num_frames, _BLOCK_FRAMES):
                d = ds[a : a + _BLOCK_FRAMES]
                v = dv[a : a + _BLOCK_FRAMES]
                s.add("depth/depth", d[v].astype(np.float32), ["z"], m, "valid pixels only")
        tr = ep.tracks()
        if tr is not None:
            vis = tr.visible
            s.add("tracks/xyz_world", tr.xyz_world[vis], XYZ, m, "visible entries only")
            s.add("tracks/uv", tr.uv[vis], UV, "px", "visible entries only")
        for side in HAND_SIDES:
            h = ep.hand(side)
            if h is None:
                continue
            v = h.valid
            base = f"hands/{side}"
            s.add(
                f"{base}/joints_cam", h.joints_cam[v].reshape(-1, 3), XYZ, "m", "valid frames, all 21 joints"
            )
            s.add(
                f"{base}/keypoints_2d",
                h.keypoints_2d[v].reshape(-1, 2),
                UV,
                "px",
                "valid frames, all 21 joints",
            )
            s.add(f"{base}/cam_T_wrist.translation", h.cam_T_wrist[v][:, :3, 3], XYZ, "m", "valid frames")
            s.add(f"{base}/score", h.score[v], ["score"], "", "valid frames")
            if h.mano is not None:
                s.add(
                    f"{base}/mano/betas", h.mano["betas"][v], [f"b{i}" for i in range(10)], "", "valid frames"
                )
    return s


# The episode stage leaves its episode's statistics in its stage folder (OUT/work/<id>/episode/), so
# that computing them, which reads the whole file, happens in the workers in parallel (and on the
# node that wrote the file) instead of serially at the end of the run; ``write_stats`` merges them.
EPISODE_STATS_FILE = "stats.npz"


def save_episode_stats(episode_path: Path, dest: Path, reservoir: int = RESERVOIR_SIZE) -> None:
    """Compute one episode's statistics and save them with the file's fingerprint (size, mtime)."""
    fp = file_fingerprint(Path(episode_path))
    episode_stats(episode_path, reservoir).save(Path(dest), {"episode": fp})


def _saved_episode_stats(store: ArtifactStore, episode_path: Path, reservoir: int) -> StatsSet | None:
    """The statistics the episode stage saved for this very file, else None (then they are computed)."""
    episode_path = Path(episode_path)
    loaded = _load_state(store.stage_dir(episode_path.stem, "episode") / EPISODE_STATS_FILE, reservoir)
    if loaded is None or loaded[1].get("episode") != file_fingerprint(episode_path):
        return None  # missing, unreadable, or made for an earlier version of the file
    return loaded[0]


def compute_stats(
    episodes: Sequence[str | Path], reservoir: int = RESERVOIR_SIZE, store: ArtifactStore | None = None
) -> tuple[StatsSet, list[dict]]:
    """Merged statistics of episode files, and those that could not be read; with the ``store`` the
    files belong to, what the episode stage saved there is used where it is still current."""
    total = StatsSet(reservoir)
    skipped: list[dict] = []
    for p in episodes:
        try:
            saved = _saved_episode_stats(store, Path(p), reservoir) if store is not None else None
            total.merge(saved if saved is not None else episode_stats(p, reservoir))
        except (OSError, KeyError, SchemaError) as e:
            msg = e.message if isinstance(e, SchemaError) else " ".join(str(e).split())
            skipped.append({"path": str(p), "error": msg})
    return total, skipped


STATE_FILE = "stats.state.npz"


def _load_state(path: Path, reservoir: int) -> tuple[StatsSet, dict[str, list[int]]] | None:
    if not path.exists():
        return None
    try:
        state, held = StatsSet.load(path)
    except (OSError, ValueError, KeyError):  # unreadable or from another version: recompute
        return None
    return (state, held) if state.reservoir == reservoir else None


def write_stats(out_root: str | Path, reservoir: int = RESERVOIR_SIZE) -> Path:
    """Statistics over ``OUT/episodes`` into ``OUT/stats.json`` (atomically), reading only new episodes."""
    root = Path(out_root)
    folder = root / "episodes"
    files = find_episode_files(folder) if folder.is_dir() else []
    # (None: vanished meanwhile; compute_stats reports it as skipped)
    current = {Path(p).name: file_fingerprint(Path(p)) for p in files}
    state_path = root / STATE_FILE
    loaded = _load_state(state_path, reservoir)
    if loaded is not None and all(current.get(n) == fp for n, fp in loaded[1].items()):
        total, held = loaded
        new = [p for p in files if Path(p).name not in held]
    else:  # first run, or an episode in the state changed or went away
        total, held, new = StatsSet(reservoir), {}, list(files)
    added, skipped = compute_stats(new, reservoir, store=ArtifactStore(root))
    total.merge(added)
    skipped_names = {Path(x["path"]).name for x in skipped}
    held = {**held, **{Path(p).name: current[Path(p).name] for p in new if Path(p).name not in skipped_names}}
    if new or not state_path.exists():
        try:
            total.save(state_path, held)
        except OSError:  # only a cache: stats.json is still written (and will say if that fails)
            pass
    doc = {
        "schema": "y2r.stats",
        "version": 1,
        "episodes": total.episodes,
        "frames": total.frames,
        "skipped": skipped,
        "method": {
            "moments": "exact over all selected entries (float64, Chan et al. parallel merge); std is ddof=0",
            "quantiles": f"from a uniform random sample of up to {reservoir} rows per key (reservoir, merged "
            "across episodes by hypergeometric splitting); exact when exact_quantiles is true",
            "quantile_levels": list(QUANTILES),
            "reservoir_size": reservoir,
        },
        "keys": total.to_dict(),
    }
    path = root / STATS_FILE
    write_json_atomic(path, doc)
    return path
