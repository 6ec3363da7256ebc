"""code_digest: which library source a stage's output depends on, as one digest for its key.

Input: the name of a module (a stage's task, e.g. ``tasks.shards``). Output: the sorted list of ``arcore``
source files it imports, directly or through other ``arcore`` modules (``code_files``), and a digest of
their paths and contents (``code_digest``). The stage key includes that digest, so editing the code a
stage runs (a bug fix in counting, a new shard layout) recomputes that stage and what follows, while an
edit elsewhere (the RNN trainer) leaves the n-gram outputs cached. DVC keys its stages on code files the
same way; here the files are found, not declared.

How imports are found: every ``import arcore.x`` and ``from arcore.x import y`` anywhere in a file (inside
functions too: lazy imports are real dependencies) is followed; ``from arcore.pkg import y`` follows the
module ``y`` is defined in, through the package's re-exports. ``arcore.config`` is not followed: it
gathers every stage's settings class, and a stage's own settings enter its key through its config
section. Package ``__init__`` files that only re-export are thereby skipped: editing them changes no key.

Conservative by design: any edit to a followed file, comments included, changes the digest.

    code_files("tasks.shards")  ->  [arcore/__init__.py, arcore/errors.py, arcore/io.py, ...,
                                     arcore/shards/build.py, ..., arcore/tokenize/store.py]
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import lru_cache
from pathlib import Path

ROOT_PACKAGE = "arcore"
PACKAGE_DIR = Path(__file__).resolve().parent
NOT_FOLLOWED = frozenset({"arcore.config"})


def code_files(module: str) -> list[Path]:
    """The ``arcore`` source files ``module`` depends on (``module``'s own file when it is in ``arcore``)."""
    seen: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen or name in NOT_FOLLOWED:
            continue
        path = _source(name)
        if path is None:
            continue
        seen[name] = path
        todo.extend(_imports(path, name))
    return sorted(p for n, p in seen.items() if n.split(".")[0] == ROOT_PACKAGE)


@lru_cache(maxsize=None)
def code_digest(module: str) -> str:
    """sha256 over ``code_files(module)``: each file's path inside the package and its bytes.

    Once per process: a long-lived process (``arpipe serve``, a notebook) runs the code it loaded, so the
    keys it computes must not follow edits made on disk after its first key (they would label outputs of
    the old code with the new code's key); a new process sees the edit."""
    h = hashlib.sha256()
    for path in code_files(module):
        h.update(_relative(path).encode() + b"\0" + _file_digest(path, path.stat().st_mtime_ns).encode() + b"\0")
    return h.hexdigest()


def _imports(path: Path, module: str) -> list[str]:
    """The ``arcore`` modules a file's import statements reach. ``from arcore.shards import ShardsConfig``
    reaches ``arcore.shards.config`` (where the package's ``__init__`` re-exports it from), not every
    module the package's ``__init__`` imports."""
    tree = _tree(path)
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for alias in node.names:
                found.extend(_provider(node.module, alias.name))
    return [n for n in found if n.split(".")[0] == ROOT_PACKAGE]


def _provider(module: str, name: str, depth: int = 0) -> list[str]:
    """The module(s) to follow for ``from module import name``."""
    if module.split(".")[0] != ROOT_PACKAGE:
        return []
    if _source(f"{module}.{name}") is not None:  # a submodule
        return [f"{module}.{name}"]
    path = _source(module)
    if path is None or path.name != "__init__.py" or depth > 8:
        return [module]
    for node in _tree(path).body:  # a package re-exporting the name from one of its modules
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            if any((alias.asname or alias.name) == name for alias in node.names):
                original = next(alias.name for alias in node.names if (alias.asname or alias.name) == name)
                return _provider(node.module, original, depth + 1)
    return [module]  # defined in the __init__ itself


def _tree(path: Path) -> ast.Module:
    """The parsed file, parsed again only when it changed (every pipeline run computes every stage's key)."""
    return _parse(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=None)
def _parse(path: Path, mtime_ns: int) -> ast.Module:
    return ast.parse(path.read_bytes(), filename=str(path))


@lru_cache(maxsize=None)
def _source(name: str) -> Path | None:
    """The file of module ``name``; None for a name that is not a module ("arcore.ngram.NGramConfig").
    ``arcore`` modules are looked up on disk, without importing anything."""
    parts = name.split(".")
    if parts[0] == ROOT_PACKAGE:
        base = PACKAGE_DIR.joinpath(*parts[1:])
        for path in (base.with_suffix(".py"), base / "__init__.py"):
            if path.is_file():
                return path
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _relative(path: Path) -> str:
    return path.relative_to(PACKAGE_DIR.parent).as_posix()


@lru_cache(maxsize=None)
def _file_digest(path: Path, mtime_ns: int) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
