"""Retention: which stage outputs and Prefect results the last N runs still need, and removing the rest.

In: a work dir (``<work_dir>/<stage>/<key>/`` outputs, ``<work_dir>/runs/*.json`` run records written by
``arcore.runs.record_run``) and optionally Prefect's result storage folder (files named
``arpipe-<stage>-<key>-<digest16>``: arpipe persists none since issue 17, older versions did).
Out: ``plan_gc`` returns a ``GcPlan`` (what would be removed, bytes freed, what is kept and why) without
touching anything; ``apply_gc`` carries it out and returns a ``GcReport``.

An output is kept when any of these holds (the reason is recorded with it):

- ``run``: a stage of one of the last ``keep`` run records used it (matched by stage and key, so a moved
  work dir still matches);
- ``latest``: the stage's ``LATEST`` pointer names it, so ``arpipe stage NAME`` still finds its upstream;
- ``upstream``: a kept output was built from it (its manifest lists this output's digest), so a run that
  recomputed one stage keeps the inputs it read;
- ``newer``: it was committed after the newest run record, so it may belong to a run still in progress
  (with no run record at all, every complete output is kept: nothing says it is unneeded);
- ``in use``: its ``.lock-<key>`` is held by a process building that key.

And nothing is removed while a pipeline run is in progress in the work dir: every run holds
``<work_dir>/.run.lock`` shared for its whole length (``hold_for_run``) and ``gc`` needs it exclusively
(``exclusive_for_gc``), so a run never loses a cached output it is about to read (issue 17); ``gc``
refuses with one line instead, and a run starting while ``gc`` works waits for it.

Removed: other key directories, ``.partial-<key>`` leftovers of killed builds (never one whose lock is
held; a resumable stage restarts that build from scratch), orphan ``.trash-*`` directories, lock files
with nothing left to guard, and Prefect result files whose output is removed, recomputed (stale digest)
or absent from this work dir. Losing a Prefect result costs nothing but a manifest read: the stage task
checks the manifest itself. Run records and anything with a name this module does not recognise stay.

Example (three runs A, B, C; B changed the tokenizer, C the n-gram order; ``keep=1``)::

    ingest/k1      kept: run C              tokenizer/k2  kept: run C
    tokenizer/k5   kept: latest (B's)       shards/k6     kept: latest (B's)
    ngram/k4       removed (A's)            ngram/k7      removed (B's)
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

from arcore.errors import ConfigError, StageError
from arcore.runs import RUNS_DIR, read_runs
from arcore.stage import LATEST, MANIFEST, KEY_LEN, StageDir

KEY_RE = re.compile(rf"^[0-9a-f]{{{KEY_LEN}}}$")
PARTIAL_RE = re.compile(rf"^\.partial-([0-9a-f]{{{KEY_LEN}}})$")
TRASH_RE = re.compile(rf"^\.trash-([0-9a-f]{{{KEY_LEN}}})-.+$")
LOCK_RE = re.compile(rf"^\.lock-([0-9a-f]{{{KEY_LEN}}})$")
FLOCK_RE = re.compile(r"FLOCK\s+\S+\s+\S+\s+\d+\s+[0-9a-f]+:[0-9a-f]+:(\d+)\s")
RESULT_RE = re.compile(rf"^arpipe-(?P<stage>.+)-(?P<key>[0-9a-f]{{{KEY_LEN}}})-(?P<digest>[0-9a-f]{{16}})$")


@dataclass(frozen=True)
class Removal:
    path: Path
    kind: str  # "output" | "partial" | "trash" | "lock" | "prefect-result"
    bytes: int
    reason: str


@dataclass(frozen=True)
class Kept:
    path: Path
    reason: str


@dataclass(frozen=True)
class GcPlan:
    work_dir: Path
    keep: int
    runs: tuple[str, ...]  # the run record files whose outputs are kept, oldest first
    remove: tuple[Removal, ...]
    kept: tuple[Kept, ...]

    @property
    def bytes_freed(self) -> int:
        return sum(r.bytes for r in self.remove)

    def lines(self) -> list[str]:
        """Human-readable plan: one line per kept output and per removal, then a total."""
        out = [f"keep   {k.path}  ({k.reason})" for k in self.kept]
        out += [f"remove {r.path}  ({r.kind}: {r.reason}, {human_bytes(r.bytes)})" for r in self.remove]
        out.append(f"{len(self.remove)} to remove, {human_bytes(self.bytes_freed)} freed; "
                   f"{len(self.kept)} outputs kept for the last {len(self.runs)} run(s)")
        return out


@dataclass(frozen=True)
class GcReport:
    removed: tuple[Removal, ...]
    skipped: tuple[tuple[Removal, str], ...]  # planned removals left alone at apply time, and why

    @property
    def bytes_freed(self) -> int:
        return sum(r.bytes for r in self.removed)


RUN_LOCK = ".run.lock"


@contextmanager
def hold_for_run(work_dir: Path) -> Iterator[None]:
    """Hold ``<work_dir>/.run.lock`` shared while a pipeline run is in progress (waits while gc works)."""
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(work_dir) / RUN_LOCK, "a") as f:
        fcntl.flock(f, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


SETUP_LOCK = ".setup.lock"
_setup_held: list = []  # the open lock file while this process holds the set-up lock


def hold_setup(work_dir: Path) -> None:
    """Take ``<work_dir>/.setup.lock`` exclusively (waiting for another run's set-up to end), until
    ``release_setup``: a run's set-up (the Prefect home's database migrations when its temporary server
    starts, the MLflow store's tables on the first request) is not safe to run twice at once on one
    fresh work dir (SQLite errors from both), so runs pass through it one at a time."""
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    f = open(Path(work_dir) / SETUP_LOCK, "a")
    fcntl.flock(f, fcntl.LOCK_EX)
    _setup_held.append(f)


def release_setup() -> None:
    """End this process's set-up (no-op when it holds none: a deployment's run, a flow called directly)."""
    while _setup_held:
        f = _setup_held.pop()
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


@contextmanager
def exclusive_for_gc(work_dir: Path) -> Iterator[None]:
    """Hold ``<work_dir>/.run.lock`` exclusively for a gc, or refuse at once while a run holds it."""
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(work_dir) / RUN_LOCK, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StageError(f"a pipeline run is in progress in {Path(work_dir).resolve()}; gc removes "
                                 f"nothing while one runs (it may read any output): rerun gc when it ends") from None
            raise
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def plan_gc(work_dir: Path, keep: int, prefect_storage: Optional[Path] = None) -> GcPlan:
    """What to remove so that only the last ``keep`` runs' outputs (and the rules above) remain."""
    if keep < 1:
        raise ConfigError(f"gc --keep {keep}: keep at least 1 run (the last run's outputs make the next one cached)")
    work_dir = Path(work_dir).resolve()
    records = read_runs(work_dir, last=keep)
    roots = _stage_roots(work_dir)

    outputs: dict[tuple[str, str], Optional[str]] = {}  # (stage, key) -> digest (None: incomplete)
    for stage, root in roots.items():
        for p in root.iterdir():
            if p.is_dir() and KEY_RE.match(p.name):
                m = StageDir(work_dir, stage, p.name).manifest()
                outputs[(stage, p.name)] = m.digest if m else None

    reasons = _reasons_to_keep(work_dir, roots, outputs, records)
    remove: list[Removal] = []
    busy: list[Kept] = []
    for (stage, key), digest in sorted(outputs.items()):
        if (stage, key) not in reasons:
            why = "not used by the last runs" if digest else "incomplete output not used by the last runs"
            remove.append(Removal(roots[stage] / key, "output", _size(roots[stage] / key), why))
    for stage, root in sorted(roots.items()):
        gone, held = _leftovers(root)
        remove += gone
        busy += held
    if prefect_storage is not None:
        remove += _prefect_results(Path(prefect_storage), outputs, reasons)

    kept = tuple(Kept(roots[s] / k, why) for (s, k), why in sorted(reasons.items())) + tuple(busy)
    return GcPlan(work_dir=work_dir, keep=keep, runs=tuple(Path(r["path"]).name for r in records),
                  remove=tuple(remove), kept=kept)


