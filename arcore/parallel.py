"""Mappers: how a stage's map step is run, in order, in this process or on a cluster.

A ``Mapper`` has the shape of the builtin ``map`` restricted to one iterable: ``mapper(fn, items)``
returns an iterator over ``fn(item)`` in the order of ``items``. Stages that split their work into pure,
independent pieces (shard encoding: one batch of documents; n-gram counting: one chunk of whole
documents) take an optional mapper; ``None`` means the stage's own in-process loop. Because each piece is
pure and the reduce consumes results in order, every mapper gives byte-identical output.

Contract for ``fn`` and ``items``: ``fn`` is a module-level function (or a ``functools.partial`` of one)
and items are plain data (numpy arrays, strings, dataclasses), so both pickle to another process. A
mapper may run several pieces at once but must yield in order and hold a bounded number in flight.

Example::

    serial_map(len, ["to be", "or"])                 -> iterator over [5, 2]
    with ProcessPoolExecutor(2) as pool:
        count_ngrams(ids, 3, bos, eos, mapper=pool.map)   # same counts as mapper=None

The pipeline's Dask mapper (prefect-dask, one Prefect task per piece) lives in ``tasks/fanout.py``:
this library never imports prefect.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar("T")
R = TypeVar("R")

Mapper = Callable[[Callable[[T], R], Iterable[T]], Iterator[R]]
OptionalMapper = Optional[Mapper]


def serial_map(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """The reference mapper: one piece after another, here."""
    return map(fn, items)
