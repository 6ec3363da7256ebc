"""The infini-gram (unbounded n-gram) language model over a ``SuffixIndex`` (Liu et al. 2024, sec. 2).

Input: a ``SuffixIndex`` of the training stream, the maximum suffix length ``K``, a unigram fallback and the
interpolation weights. Output: a ``LanguageModel`` (``arcore.lm``).

The paper's estimate: for the context ``c = <s> x_0 .. x_{t-1}`` (cut to its last K tokens), take the
longest suffix ``c'`` of c that occurs in the training data (``count(c') > 0``: backing off from n to n-1
until the context count is nonzero; the *effective n* is ``|c'| + 1``) and

    P_inf(w | c) = count(c' w) / count(c')

Where ``count(c' w) = 0`` the estimate is 0: the continuation was never seen after the longest matching
suffix, even if it was seen after a shorter one. The estimate is *sparse* when one token has all of
``count(c')`` (P_inf = 1 for it, 0 for every other token) and *dense* otherwise; the paper finds sparse
estimates far more often right, and interpolates them with a neural LM with their own weight (lambda_1
sparse, lambda_2 dense). Here the same scheme makes the infini-gram a proper model on its own (no token
of probability 0, so perplexity and bits per byte are finite and every decoder works):

    P(w | c) = lambda_b P_inf(w | c) + (1 - lambda_b) P_uni(w),    b = (sparse?, min(|c'|, B - 1))

with ``P_uni`` the add-``pseudocount`` unigram of the training stream (``arcore.ngram.histogram``), one
weight per bucket b of sparsity and matched length (B = ``length_buckets``), fit by EM on the valid split
with the interpolated n-gram's EM (``arcore.ngram.interpolation.fit_interpolation_weights``: two
components, both always available). ``|c'| = 0`` (not even the last token occurs) uses P_uni alone.

``<s>`` is context only: it matches document starts in the stream, is never predicted (P_uni(<s>) = 0 and
no context is followed by ``<s>``, since contexts never hold ``</s>``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcore.infinigram.index import SuffixIndex
from arcore.ngram.counts import with_bos
from arcore.ngram.histogram import UnigramModel


@dataclass(frozen=True)
class Estimates:
    """Per predicted token: P_inf, its matched context length |c'|, whether it is sparse, P_uni."""

    p_inf: np.ndarray
    matched: np.ndarray
    sparse: np.ndarray
    p_uni: np.ndarray
    count_context: np.ndarray


def bucket_of(matched: np.ndarray, sparse: np.ndarray, length_buckets: int) -> np.ndarray:
    """Weight index: ``sparse * B + min(matched, B - 1)``."""
    return np.asarray(sparse, dtype=np.int64) * length_buckets + np.minimum(matched, length_buckets - 1)


@dataclass(frozen=True, eq=False)
class InfiniGramModel:
    index: SuffixIndex
    vocab_size: int
    bos_id: int
    eos_id: int
    max_suffix: int
    fallback: UnigramModel
    weights: np.ndarray  # (2 * length_buckets,) lambda of P_inf per bucket (bucket_of)
    length_buckets: int

    # -- the estimate ---------------------------------------------------------------------------------
    def _predictable_total(self) -> int:
        return int(self.index.size - self.index.token_counts()[self.bos_id])

    def estimates(self, ids: np.ndarray) -> Estimates:
        """The paper's quantities at every predicted token of ``ids`` (shard layout), vectorized."""
        ext, offset = with_bos(ids, self.bos_id, self.eos_id)
        targets = np.flatnonzero(offset > 0)
        word = ext[targets]
        context_len = np.minimum(offset[targets], self.max_suffix)
        matched, lo, hi = self.index.match(lambda k, rows: ext[targets[rows] - 1 - k], context_len)
        count_context = np.where(matched > 0, hi - lo, self._predictable_total())

        def followed_by(first: np.ndarray) -> np.ndarray:  # count(c' first), c' the matched suffix
            m, a, b = self.index.match(lambda k, rows: first[rows] if k == 0 else ext[targets[rows] - k], matched + 1)
            return np.where(m == matched + 1, b - a, 0)

        count_word = followed_by(word)
        sparse = (matched > 0) & (count_word == count_context)
        unseen = np.flatnonzero((matched > 0) & (count_word == 0))
        if unseen.size:  # sparse anyway if another single token has all of count(c')
            first = np.zeros(targets.size, dtype=np.int64)
            first[unseen] = self.index.first_continuation(lo[unseen])
            count_first = followed_by(first)
            sparse[unseen] = count_first[unseen] == count_context[unseen]
        p_inf = count_word / np.maximum(count_context, 1)
        p_uni = np.exp(self.fallback.logprob[word])
        return Estimates(p_inf, matched, sparse, p_uni, count_context)

    def _mix(self, p_inf: np.ndarray, p_uni: np.ndarray, matched: np.ndarray, sparse: np.ndarray) -> np.ndarray:
        lam = np.where(matched > 0, self.weights[bucket_of(matched, sparse, self.length_buckets)], 0.0)
        lam = lam.reshape(lam.shape + (1,) * (p_inf.ndim - lam.ndim))
        with np.errstate(divide="ignore"):
            return np.log(lam * p_inf + (1.0 - lam) * p_uni)

    # -- LanguageModel ----------------------------------------------------------------------------------
    def score(self, ids: np.ndarray) -> np.ndarray:
        e = self.estimates(ids)
        return self._mix(e.p_inf, e.p_uni, e.matched, e.sparse)

    def initial_state(self, batch_size: int) -> list[np.ndarray]:
        return [np.array([self.bos_id], dtype=np.int64) for _ in range(batch_size)]

    def advance(self, state: list[np.ndarray], tokens: np.ndarray) -> list[np.ndarray]:
        return [np.append(ctx, int(t))[-self.max_suffix:] for ctx, t in zip(state, np.asarray(tokens).ravel())]

    def select(self, state: list[np.ndarray], rows: np.ndarray) -> list[np.ndarray]:
        return [state[int(r)] for r in np.asarray(rows).ravel()]

    def next_distribution(self, state: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(P_inf rows (batch, V), matched, sparse)`` for each context in ``state``."""
        lengths = np.array([len(c) for c in state], dtype=np.int64)
        reversed_ctx = np.zeros((len(state), max(1, int(lengths.max(initial=1)))), dtype=np.int64)
        for i, ctx in enumerate(state):
            reversed_ctx[i, :len(ctx)] = ctx[::-1]
        matched, lo, hi = self.index.match(lambda k, rows: reversed_ctx[rows, k], lengths)
        p_inf = np.zeros((len(state), self.vocab_size))
        unigram = self.index.token_counts().astype(np.float64)
        unigram[self.bos_id] = 0.0
        for i in range(len(state)):
            counts = self.index.continuations(int(lo[i]), int(hi[i]), self.vocab_size) if matched[i] else unigram
            p_inf[i] = counts / counts.sum()
        sparse = (matched > 0) & (np.count_nonzero(p_inf, axis=1) == 1)
        return p_inf, matched, sparse

    def next_logprobs(self, state: list[np.ndarray]) -> np.ndarray:
        p_inf, matched, sparse = self.next_distribution(state)
        p_uni = np.exp(self.fallback.logprob)[None, :]
        return self._mix(p_inf, p_uni, matched, sparse)
