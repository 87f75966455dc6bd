"""Compiled trees: a LightGBM booster as native code (lleaves), shipped with the model and loaded with ctypes.

At registration :func:`compile_forest` turns the booster's text into machine code with lleaves (LLVM, through
llvmlite) for the *baseline* CPU of this architecture (``x86-64``, ``generic`` on ARM), so the code runs on any
machine of the same OS and architecture, and links the object into a shared library with the system C compiler
(``$CC``, else ``cc``/``gcc``). The library calls nothing outside itself (no libc, no Python), so the Python
version and ABI do not matter; the platform tag is OS, machine and CPU baseline. The library and a manifest
(tag, tool versions, SHA-256 of the booster text and of the library) go into ``compiled/`` beside the
booster.

At load, :func:`load_forest` uses the library only when every check passes: manifest readable, same tag as this
host, built from this very booster, library bytes unchanged, entry point present, and the same scores as the
booster on probe rows built from the booster's own split thresholds (within :data:`TOLERANCE`). Otherwise it
logs one warning and LightGBM's booster scores; it never raises. Loading needs neither lleaves, llvmlite nor a
compiler, and nothing here imports them until :func:`compile_forest` runs.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from features.errors import PolkuError

logger = logging.getLogger(__name__)

COMPILED_DIR: Final = "compiled"
LIBRARY_FILE: Final = "forest.so"
MANIFEST_FILE: Final = "manifest.json"
FORMAT: Final = "polku-compiled-trees"
FORMAT_VERSION: Final = 1
ENTRY: Final = "forest_root"
SIGNATURE: Final = "void forest_root(const double *rows, double *out, int32 start, int32 end)"
"""lleaves' entry point: scores rows ``start..end-1`` of a C-contiguous float64 matrix into ``out``."""
TOLERANCE: Final = 1e-6
"""Largest accepted difference between compiled and booster scores on the probe rows."""
COMPILE_ENV: Final = "POLKU_COMPILE_TREES"
"""Environment switch read by ``models.packaging.log_polku_model``: ``0``/``false``/``off`` registers without."""
BASELINE_CPU: Final[dict[str, str]] = {"x86_64": "x86-64", "aarch64": "generic"}
"""LLVM CPU per machine: the architecture's baseline, so the code runs on every CPU of that machine type."""
_MACHINE_ALIASES: Final = {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}
_MAX_ROWS_PER_CALL: Final = 2**31 - 1  # the entry point counts rows in int32
_PROBE_ROWS: Final = 64
_ZERO_THRESHOLD: Final = float(np.float32(1e-35))
"""LightGBM's ``kZeroThreshold``: it reads inputs with ``|x| <= 1e-35`` as 0 (splits on zero sit at +/- this)."""
_LINK_TIMEOUT_S: Final = 300

Reference = Callable[[npt.NDArray[np.float64]], npt.ArrayLike]
"""The booster's own prediction (``Booster.predict``) the compiled code must reproduce."""


class CompileError(PolkuError):
    """The trees could not be compiled here (lleaves or a C compiler missing, or the result differs)."""


@dataclass(frozen=True)
class PlatformTag:
    """Where a compiled library runs: operating system, machine and the CPU it was compiled for.

    Attributes:
        system: ``platform.system()`` in lower case (``linux``, ``darwin``).
        machine: normalised machine (``x86_64``, ``aarch64``).
        cpu: LLVM target CPU, the machine's baseline (see :data:`BASELINE_CPU`).
    """

    system: str
    machine: str
    cpu: str

    def __str__(self) -> str:
        return f"{self.system}-{self.machine}-{self.cpu}"

    def as_dict(self) -> dict[str, str]:
        """The tag as written into the manifest."""
        return {"system": self.system, "machine": self.machine, "cpu": self.cpu}


def host_platform() -> PlatformTag:
    """The tag a library compiled on this host gets, and the one a shipped library must carry to be used.

    Raises:
        CompileError: no baseline CPU is known for this machine (no trees are compiled there).
    """
    machine = platform.machine().lower()
    machine = _MACHINE_ALIASES.get(machine, machine)
    cpu = BASELINE_CPU.get(machine)
    if cpu is None:
        raise CompileError(f"no baseline CPU known for machine {machine!r}: one of {', '.join(BASELINE_CPU)}")
    return PlatformTag(platform.system().lower(), machine, cpu)


