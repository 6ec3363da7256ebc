"""ARPA export and import for ``BackoffModel``.

Output of ``write_arpa`` / input of ``read_arpa``: the ARPA backoff format read by KenLM, SRILM and
``pip install kenlm``::

    \\data\\
    ngram 1=5
    ngram 2=3

    \\1-grams:
    -0.69897<TAB><unk>
    -99<TAB><s><TAB>-0.30103
    ...
    \\end\\

Values are log10, written as the shortest text that reads back as their float32 (lmplz's precision
and text). ``-99`` stands for probability 0 (KenLM's convention, used for ``<s>``), and reads back
as -inf. Backoff weights are written only for n-grams that are contexts of a longer n-gram. Words are
the model's vocabulary strings; the default names ``<s>``, ``</s>``, ``<unk>`` for the special ids and the
decimal id for every other token, so an id-level model is still loadable by KenLM.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from arcore.errors import InputError
from arcore.ngram.backoff import BackoffModel
from arcore.ngram.counts import atomic_write
from arcore.ngram.diskarray import PageDropper
from arcore.ngram.index import decode, locate

LN10 = np.log(10.0)
NO_PROB = -99.0


def default_words(model: BackoffModel) -> list[str]:
    words = [str(i) for i in range(model.vocab_size)]
    words[model.bos_id], words[model.eos_id] = "<s>", "</s>"
    if model.unk_id is not None:
        words[model.unk_id] = "<unk>"
    return words


def _fmt(values: np.ndarray) -> pa.Array:
    """log10 text of natural-log values (-99 for probability 0), as a pyarrow string array.

    The text is the shortest decimal that reads back as the value's float32, which is what lmplz writes
    (KenLM stores float32 and prints with double-conversion's ``ToShortestSingle``): about 7 significant
    digits, the precision every ARPA reader keeps. The exact float64 values live in the binary model.
    Arrow's C++ cast formats 131 K values in 11 ms; ``"%.10g"`` per value in Python took 270 ms.
    """
    log10 = np.maximum(np.asarray(values, dtype=np.float64) / LN10, NO_PROB).astype(np.float32)
    return pc.cast(pa.array(log10), pa.string())


def write_arpa(model: BackoffModel, path: Path, words: Sequence[str] | None = None, *,
               compresslevel: int = 6, chunk_rows: int = 1 << 17) -> None:
    """Write ``model`` as an ARPA file (gzip-compressed when ``path`` ends in ``.gz``); atomic.

    Streams ``chunk_rows`` n-grams at a time, so a memory-mapped model of any size is written in bounded
    memory: rows ``lo..hi`` of order n are decoded from the distinct prefix rows they refer to in order
    n-1, recursively (``_decode_rows``), and an entry gets a backoff weight when order n+1 has a key with
    it as prefix (``_is_context``). The text does not depend on ``chunk_rows``. gzip level 6 (gzip's own
    default) compresses about 2.8x faster than level 9 for a file 3% larger.
    """
    words = list(words) if words is not None else default_words(model)
    if len(words) != model.vocab_size:
        raise InputError(f"ARPA export needs one word per id: got {len(words)} words for vocab_size "
                         f"{model.vocab_size}")
    if not all(words) or re.search(r"\s", "".join(words)):  # one scan when every word is fine
        bad = [w for w in words if not w or re.search(r"\s", w)]
        raise InputError(f"ARPA words cannot be empty or contain whitespace (e.g. {bad[0]!r}); pass words= "
                         "with escaped token strings")
    word_arr = pa.array(words, pa.string())

    def write(f) -> None:
        out = gzip.GzipFile(filename="", fileobj=f, mode="wb", compresslevel=compresslevel, mtime=0) \
            if str(path).endswith(".gz") else f
        # a large mapped model gives back the pages each chunk read: a 1 GB-corpus 5-gram (9.5 GB of
        # files) otherwise left 5.2 GB of them resident by the end of the text
        mapped = sum(len(m) for m, _ in getattr(model, "_maps", ()))
        release = mapped > (512 << 20)
        written = PageDropper(f)
        out.write(("\\data\\\n" + "".join(f"ngram {n}={m}\n" for n, m in
                                          enumerate(model.num_ngrams(), start=1))).encode())
        for n in range(1, model.order + 1):
            out.write(f"\n\\{n}-grams:\n".encode())
            size = len(model.logprob[n - 1])
            if size == 0:
                out.write(b"\n")
            for lo in range(0, size, chunk_rows):
                text = _section_chunk(model, word_arr, n, lo, min(size, lo + chunk_rows))
                out.write(text)
                written(text.size)  # a large text goes to the disk as it is written (drop_pages)
                if release:  # the pages read through the maps would otherwise stay resident
                    model.release_pages()
        out.write(b"\n\\end\\\n")
        if out is not f:
            out.close()

    atomic_write(Path(path), write)


_TAB, _SPACE, _NEWLINE = (pa.scalar(c, pa.string()) for c in ("\t", " ", "\n"))


def _section_chunk(model: BackoffModel, word_arr: pa.Array, n: int, lo: int, hi: int) -> pa.Buffer:
    """Lines ``lo..hi`` of the order-n section, each ending in a newline, as a UTF-8 buffer.

    One Arrow join per chunk: ``prob TAB w1 SPACE ... wn [TAB backoff] NEWLINE``, the bracket null (and so
    skipped) where the entry is no context of a longer n-gram."""
    mat = _decode_rows(model, n, np.arange(lo, hi), contiguous=True)
    columns = [_fmt(model.logprob[n - 1][lo:hi]), _TAB]
    for j in range(n):
        columns += [pc.take(word_arr, pa.array(mat[:, j])), _SPACE]
    columns.pop()
    if n < model.order:
        valid = pa.py_buffer(np.packbits(_is_context(model, n, lo, hi), bitorder="little"))
        bo = _fmt(model.logbackoff[n - 1][lo:hi])
        tabs = pa.StringArray.from_buffers(hi - lo, pa.py_buffer(np.arange(hi - lo + 1, dtype=np.int32)),
                                           pa.py_buffer(b"\t" * (hi - lo)), valid)
        columns += [tabs, pa.StringArray.from_buffers(hi - lo, bo.buffers()[1], bo.buffers()[2], valid, offset=bo.offset)]
    columns.append(_NEWLINE)
    # the string array's data buffer is then the section's text itself
    text = pc.binary_join_element_wise(*columns, pa.scalar("", pa.string()), null_handling="skip")
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks()
    offsets = np.frombuffer(text.buffers()[1], dtype=np.int32)[text.offset:text.offset + len(text) + 1]
    return text.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


def _decode_rows(model: BackoffModel, n: int, rows: np.ndarray, contiguous: bool = False) -> np.ndarray:
    """``(len(rows), n)`` ids of the order-n entries ``rows`` (sorted), reading only what they refer to.

    Prefix rows of sorted keys are non-decreasing, so the distinct prefixes of a chunk are a sorted set no
    larger than the chunk: decoding them in order n-1 recurses with bounded memory at every order.
    """
    if n == 1:
        return rows[:, None]
    keys = model.keys[n - 1]
    k = np.asarray(keys[rows[0]:rows[-1] + 1] if contiguous and rows.size else np.take(keys, rows))
    prefix, word = np.divmod(k, model.vocab_size)
    first = np.ones(prefix.size, dtype=bool)
    first[1:] = prefix[1:] != prefix[:-1]
    upper = _decode_rows(model, n - 1, prefix[first])
    return np.hstack([upper[np.cumsum(first) - 1], word[:, None]])


def _is_context(model: BackoffModel, n: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """Which order-n entries ``lo..hi`` are the prefix of at least one order n+1 entry."""
    hi = len(model.keys[n - 1]) if hi is None else hi
    keys = model.keys[n]
    V = model.vocab_size
    a, b = np.searchsorted(keys, [lo * V, hi * V])
    prefixes = np.asarray(keys[a:b]) // V - lo
    return np.bincount(prefixes, minlength=hi - lo) > 0


def read_arpa(path: Path, name: str = "arpa") -> tuple[BackoffModel, list[str]]:
    """Load an ARPA file into a ``BackoffModel``; ids follow the order of the unigram section.

    Parsing is vectorized with pyarrow compute (split, cast, dictionary lookup), not a loop per line.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"ARPA file {path} does not exist; estimate one with `arpipe ngram estimate`") from None
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    heads = list(re.finditer(r"^\\(\d+)-grams:[ \t]*$", text, flags=re.M))
    if not heads or heads[0].group(1) != "1":
        raise InputError(f"{path} is not an ARPA file (no \\1-grams: section)")
    sections = []
    for i, head in enumerate(heads):
        stop = heads[i + 1].start() if i + 1 < len(heads) else text.find("\\end\\", head.end())
        body = text[head.end():stop if stop >= 0 else len(text)]
        sections.append([line for line in body.split("\n") if line.strip()])
    order = len(sections)
    if [int(h.group(1)) for h in heads] != list(range(1, order + 1)):
        raise InputError(f"{path}: n-gram sections are not 1..N in order")
    words = [line.split()[1] if len(line.split()) > 1 else "" for line in sections[0]]
    index = {w: i for i, w in enumerate(words)}
    for special in ("<s>", "</s>"):
        if special not in index:
            raise InputError(f"{path} has no {special} unigram; it is not a sentence-level ARPA model")
    V = len(words)
    vocab = pa.array(words)
    keys, logprob, logbackoff = [np.arange(V, dtype=np.int64)], [], []
    for n in range(1, order + 1):
        mat, prob, bo = _parse_section(sections[n - 1], n, vocab, path)
        if n == 1:
            order_idx = np.arange(V)
        else:
            prefix = locate(tuple(keys), V, mat[:, :-1])
            if np.any(prefix < 0):
                raise InputError(f"{path}: some {n}-grams have no {n - 1}-gram context entry")
            k = prefix * V + mat[:, -1]
            order_idx = np.argsort(k, kind="stable")
            keys.append(k[order_idx])
        logprob.append(np.where(prob <= NO_PROB, -np.inf, prob * LN10)[order_idx])
        logbackoff.append((bo * LN10)[order_idx])
    model = BackoffModel(name, order, V, index["<s>"], index["</s>"], tuple(keys), tuple(logprob),
                         tuple(logbackoff), index.get("<unk>"))
    return model, words


