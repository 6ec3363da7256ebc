"""Stage contract: keyed output directories, manifests written last, atomic commit.

A stage's output lives in ``<work_dir>/<stage>/<key>/`` where

    key = sha256(stage name, the config section it reads, the digests of its upstream outputs,
                 the digest of the library code it runs, arcore version)[:16]

so equal inputs and settings map to the same directory and anything that changes the result changes the
key. The directory is built under ``.partial-<key>`` and renamed into place only after ``manifest.json``
(files with sha256 and size, record counts, metrics, resolved config, upstream digests, timings) is
written; a directory without a complete manifest is never treated as done. ``LATEST`` in the stage
folder names the key most recently committed, for ``arpipe stage NAME`` to find upstream outputs.

An output's *digest* covers file names and contents only (not timings), so a forced recompute with the
same result leaves downstream keys unchanged.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

from arcore import __version__
from arcore.errors import StageError
from arcore.io import DigestCache, atomic_write_json, atomic_write_text, digest_strings, fsync_dir, sha256_file

MANIFEST = "manifest.json"
LATEST = "LATEST"
KEY_LEN = 16

# progress(done, total): a stage calls it as it goes; total may be None when unknown.
Progress = Optional[Callable[[int, Optional[int]], None]]


@dataclass(frozen=True)
class StageOutput:
    """What an ``arcore`` stage function returns after writing its files into ``out_dir``.

    metrics: numbers worth plotting (logged to MLflow as metrics).
    records: counts of what was written (documents, tokens, n-grams...), kept in the manifest.
    artifacts: file names inside ``out_dir`` small enough to log to MLflow as artifacts.
    """

    metrics: Mapping[str, float] = field(default_factory=dict)
    records: Mapping[str, int] = field(default_factory=dict)
    artifacts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    stage: str
    key: str
    digest: str
    files: Mapping[str, Mapping[str, Any]]
    records: Mapping[str, int]
    metrics: Mapping[str, float]
    artifacts: tuple[str, ...]
    config: Mapping[str, Any]
    upstream: Mapping[str, str]
    version: str
    started: float
    seconds: float
    produced_by: Mapping[str, Optional[str]]

    @classmethod
    def read(cls, path: Path) -> "Manifest":
        data = json.loads(Path(path).read_text())
        data["artifacts"] = tuple(data.get("artifacts", ()))
        return cls(**data)


def stage_key(stage: str, config: Mapping[str, Any], upstream: Mapping[str, str], version: str = __version__) -> str:
    """>>> stage_key("ingest", {"unit": "line"}, {"inputs": "ab"}, "0.1.0") == stage_key("ingest", {"unit": "line"}, {"inputs": "ab"}, "0.1.0")
    True
    """
    payload = json.dumps(
        {"stage": stage, "config": config, "upstream": dict(sorted(upstream.items())), "version": version},
        sort_keys=True,
        default=str,
    )
    return digest_strings([payload])[:KEY_LEN]


def output_digest(files: Mapping[str, Mapping[str, Any]]) -> str:
    return digest_strings(f"{name}\0{meta['sha256']}" for name, meta in sorted(files.items()))


@dataclass(frozen=True)
class StageDir:
    """The output location of one stage for one key."""

    work_dir: Path
    stage: str
    key: str

    @property
    def root(self) -> Path:
        return Path(self.work_dir) / self.stage

    @property
    def path(self) -> Path:
        return self.root / self.key

    @property
    def partial(self) -> Path:
        return self.root / f".partial-{self.key}"

    def manifest(self) -> Optional[Manifest]:
        """The manifest if this output is complete and intact enough to trust, else None."""
        path = self.path / MANIFEST
        if not path.is_file():
            return None
        try:
            m = Manifest.read(path)
        except (ValueError, TypeError, KeyError):
            return None
        if m.key != self.key or any(not (self.path / name).is_file() for name in m.files):
            return None
        return m

    def is_complete(self) -> bool:
        return self.manifest() is not None


def latest(work_dir: Path, stage: str) -> Optional[StageDir]:
    """The most recently committed complete output of ``stage``, if any."""
    pointer = Path(work_dir) / stage / LATEST
    if not pointer.is_file():
        return None
    d = StageDir(Path(work_dir), stage, pointer.read_text().strip())
    return d if d.is_complete() else None


def config_differences(built: Mapping[str, Any], wanted: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Settings that differ between two config sections, flattened, as ``key: built -> wanted``.

    ``{"vocab_size": 4096, "kind": "bpe"}`` vs ``{"vocab_size": 800, "kind": "bpe"}``
    -> ``["vocab_size: 4096 -> 800"]``.
    """
    out = []
    for k in sorted(set(built) | set(wanted)):
        a, b = built.get(k), wanted.get(k)
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def require_latest(work_dir: Path, stage: str) -> StageDir:
    d = latest(work_dir, stage)
    if d is None:
        raise StageError(f"no complete output of stage {stage!r} in {work_dir}; run `arpipe run` first")
    return d