@dataclass(frozen=True)
class TreeEngine:
    """Which code computes a LightGBM ranker's trees, and why.

    Attributes:
        compiled: True when the compiled library scores, False when LightGBM's booster does.
        shipped: True when the model came with a compiled library (used or not).
        detail: the library's tag and tool, or why the booster scores instead.
    """

    compiled: bool
    shipped: bool
    detail: str

    @property
    def fallback(self) -> bool:
        """True when a shipped library could not be used (platform mismatch, missing or corrupt library)."""
        return self.shipped and not self.compiled

    @property
    def name(self) -> str:
        """``compiled`` or ``booster``."""
        return "compiled" if self.compiled else "booster"


NOT_COMPILED: Final = TreeEngine(compiled=False, shipped=False, detail="no compiled library")


class _Forest:
    """A loaded library's entry point, called on C-contiguous float64 rows (thread-safe; releases the GIL)."""

    def __init__(self, library: ctypes.CDLL, n_features: int) -> None:
        fn = getattr(library, ENTRY)
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32]
        fn.restype = None
        self._library = library  # keeps the library mapped as long as the entry point is used
        self._fn = fn
        self.n_features = n_features

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        rows = np.ascontiguousarray(X, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"compiled trees: expected shape (n, {self.n_features}), got {rows.shape}")
        # LightGBM reads |x| <= 1e-35 as 0; the compiled comparisons agree with that everywhere except at
        # x == -1e-35 exactly (the threshold of "x < 0" splits), so that one value is read as 0 here too.
        at_zero_split = rows == -_ZERO_THRESHOLD
        if at_zero_split.any():
            rows = np.where(at_zero_split, 0.0, rows)
        n = rows.shape[0]
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, _MAX_ROWS_PER_CALL):
            self._fn(rows.ctypes.data, out.ctypes.data, start, min(start + _MAX_ROWS_PER_CALL, n))
        return out


class CompiledTrees:
    """A compiled library of one booster: its files and, when usable here, the loaded entry point.

    Use :func:`compile_forest` or :func:`load_forest` to make one.

    Args:
        files: the files of the ``compiled/`` directory by name (kept to be written again, used or not).
        engine: whether the library scores here, and why (not).
        forest: the loaded entry point, None when the booster must score.
    """

    def __init__(self, files: Mapping[str, bytes], engine: TreeEngine, forest: _Forest | None = None) -> None:
        self.files = dict(files)
        self.engine = engine
        self._forest = forest

    @property
    def usable(self) -> bool:
        """True when :meth:`predict` may be called."""
        return self._forest is not None

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Scores of rows ``X`` (``(n, n_features)``), equal to the booster's within :data:`TOLERANCE`.

        Raises:
            CompileError: the library is not usable here (check :attr:`usable` first).
        """
        if self._forest is None:
            raise CompileError(f"compiled trees are not usable here ({self.engine.detail})")
        return self._forest.predict(X)

    def save(self, directory: str | Path) -> Path:
        """Write the library and its manifest into ``directory`` (created if missing).

        Returns:
            The directory written.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (path / name).write_bytes(data)
        return path


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None


def should_compile(value: str | None = None) -> bool:
    """Whether registration compiles the trees: :data:`COMPILE_ENV` unless ``0``, ``false``, ``no`` or ``off``."""
    raw = os.environ.get(COMPILE_ENV, "1") if value is None else value
    return raw.strip().lower() not in ("0", "false", "no", "off")


# -- probe rows ---------------------------------------------------------------------------------------------------
_SPLIT_FEATURE = re.compile(r"^split_feature=(.*)$", re.MULTILINE)
_THRESHOLD = re.compile(r"^threshold=(.*)$", re.MULTILINE)