def apply_gc(plan: GcPlan) -> GcReport:
    """Remove what ``plan`` lists, re-checking each stage path under its lock (a build may have started)."""
    removed, skipped = [], []
    for r in plan.remove:
        why_not = _remove(r)
        if why_not:
            skipped.append((r, why_not))
        else:
            removed.append(r)
    return GcReport(removed=tuple(removed), skipped=tuple(skipped))


def _remove(r: Removal) -> Optional[str]:
    if not r.path.exists():
        return "already gone"
    if r.kind == "prefect-result":
        r.path.unlink(missing_ok=True)
        return None
    root, key = r.path.parent, _key_of(r.path.name)
    with _try_lock(root, key) as locked:
        if not locked:
            return "a process is writing this key"
        if r.kind == "output" and _read_latest(root) == key:
            return "became the stage's LATEST output"
        if r.kind == "lock":
            r.path.unlink(missing_ok=True)
            return None
        # rename first, so the output disappears at once for readers; a crash leaves only a .trash-*
        target = r.path
        if r.kind != "trash":
            target = root / f".trash-{key}-gc{os.getpid()}"
            os.replace(r.path, target)
        shutil.rmtree(target, ignore_errors=True)
        if not (root / key).exists() and not (root / f".partial-{key}").exists():
            (root / f".lock-{key}").unlink(missing_ok=True)
    return None