def _parse_section(lines: list[str], n: int, vocab: pa.Array, path: Path):
    """``(m, n)`` ids, log10 probabilities and log10 backoffs (0 where absent) of one section."""
    # A trailing "\t0" gives lines without a backoff a zero one, and leaves field 2 alone otherwise.
    fields = pc.split_pattern(pc.binary_join_element_wise(pa.array(lines, pa.string()), "\t0", ""), "\t")
    sizes = pc.list_value_length(fields).to_numpy()
    if np.any((sizes < 3) | (sizes > 4)):
        bad = lines[int(np.flatnonzero((sizes < 3) | (sizes > 4))[0])]
        raise InputError(f"{path}: malformed {n}-gram line {bad!r}")
    try:
        prob = pc.cast(pc.list_element(fields, 0), pa.float64()).to_numpy(zero_copy_only=False)
        bo = pc.cast(pc.list_element(fields, 2), pa.float64()).to_numpy(zero_copy_only=False)
    except pa.ArrowInvalid as exc:
        raise InputError(f"{path}: non-numeric value in the {n}-gram section ({exc})") from None
    tokens = pc.split_pattern(pc.utf8_trim_whitespace(pc.list_element(fields, 1)), " ")
    if np.any(pc.list_value_length(tokens).to_numpy() != n):
        raise InputError(f"{path}: a line in the {n}-gram section does not have {n} words")
    ids = pc.index_in(pc.list_flatten(tokens), value_set=vocab)
    if ids.null_count:
        raise InputError(f"{path}: a {n}-gram uses a word missing from the unigrams")
    return ids.to_numpy().astype(np.int64).reshape(-1, n), prob, bo