def probe_rows(model_text: str, n_features: int, n_rows: int = _PROBE_ROWS, seed: int = 0) -> npt.NDArray[np.float64]:
    """Rows that walk many paths of the trees: per feature, split thresholds and their neighbours, some NaN.

    Args:
        model_text: the booster in LightGBM's text format.
        n_features: columns of the rows.
        n_rows: number of rows.
        seed: random seed (fixed, so a check is repeatable).

    Returns:
        A C-contiguous float64 matrix ``(n_rows, n_features)``.
    """
    thresholds: list[list[float]] = [[] for _ in range(n_features)]
    for feats, values in zip(_SPLIT_FEATURE.findall(model_text), _THRESHOLD.findall(model_text), strict=False):
        for f, t in zip(feats.split(), values.split(), strict=False):
            j = int(f)
            if 0 <= j < n_features:
                thresholds[j].append(float(t))
    rng = np.random.default_rng(seed)
    rows = rng.normal(0.0, 1.0, size=(n_rows, n_features))
    for j, values in enumerate(thresholds):
        if not values:
            continue
        picked = np.asarray(values)[rng.integers(0, len(values), n_rows)]
        side = rng.integers(0, 3, n_rows)  # at the threshold (``<=`` goes left), just below, just above
        below, above = np.nextafter(picked, -np.inf), np.nextafter(picked, np.inf)
        rows[:, j] = np.where(side == 0, picked, np.where(side == 1, below, above))
    rows[0] = 0.0
    rows[rng.random(rows.shape) < 0.02] = np.nan
    return np.ascontiguousarray(rows)


def _check_equal(forest: _Forest, model_text: str, reference: Reference) -> float:
    rows = probe_rows(model_text, forest.n_features)
    expected = np.asarray(reference(rows), dtype=np.float64).reshape(-1)
    return float(np.max(np.abs(forest.predict(rows) - expected))) if len(rows) else 0.0