def _reasons_to_keep(work_dir: Path, roots: dict[str, Path], outputs: dict, records: list[dict]) -> dict:
    """(stage, key) -> why it stays, by the rules of the module docstring, in that order."""
    reasons: dict[tuple[str, str], str] = {}
    for rec in records:
        for stage, info in rec.get("stages", {}).items():
            key = Path(info.get("output_dir", "")).name  # by key, so a moved work dir still matches
            if (stage, key) in outputs:
                reasons.setdefault((stage, key), f"run {Path(rec['path']).name}")
    for stage, root in roots.items():
        if (stage, key := _read_latest(root)) in outputs:
            reasons.setdefault((stage, key), "latest")
    newest_record = _newest_record_mtime(work_dir)
    for (stage, key) in outputs:
        manifest = roots[stage] / key / MANIFEST
        if (stage, key) in reasons:
            continue
        if _lock_held(roots[stage], key):
            reasons[(stage, key)] = "in use: being written"
        elif newest_record is None:
            reasons[(stage, key)] = "no run record yet: nothing says it is unneeded"
        elif manifest.is_file() and manifest.stat().st_mtime > newest_record:
            reasons[(stage, key)] = "newer than the last run record: a run may be in progress"
    _add_upstream(work_dir, outputs, reasons)
    return reasons


def _add_upstream(work_dir: Path, outputs: dict, reasons: dict) -> None:
    """Keep every output whose digest a kept output's manifest lists as an upstream (to a fixpoint)."""
    by_digest: dict[tuple[str, str], list[str]] = {}
    for (stage, key), digest in outputs.items():
        if digest:
            by_digest.setdefault((stage, digest), []).append(key)
    todo = list(reasons)
    while todo:
        stage, key = todo.pop()
        m = StageDir(work_dir, stage, key).manifest()
        for up_stage, up_digest in (m.upstream.items() if m else ()):
            for up_key in by_digest.get((up_stage, up_digest), ()):
                if (up_stage, up_key) not in reasons:
                    reasons[(up_stage, up_key)] = f"upstream of {stage}/{key}"
                    todo.append((up_stage, up_key))


