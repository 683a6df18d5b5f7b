"""Semantic drift of what users ask: a window's sample of user queries against the baseline's,
embedded, compared with a kernel two-sample test (MMD), and the new topics named.

- **Sample**: a bottom-k sample of the queries by a hash of the turn id (``QuerySample``), plain
  mergeable data in every partial; any union of samples, cut to k, is a uniform sample again.
- **Embedding**: :class:`HashedNgrams` — character 3..5-grams of the normalised text (accents
  folded, so "eléctrico" and "electrico" meet), hashed into 512 signed dimensions, L2-normalised.
  No model, no download; deterministic. Lexical, not semantic in the deep sense: a new subject
  shows as new words (``benchmarks/embeddings.py`` measures it against the served GGUF model's
  embeddings; see the README for the numbers and the choice).
- **Test**: MMD² with a Gaussian kernel (bandwidth: the median pairwise distance of the pooled
  sample) and a permutation test: the threshold is the (1 - alpha) quantile of MMD² over random
  relabellings of the same pooled sample, so the false-alarm rate is alpha by construction,
  whatever the embedding. Runs per window in stage 2 (~20 ms for 2 x 256 queries).
- **Emerging topics**: window queries whose nearest baseline query is farther than almost every
  baseline query's nearest neighbour (the 5th percentile of those similarities) are novel; novel
  queries are grouped (a greedy pass joining a query to the first group whose centroid it is close
  to), and each group of enough size is named by its most distinctive words, with examples.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

EMBEDDER = "hashed-char-ngrams-v1"
SAMPLE_K = 64  # queries kept per partial (per model, bucket and partition)
WINDOW_K = 256  # queries a window or a baseline is compared on
_MAX_CHARS = 300
STOPWORDS = frozenset(
    "a al algo algun alguna algunos como con cual cuales cuando cuanto de del donde el en es esta "
    "este esto hay la las le lo los me mi mas muy no o para pero por que se si sin su sus tengo "
    "tiene tienen un una uno y ya yo usted ustedes quiero busco tienes puedo puede hola buenas "
    "buenos dias tardes gracias favor the is".split()
)


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def normalise(text: str) -> str:
    """Lower case, accents folded, punctuation to spaces, redaction placeholders dropped."""
    text = re.sub(r"<[A-Z]+(?::[0-9a-f]+)?>", " ", text[:_MAX_CHARS])
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return " ".join(re.findall(r"[a-z0-9]+", text))


def words(text: str) -> list[str]:
    return [w for w in normalise(text).split() if len(w) > 2 and w not in STOPWORDS]


class QuerySample:
    """The ``k`` user queries with the smallest hash of their turn id (ties by text)."""

    def __init__(self, k: int = SAMPLE_K) -> None:
        self.k = k
        self.rows: list[tuple[int, str]] = []  # (hash, query), sorted

    def add(self, turn_id: str, query: str | None) -> None:
        if not query:
            return
        h = _hash64(turn_id)
        if len(self.rows) >= self.k and h >= self.rows[-1][0]:
            return
        row = (h, query[:_MAX_CHARS])
        i = bisect.bisect_left(self.rows, row)
        if i < len(self.rows) and self.rows[i] == row:
            return  # the same turn again
        self.rows.insert(i, row)
        del self.rows[self.k :]

    def merge(self, other: QuerySample, k: int | None = None) -> QuerySample:
        self.k = max(self.k, k or other.k)
        self.rows = sorted(set(self.rows) | set(other.rows))[: self.k]
        return self

    def queries(self) -> list[str]:
        return [q for _, q in self.rows]

    def to_list(self) -> list[list[Any]]:
        return [[h, q] for h, q in self.rows]

    @classmethod
    def from_list(cls, rows: Iterable[Sequence[Any]] | None, k: int = SAMPLE_K) -> QuerySample:
        s = cls(k)
        s.rows = sorted((int(h), str(q)) for h, q in (rows or []))
        return s


class HashedNgrams:
    """Character 3..5-grams (of each word, padded with spaces) hashed into ``dim`` signed
    buckets, L2-normalised; a query with no letters is the zero vector."""

    name = EMBEDDER

    def __init__(self, dim: int = 512, ngrams: tuple[int, ...] = (3, 4, 5)) -> None:
        self.dim = dim
        self.ngrams = ngrams
        self._cache: dict[str, np.ndarray] = {}

    def _features(self, text: str) -> Counter[int]:
        feats: Counter[int] = Counter()
        for w in normalise(text).split():
            padded = f" {w} "
            for n in self.ngrams:
                for i in range(max(1, len(padded) - n + 1)):
                    h = _hash64(padded[i : i + n])
                    feats[h] += 1
        return feats

    def _vector(self, text: str) -> np.ndarray:
        v = self._cache.get(text)
        if v is None:
            v = np.zeros(self.dim)
            for h, c in self._features(text).items():
                v[h % self.dim] += (1.0 if (h >> 63) & 1 else -1.0) * math.sqrt(c)
            norm = float(np.linalg.norm(v))
            if norm > 0:
                v /= norm
            self._cache[text] = v
            if len(self._cache) > 20_000:  # a window's queries are embedded again next hop
                self._cache.pop(next(iter(self._cache)))
        return v

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim))
        out: np.ndarray = np.vstack([self._vector(t) for t in texts])
        return out


# -- the two-sample test ----------------------------------------------------------------------


@dataclass(frozen=True)
class MMDResult:
    mmd2: float
    threshold: float  # the (1 - alpha) quantile of MMD² under the permutations
    p_value: float
    permutations: int
    bandwidth: float
    n_baseline: int
    n_window: int


def _sq_dists(z: np.ndarray) -> np.ndarray:
    sq = np.sum(z * z, axis=1)
    out: np.ndarray = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    return out


def mmd_test(
    x: np.ndarray, y: np.ndarray, alpha: float = 0.01, permutations: int = 200, seed: int = 0
) -> MMDResult:
    """Biased MMD² between samples ``x`` and ``y`` (rows) with a Gaussian kernel, and its
    permutation p-value ``(1 + #{perm >= observed}) / (1 + permutations)``."""
    n, m = len(x), len(y)
    z = np.vstack([x, y])
    d2 = _sq_dists(z)
    off = d2[np.triu_indices(len(z), k=1)]
    med = float(np.median(off[off > 0])) if np.any(off > 0) else 1.0
    k = np.exp(-d2 / med)
    rng = np.random.default_rng(seed)
    labels = np.zeros((len(z), permutations + 1))
    base = np.concatenate([np.full(n, 1.0 / n), np.full(m, -1.0 / m)])
    labels[:, 0] = base
    for j in range(1, permutations + 1):
        labels[:, j] = rng.permutation(base)
    stats = np.einsum("ij,ij->j", labels, k @ labels)
    observed, null = float(stats[0]), stats[1:]
    p = (1 + int(np.sum(null >= observed - 1e-12))) / (1 + permutations)
    return MMDResult(
        observed,
        float(np.quantile(null, 1 - alpha)),
        p,
        permutations,
        math.sqrt(med),
        n,
        m,
    )


# -- emerging topics --------------------------------------------------------------------------


@dataclass
class Topic:
    """A group of window queries far from everything in the baseline."""

    label: str
    size: int
    share: float  # of the window's sample
    examples: list[str] = field(default_factory=list)
    members: list[int] = field(default_factory=list)  # indices in the window's sample

    def line(self) -> str:
        shown = "; ".join(f"«{e}»" for e in self.examples)
        return f"{self.label} — {self.size} queries ({self.share:.0%} of the sample): {shown}"


def emerging_topics(
    baseline_q: Sequence[str],
    window_q: Sequence[str],
    bx: np.ndarray,
    wy: np.ndarray,
    min_share: float = 0.04,
    min_size: int = 3,
    join: float = 0.35,
) -> list[Topic]:
    """Groups of novel window queries, largest first (see the module docstring)."""
    if len(baseline_q) < 2 or not len(window_q):
        return []
    bb = bx @ bx.T
    np.fill_diagonal(bb, -np.inf)
    nearest_b = bb.max(axis=1)
    cut = float(np.quantile(nearest_b, 0.05))  # 95 % of baseline queries have a closer neighbour
    nearest_w = (wy @ bx.T).max(axis=1)
    novel = [i for i in range(len(window_q)) if nearest_w[i] < cut]
    groups: list[list[int]] = []
    centroids: list[np.ndarray] = []
    for i in novel:
        v = wy[i]
        best, best_sim = -1, join
        for j, c in enumerate(centroids):
            norm = float(np.linalg.norm(c))
            sim = float(v @ c) / norm if norm else 0.0
            if sim >= best_sim:
                best, best_sim = j, sim
        if best < 0:
            groups.append([i])
            centroids.append(v.copy())
        else:
            groups[best].append(i)
            centroids[best] += v
    base_words = Counter(w for q in baseline_q for w in set(words(q)))
    out = []
    for members in sorted(groups, key=len, reverse=True):
        if len(members) < min_size or len(members) / len(window_q) < min_share:
            continue
        counts = Counter(w for i in members for w in set(words(window_q[i])))
        # distinctive: frequent in the group, rare in the baseline
        ranked = sorted(
            counts,
            key=lambda w: (-counts[w] / (1 + base_words[w] * len(members) / len(baseline_q)), w),
        )
        label = ", ".join(ranked[:3]) or "(no words)"
        centre = wy[members].sum(axis=0)
        typical = sorted(members, key=lambda i: -float(wy[i] @ centre))  # closest to the centre
        examples = list(dict.fromkeys(window_q[i] for i in typical))[:3]
        out.append(
            Topic(label, len(members), len(members) / len(window_q), examples, list(members))
        )
    return out


_DEFAULT = HashedNgrams()


def projection(bx: np.ndarray, wy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both samples on the two principal axes of the pooled sample (for the dashboard)."""
    z = np.vstack([bx, wy])
    centred = z - z.mean(axis=0)
    axes = _top_axes(centred, 2)
    xy = centred @ axes
    if xy.shape[1] < 2:
        xy = np.hstack([xy, np.zeros((len(xy), 2 - xy.shape[1]))])
    return xy[: len(bx)], xy[len(bx) :]


def _top_axes(centred: np.ndarray, k: int, iterations: int = 20, extra: int = 10) -> np.ndarray:
    """The ``k`` leading principal axes (columns) by subspace iteration on ``k + extra``
    directions from a fixed start, then the exact axes within that subspace: a full SVD of
    512 x 512 takes ~60 ms here, this a few, and the dashboard needs two axes."""
    k = min(k, *centred.shape)
    if k == 0:
        return np.zeros((centred.shape[1], 0))
    width = min(k + extra, *centred.shape)
    rng = np.random.default_rng(0)
    v, _ = np.linalg.qr(rng.standard_normal((centred.shape[1], width)))
    for _ in range(iterations):
        v, _ = np.linalg.qr(centred.T @ (centred @ v))
    _, _, wt = np.linalg.svd(centred @ v, full_matrices=False)
    axes = v @ wt[:k].T
    # A fixed sign per axis (its largest loading positive): the picture does not flip.
    signs = np.sign(axes[np.argmax(np.abs(axes), axis=0), np.arange(k)])
    out: np.ndarray = axes * np.where(signs == 0, 1.0, signs)
    return out


@dataclass(frozen=True)
class SemanticResult:
    mmd: MMDResult
    topics: list[Topic]
    breached: bool
    details: dict[str, str]
    base_xy: np.ndarray
    window_xy: np.ndarray
    window_q: Sequence[str]

    def view(self, window_end: int) -> dict[str, Any]:
        """What the dashboard draws: baseline and window queries in 2-D (rounded), each window
        point with its topic (1-based; 0: none), the topics and the test."""
        topic_of = {i: n + 1 for n, t in enumerate(self.topics) for i in t.members}
        return {
            "window_end": window_end,
            "p_value": self.mmd.p_value,
            "mmd2": self.mmd.mmd2,
            "threshold": self.mmd.threshold,
            "breached": self.breached,
            "baseline": [[round(float(x), 3), round(float(y), 3)] for x, y in self.base_xy],
            "window": [
                [round(float(x), 3), round(float(y), 3), topic_of.get(i, 0)]
                for i, (x, y) in enumerate(self.window_xy)
            ],
            "topics": [
                {"label": t.label, "size": t.size, "share": t.share, "examples": t.examples}
                for t in self.topics
            ],
        }


def semantic_drift(
    baseline_q: Sequence[str],
    window_q: Sequence[str],
    *,
    alpha: float = 0.01,
    min_samples: int = 50,
    permutations: int = 200,
    embedder: HashedNgrams | None = None,
) -> SemanticResult | None:
    """The window's queries against the baseline's; None below ``min_samples`` on either side.
    Breached when the permutation p-value is below ``alpha``; the new topics are named then."""
    if len(baseline_q) < min_samples or len(window_q) < min_samples:
        return None
    emb = embedder or _DEFAULT
    bx, wy = emb.embed(list(baseline_q)), emb.embed(list(window_q))
    result = mmd_test(bx, wy, alpha, permutations)
    breached = result.p_value < alpha
    details = {
        "p_value": f"{result.p_value:.4f}",
        "alpha": f"{alpha:g}",
        "permutations": str(permutations),
        "embedder": emb.name,
        "baseline_queries": str(len(baseline_q)),
        "window_queries": str(len(window_q)),
    }
    topics: list[Topic] = []
    if breached:
        topics = emerging_topics(baseline_q, window_q, bx, wy)
        for i, t in enumerate(topics[:3]):
            details[f"topic.{i + 1}"] = t.line()
        if topics:
            details["why.1"] = f"new topic: {topics[0].line()}"
    base_xy, window_xy = projection(bx, wy)
    return SemanticResult(result, topics, breached, details, base_xy, window_xy, list(window_q))


def sample_of(summary: Mapping[str, Any]) -> list[str]:
    return [str(q) for q in summary.get("query_sample") or []]