# -- loading ------------------------------------------------------------------------------------------------------
def _open_library(data: bytes) -> ctypes.CDLL:
    """Load the verified bytes with dlopen from a private file (so what was hashed is what runs), then unlink it."""
    fd, name = tempfile.mkstemp(prefix="polku-forest-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return ctypes.CDLL(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _usable_forest(files: Mapping[str, bytes], model_text: str, n_features: int, reference: Reference) -> _Forest:
    """The loaded entry point, or :class:`CompileError` naming the first check that failed."""
    if MANIFEST_FILE not in files:
        raise CompileError(f"{MANIFEST_FILE} is missing")
    try:
        manifest = json.loads(files[MANIFEST_FILE].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompileError(f"{MANIFEST_FILE} is corrupt ({type(exc).__name__})") from exc
    if not isinstance(manifest, dict):
        raise CompileError(f"{MANIFEST_FILE} is not a JSON object")
    if manifest.get("format") != FORMAT or manifest.get("format_version") != FORMAT_VERSION:
        raise CompileError(f"unknown format {manifest.get('format')!r} v{manifest.get('format_version')!r}")
    host = host_platform()
    tag = str(manifest.get("platform_tag"))
    if tag != str(host):
        raise CompileError(f"platform mismatch: library for {tag}, this host is {host}")
    if manifest.get("booster_sha256") != _sha256(model_text.encode("utf-8")):
        raise CompileError("the library was compiled from another booster")
    if manifest.get("n_features") != n_features or manifest.get("entry") != ENTRY:
        raise CompileError("the library's feature count or entry point differs from the booster's")
    library = files.get(LIBRARY_FILE)
    if library is None:
        raise CompileError(f"{LIBRARY_FILE} is missing")
    if _sha256(library) != manifest.get("library_sha256"):
        raise CompileError(f"{LIBRARY_FILE} is corrupt (SHA-256 differs from the manifest)")
    try:
        forest = _Forest(_open_library(library), n_features)
    except (OSError, AttributeError) as exc:
        raise CompileError(f"{LIBRARY_FILE} cannot be loaded ({type(exc).__name__}: {str(exc)[:200]})") from exc
    diff = _check_equal(forest, model_text, reference)
    if not diff <= TOLERANCE:
        raise CompileError(f"scores differ from the booster's by {diff:.3g} on the probe rows")
    return forest


def _engine_detail(files: Mapping[str, bytes]) -> str:
    manifest = json.loads(files[MANIFEST_FILE].decode("utf-8"))
    return f"{manifest['platform_tag']} (lleaves {manifest.get('tools', {}).get('lleaves')})"


def load_forest(directory: str | Path, model_text: str, n_features: int, reference: Reference) -> CompiledTrees | None:
    """Load the compiled library in ``directory`` if it is usable here; never raises.

    Args:
        directory: a ``compiled/`` directory written by :meth:`CompiledTrees.save`.
        model_text: the booster's text (the library must have been compiled from exactly this).
        n_features: the booster's feature count.
        reference: the booster's prediction, to compare with on probe rows.

    Returns:
        None when the directory does not exist (no library shipped); otherwise the library, usable or with the
        reason it is not (logged as a warning: LightGBM's booster scores instead).
    """
    path = Path(directory)
    if not path.is_dir():
        return None
    files: dict[str, bytes] = {}
    for name in (MANIFEST_FILE, LIBRARY_FILE):
        try:
            files[name] = (path / name).read_bytes()
        except OSError:
            continue
    try:
        forest = _usable_forest(files, model_text, n_features, reference)
    except CompileError as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bad shipped library must never stop the model from loading
        reason = f"unexpected {type(exc).__name__}: {str(exc)[:200]}"
    else:
        engine = TreeEngine(compiled=True, shipped=True, detail=_engine_detail(files))
        logger.info("compiled trees in use: %s", engine.detail)
        return CompiledTrees(files, engine, forest)
    logger.warning("compiled trees not used (%s); LightGBM's booster scores instead", reason)
    return CompiledTrees(files, TreeEngine(compiled=False, shipped=True, detail=reason))


# -- compiling ----------------------------------------------------------------------------------------------------
def _c_compiler() -> str:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name:
            found = shutil.which(name)
            if found:
                return found
    raise CompileError("no C compiler to link the compiled trees: install gcc or set CC")


def compile_forest(model_text: str, n_features: int, reference: Reference) -> CompiledTrees:
    """Compile a booster with lleaves for this platform's baseline CPU and link it into a shared library.

    Takes seconds (about 1 s per 100 small trees); run it once, at registration.

    Args:
        model_text: the booster in LightGBM's text format.
        n_features: the booster's feature count.
        reference: the booster's prediction; the library must match it on probe rows.

    Returns:
        The usable library and its manifest.

    Raises:
        CompileError: lleaves or a C compiler is missing, compilation or linking failed, or the result differs
            from the booster.
    """
    import subprocess  # only here: registration, not loading, runs a compiler

    start = time.perf_counter()
    tag = host_platform()
    try:
        import lleaves
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        raise CompileError(f"lleaves is not installed ({exc})") from exc
    compiler = _c_compiler()
    with tempfile.TemporaryDirectory(prefix="polku-compile-") as tmp:
        root = Path(tmp)
        (root / "booster.txt").write_text(model_text, encoding="utf-8")
        try:
            model = lleaves.Model(model_file=str(root / "booster.txt"))
            if model.num_feature() != n_features:
                raise CompileError(f"lleaves reads {model.num_feature()} features, the booster has {n_features}")
            model.compile(
                cache=str(root / "forest.o"),
                froot_func_name=ENTRY,
                target_cpu=tag.cpu,
                target_cpu_features="",  # the baseline only: runs on every CPU of this machine type
            )
        except CompileError:
            raise
        except Exception as exc:  # lleaves/llvmlite raise assorted errors on unsupported models
            raise CompileError(f"lleaves could not compile the booster ({type(exc).__name__}: {exc})") from exc
        cmd = [compiler, "-shared", "-o", str(root / LIBRARY_FILE), str(root / "forest.o")]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_LINK_TIMEOUT_S, check=False)  # noqa: S603
        if proc.returncode != 0:
            raise CompileError(f"linking the compiled trees failed: {proc.stderr.strip()[:300]}")
        library = (root / LIBRARY_FILE).read_bytes()
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "platform_tag": str(tag),
        "platform": tag.as_dict(),
        "entry": ENTRY,
        "signature": SIGNATURE,
        "n_features": n_features,
        "booster_sha256": _sha256(model_text.encode("utf-8")),
        "library_sha256": _sha256(library),
        "tools": {"lleaves": _version("lleaves"), "llvmlite": _version("llvmlite"), "linker": Path(compiler).name},
        "compiled_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "compile_seconds": round(time.perf_counter() - start, 2),
    }
    files = {MANIFEST_FILE: json.dumps(manifest, indent=1, sort_keys=True).encode("utf-8"), LIBRARY_FILE: library}
    forest = _usable_forest(files, model_text, n_features, reference)
    engine = TreeEngine(compiled=True, shipped=True, detail=_engine_detail(files))
    logger.info("trees compiled in %.1f s: %s", time.perf_counter() - start, engine.detail)
    return CompiledTrees(files, engine, forest)


def manifest_of(trees: CompiledTrees) -> dict[str, Any] | None:
    """The manifest of a compiled library, or None when it is missing or unreadable."""
    raw = trees.files.get(MANIFEST_FILE)
    if raw is None:
        return None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None