def _leftovers(root: Path) -> tuple[list[Removal], list[Kept]]:
    """Partial builds and trash no process is working on (its key's lock is free), stray lock files."""
    out, busy = [], []
    for p in sorted(root.iterdir()):
        m = (PARTIAL_RE.match(p.name) or TRASH_RE.match(p.name)) if p.is_dir() else None
        if m and _lock_held(root, m.group(1)):
            busy.append(Kept(p, "in progress: its lock is held"))
        elif m and p.name.startswith(".partial-"):
            out.append(Removal(p, "partial", _size(p), "leftover of an interrupted build"))
        elif m:
            out.append(Removal(p, "trash", _size(p), "orphan left by an interrupted commit"))
    for p in sorted(root.iterdir()):
        m = LOCK_RE.match(p.name)
        # a lock whose key dir or partial is removed goes with it (see _remove)
        if m and p.is_file() and not (root / m.group(1)).exists() and not (root / f".partial-{m.group(1)}").exists() \
                and not _lock_held(root, m.group(1)):
            out.append(Removal(p, "lock", 0, "lock file with nothing left to guard"))
    return out, busy


def _prefect_results(storage: Path, outputs: dict, reasons: dict) -> list[Removal]:
    if not storage.is_dir():
        return []
    out = []
    for p in sorted(storage.iterdir()):
        m = RESULT_RE.match(p.name)
        if not m or not p.is_file():
            continue
        ident = (m.group("stage"), m.group("key"))
        if ident not in outputs:
            why = "no output with this key in this work dir"
        elif ident not in reasons:
            why = "its output is removed"
        elif (outputs[ident] or "")[:16] != m.group("digest"):
            why = "stale: the output was recomputed with a different digest"
        else:
            continue
        out.append(Removal(p, "prefect-result", p.stat().st_size, why))
    return out


def _stage_roots(work_dir: Path) -> dict[str, Path]:
    """Folders of ``work_dir`` that hold stage outputs: a LATEST pointer or a key/partial/lock entry."""
    roots = {}
    if not work_dir.is_dir():
        return roots
    for p in sorted(work_dir.iterdir()):
        if not p.is_dir() or p.name == RUNS_DIR or p.name.startswith("."):
            continue
        names = [c.name for c in p.iterdir()]
        if LATEST in names or any(
            (KEY_RE.match(n) and (p / n / MANIFEST).exists()) or PARTIAL_RE.match(n) or LOCK_RE.match(n)
            for n in names
        ):
            roots[p.name] = p
    return roots


def _newest_record_mtime(work_dir: Path) -> Optional[float]:
    records = list((work_dir / RUNS_DIR).glob("*.json"))
    return max((p.stat().st_mtime for p in records), default=None)


def _read_latest(root: Path) -> str:
    try:
        return (root / LATEST).read_text().strip()
    except OSError:
        return ""


def _key_of(name: str) -> str:
    for rx in (PARTIAL_RE, TRASH_RE, LOCK_RE):
        if m := rx.match(name):
            return m.group(1)
    return name


@contextmanager
def _try_lock(root: Path, key: str) -> Iterator[bool]:
    """Hold ``.lock-<key>`` (the lock ``arcore.stage.build`` takes) if no one else does."""
    with open(root / f".lock-{key}", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                yield False
                return
            raise
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _lock_held(root: Path, key: str) -> bool:
    """Is ``.lock-<key>`` held by some process? Read from /proc/locks, so asking never takes the lock
    (taking it, even for an instant, could make a build starting right then fail). Matched on the inode
    only: a false match keeps something, never removes it."""
    lock = root / f".lock-{key}"
    try:
        ino = lock.stat().st_ino
    except FileNotFoundError:
        return False
    try:
        table = Path("/proc/locks").read_text()
    except OSError:  # not Linux: ask by trying
        with _try_lock(root, key) as locked:
            return not locked
    return any(m.group(1) == str(ino) for m in FLOCK_RE.finditer(table))


def _size(path: Path) -> int:
    if path.is_file():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def plan_to_json(plan: GcPlan) -> str:
    """The plan as JSON (for ``arpipe gc --json``)."""
    return json.dumps({
        "work_dir": str(plan.work_dir), "keep": plan.keep, "runs": list(plan.runs),
        "bytes_freed": plan.bytes_freed,
        "remove": [{"path": str(r.path), "kind": r.kind, "bytes": r.bytes, "reason": r.reason} for r in plan.remove],
        "kept": [{"path": str(k.path), "reason": k.reason} for k in plan.kept],
    }, indent=2)