DIGESTS = ".digests.json"  # in the work dir: sha256 of files by (path, size, mtime), arcore.io.DigestCache


def damaged_file(d: StageDir, m: Manifest, cache: Optional[DigestCache] = None) -> Optional[str]:
    """Why a complete output cannot be trusted, naming the first file whose size or sha256 differs from
    its manifest, or None when every file matches. Cheap on reuse: ``build`` records each committed
    file's digest by (path, size, mtime) in the work dir's digest cache, so an untouched file costs a
    ``stat``; a file changed since (a write, a restore from a backup) is hashed again."""
    cache = cache or DigestCache(Path(d.work_dir) / DIGESTS)
    try:
        for name, meta in sorted(m.files.items()):
            path = d.path / name
            try:
                size = path.stat().st_size
            except OSError:
                return f"{name} is missing"
            if size != meta["bytes"]:
                return f"{name} has {size} bytes, its manifest says {meta['bytes']}"
            if cache.sha256(path) != meta["sha256"]:
                return f"{name} does not match the sha256 in its manifest"
        return None
    finally:
        cache.save()


def _remember_digests(d: StageDir, files: Mapping[str, Mapping[str, Any]]) -> None:
    cache = DigestCache(Path(d.work_dir) / DIGESTS)
    for name, meta in files.items():
        path = d.path / name
        st = path.stat()
        cache.entries[str(path.resolve())] = [st.st_size, st.st_mtime_ns, meta["sha256"]]
    cache.dirty = True
    cache.save()


def is_locked(path: Path) -> bool:
    """Whether some open file holds an flock on ``path`` (which exists): an exclusive try fails."""
    if not Path(path).exists():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def wait_for_writer(d: StageDir, notice: Optional[Callable[[], None]] = None) -> bool:
    """If another process is building ``d`` (holds its ``.lock-<key>``), block until it ends; True if
    it waited (``notice`` is called once first). Two runs of one config then share one build: the
    second reuses what the first committed instead of failing or building it again."""
    lock = d.root / f".lock-{d.key}"
    if not is_locked(lock):
        return False
    if notice is not None:
        notice()
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # granted when the writer's build ends (commit, failure or kill)
        fcntl.flock(f, fcntl.LOCK_UN)
    return True


@contextmanager
def _lock(d: StageDir) -> Iterator[None]:
    d.root.mkdir(parents=True, exist_ok=True)
    with open(d.root / f".lock-{d.key}", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StageError(
                f"stage {d.stage!r} output {d.key} is being written by another process; wait for it"
            ) from None
        yield


def build(
    d: StageDir,
    compute: Callable[[Path], StageOutput],
    *,
    config: Mapping[str, Any],
    upstream: Mapping[str, str],
    produced_by: Mapping[str, Optional[str]],
    resumable: bool = False,
) -> Manifest:
    """Run ``compute(partial_dir)`` and commit its files with a manifest, atomically.

    A leftover ``.partial-<key>`` from a killed run is wiped first unless the stage is ``resumable``
    (then ``compute`` finds its earlier work there and continues). An existing complete output for the
    key (a forced rerun) is replaced only after the new one is complete.
    """
    with _lock(d):
        if d.partial.exists() and not resumable:
            shutil.rmtree(d.partial)
        d.partial.mkdir(parents=True, exist_ok=True)
        started = time.time()
        t0 = time.perf_counter()
        out = compute(d.partial)
        seconds = time.perf_counter() - t0
        files = {
            rel: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in sorted(d.partial.rglob("*"))
            if p.is_file()
            and (rel := p.relative_to(d.partial).as_posix()) != MANIFEST
            and not any(part.startswith(".") for part in p.relative_to(d.partial).parts)
        }
        manifest = Manifest(
            stage=d.stage, key=d.key, digest=output_digest(files), files=files,
            records=dict(out.records), metrics={k: float(v) for k, v in out.metrics.items()},
            artifacts=tuple(out.artifacts), config=dict(config), upstream=dict(upstream),
            version=__version__, started=started, seconds=seconds, produced_by=dict(produced_by),
        )
        atomic_write_json(d.partial / MANIFEST, manifest.__dict__)
        fsync_dir(d.partial)
        _swap_into_place(d)
        atomic_write_text(d.root / LATEST, d.key + "\n")
        _remember_digests(d, files)
        return manifest


def _swap_into_place(d: StageDir) -> None:
    trash = d.root / f".trash-{d.key}-{os.getpid()}"
    if d.path.exists():
        os.replace(d.path, trash)
    os.replace(d.partial, d.path)
    fsync_dir(d.root)
    if trash.exists():
        shutil.rmtree(trash)
