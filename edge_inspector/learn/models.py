"""Model versions: a folder each under ``models.dir``, a ``current`` pointer, a history.

Layout of the registry (``models.dir``, by default ``<station.data_dir>/models``)::

    v1/manifest.json     the version: base, adapter, dataset hash, created, metrics, parity, and
    v1/merged/ | awq/    the weights it serves ("weights": awq/ when the run has one, else merged/;
    v1/adapter/          model/ for a plain checkpoint), beside what else the run made
    current              the pointer: {"version": "v2", "stack": ["v1", "v2"], "at": ...}
    history.jsonl        every import, evaluation, promotion and rollback, one JSON line each

The pointer is replaced atomically (written beside, fsynced, renamed over): a reader sees the old
pointer or the new one, never half of one. ``stack`` is what ``rollback`` pops: the versions that
were current before, the current one last. Changes to the registry take a lock on ``.lock``, so two
commands never interleave.

Nothing here imports torch or the config: the config resolves ``judge.model_version`` through
:meth:`Registry.resolve`, and the rows name the version of the weights the judge loaded
(:func:`version_of_weights`).
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_inspector.errors import EdgeInspectorError

MANIFEST = "manifest.json"
POINTER = "current"
HISTORY = "history.jsonl"
LOCK = ".lock"
RUN_FILE = "run.json"
PARITY_FILE = "parity.json"
CURRENT = "current"  # the name that resolves through the pointer
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RESERVED = {CURRENT, "history", "lock"}
SCHEMA = 1


class ModelError(EdgeInspectorError):
    """A model version that does not exist, a run that cannot be imported, a broken registry."""


def _now_iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def write_atomic(path: Path, text: str) -> None:
    """``text`` into ``path`` so that a reader (or a crash) sees the old file or the new one."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class Version:
    id: str
    path: Path
    manifest: dict[str, Any]

    @property
    def weights(self) -> Path:
        """The checkpoint directory the judge loads (not resolved through a link: the rows find
        the version from it)."""
        return self.path / self.manifest["weights"]

    @property
    def metrics(self) -> dict[str, Any] | None:
        return self.manifest.get("metrics")


def version_of_weights(model_dir: Path | str | None) -> str | None:
    """The registry version whose weights ``model_dir`` is (its folder's manifest), else None."""
    if model_dir is None:
        return None
    model_dir = Path(model_dir)
    try:
        manifest = json.loads((model_dir.parent / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("weights") != model_dir.name:
        return None
    version = manifest.get("version")
    return version if isinstance(version, str) and version == model_dir.parent.name else None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}: unreadable {what} ({exc})") from None


class Registry:
    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # --- reading -------------------------------------------------------------------------------

    def _check_root(self) -> None:
        if not self.root.is_dir():
            raise ModelError(f"no model registry at {self.root} (models.dir): import a model first with "
                             "`edge-inspector model import RUN_DIR`")

    def versions(self) -> list[Version]:
        if not self.root.is_dir():
            return []
        out = []
        for d in sorted(self.root.iterdir()):
            if d.is_dir() and not d.name.startswith(".") and (d / MANIFEST).is_file():
                out.append(Version(d.name, d, _read_json(d / MANIFEST, "manifest")))
        return sorted(out, key=lambda v: (v.manifest.get("created_unix", 0), v.id))

    def get(self, name: str) -> Version:
        if name == CURRENT:
            current = self.current()
            if current is None:
                raise ModelError(f"no current model version in {self.root}: promote one with "
                                 "`edge-inspector model promote VERSION`")
            return current
        if not NAME.match(name or ""):
            raise ModelError(f"{name!r} is not a model version name (letters, digits, _ . -)")
        path = self.root / name
        try:
            manifest = _read_json(path / MANIFEST, "manifest")
        except FileNotFoundError:
            known = ", ".join(v.id for v in self.versions()) or "none"
            raise ModelError(f"no model version {name!r} in {self.root} (versions: {known})") from None
        return Version(name, path, manifest)

    resolve = get

    def pointer(self) -> dict[str, Any] | None:
        try:
            data = _read_json(self.root / POINTER, "current pointer")
        except FileNotFoundError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("version"), str):
            raise ModelError(f"{self.root / POINTER}: not a model version pointer")
        return data

    def current(self) -> Version | None:
        p = self.pointer()
        return self.get(p["version"]) if p else None

    def history(self) -> list[dict[str, Any]]:
        try:
            lines = (self.root / HISTORY).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    # --- changing ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / LOCK, "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def _log(self, event: dict[str, Any]) -> dict[str, Any]:
        t = time.time()
        event = {"at": _now_iso(t), "at_unix": round(t, 3), "by": _who(), **event}
        with open(self.root / HISTORY, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(event) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return event

    def _next_name(self) -> str:
        numbers = [int(m.group(1)) for d in (self.root.iterdir() if self.root.is_dir() else ())
                   if (m := re.fullmatch(r"v(\d+)", d.name))]
        return f"v{max(numbers, default=0) + 1}"

    def import_run(self, source: Path | str, name: str | None = None, link: bool = False) -> Version:
        """A new version from a training run (RUN_DIR with run.json, merged/, optionally awq/,
        adapter/, parity.json) or a plain checkpoint directory (config.json at its top). Copied,
        or with ``link`` symlinked (the run must then stay where it is)."""
        source = Path(source).absolute()
        plan = _import_plan(source)
        with self._locked():
            name = name or self._next_name()
            if not NAME.match(name) or name.lower() in RESERVED:
                raise ModelError(f"--name {name!r}: a version name is letters, digits, _ . - (and not "
                                 f"{', '.join(sorted(RESERVED))})")
            final = self.root / name
            if final.exists():
                raise ModelError(f"model version {name!r} exists already in {self.root}")
            tmp = self.root / f".importing-{name}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            try:
                for rel in plan["copy"]:
                    src, dst = source / rel, tmp / (plan["rename"].get(rel, rel))
                    if link:
                        dst.symlink_to(src, target_is_directory=src.is_dir())
                    elif src.is_dir():
                        shutil.copytree(src, dst, symlinks=False)
                    else:
                        shutil.copy2(src, dst)
                t = time.time()
                manifest = {"schema": SCHEMA, "version": name, "created": _now_iso(t),
                            "created_unix": round(t, 3), "source": str(source), "linked": link,
                            **plan["manifest"], "metrics": None}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
                os.rename(tmp, final)  # the version appears whole or not at all
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            self._log({"action": "import", "version": name, "source": str(source), "linked": link})
        return self.get(name)

    def set_metrics(self, name: str, metrics: dict[str, Any]) -> Version:
        with self._locked():
            v = self.get(name)
            manifest = {**v.manifest, "metrics": metrics}
            write_atomic(v.path / MANIFEST, json.dumps(manifest, indent=2) + "\n")
            self._log({"action": "evaluate", "version": name, "against": metrics.get("against"),
                       "recording": metrics.get("recording")})
        return self.get(name)

    def switch(self, name: str, action: str = "promote", **note: Any) -> tuple[str | None, str]:
        """Make ``name`` current (pushed on the stack). Returns (previous, new)."""
        with self._locked():
            self.get(name)
            p = self.pointer() or {"version": None, "stack": []}
            stack = [*list(p.get("stack") or []), name]
            self._write_pointer(name, stack)
            self._log({"action": action, "from": p["version"], "to": name, **note})
        return p["version"], name

    def rollback(self, **note: Any) -> tuple[str, str]:
        """Back to the version that was current before the last promotion. Returns (from, to)."""
        with self._locked():
            p = self.pointer()
            stack = list((p or {}).get("stack") or [])
            if p is None or len(stack) < 2:
                raise ModelError(f"nothing to roll back to in {self.root}: "
                                 + ("no version is current" if p is None else
                                    f"{p['version']} is the first version that was made current"))
            stack.pop()
            self.get(stack[-1])
            self._write_pointer(stack[-1], stack)
            self._log({"action": "rollback", "from": p["version"], "to": stack[-1], **note})
        return p["version"], stack[-1]

    def restore_pointer(self, pointer: dict[str, Any] | None, why: str) -> None:
        """Put back a pointer read before a switch (the station refused the new version)."""
        with self._locked():
            now = self.pointer()
            if pointer is None:
                (self.root / POINTER).unlink(missing_ok=True)
            else:
                self._write_pointer(pointer["version"], list(pointer.get("stack") or [pointer["version"]]))
            self._log({"action": "restore", "from": now["version"] if now else None,
                       "to": pointer["version"] if pointer else None, "why": why})

    def _write_pointer(self, name: str, stack: list[str]) -> None:
        write_atomic(self.root / POINTER, json.dumps({"version": name, "stack": stack,
                                                      "at": _now_iso(time.time())}) + "\n")


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _import_plan(source: Path) -> dict[str, Any]:
    """What to copy from ``source`` and the manifest fields it gives. ModelError when it is neither
    a finished run nor a checkpoint the judge can load."""
    from edge_inspector.errors import StartupError
    from edge_inspector.judge.vlm.loading import inspect_checkpoint

    if not source.is_dir():
        raise ModelError(f"{source}: no such directory (a training run's RUN_DIR or a checkpoint)")
    run_file = source / RUN_FILE
    if run_file.is_file():
        run = _read_json(run_file, "run.json")
        if not isinstance(run, dict):
            raise ModelError(f"{run_file}: not a JSON object")
        if run.get("finished") is False:
            raise ModelError(f"{source}: the training did not finish (run.json finished: false); "
                             "resume it before importing")
        served = next((d for d in ("awq", "merged") if (source / d / "config.json").is_file()), None)
        if served is None:
            raise ModelError(f"{source}: no merged/ or awq/ model in the run (merge the adapter first)")
        copy = [d for d in ("adapter", "merged", "awq", RUN_FILE, PARITY_FILE) if (source / d).exists()]
        parity = None
        if (source / PARITY_FILE).is_file():
            parity = _read_json(source / PARITY_FILE, "parity.json")
        loss = run.get("loss") or []
        fields = {"kind": "run", "base": run.get("base"), "adapter": "adapter" if "adapter" in copy else None,
                  "dataset": run.get("dataset"), "dataset_hash": run.get("dataset_hash"),
                  "lora": run.get("lora"), "steps": run.get("steps"),
                  "final_loss": loss[-1] if isinstance(loss, list) and loss else None,
                  "finished": run.get("finished"), "weights": served, "parity": parity}
        rename: dict[str, str] = {}
    elif (source / "config.json").is_file():
        served, copy, rename = "model", ["."], {".": "model"}
        fields = {"kind": "checkpoint", "base": str(source), "adapter": None, "dataset": None,
                  "dataset_hash": None, "lora": None, "steps": None, "final_loss": None, "finished": None,
                  "weights": "model", "parity": None}
    else:
        raise ModelError(f"{source}: neither a training run (no {RUN_FILE}) nor a checkpoint (no config.json)")
    try:
        info = inspect_checkpoint(source if served == "model" else source / served)
    except StartupError as exc:
        raise ModelError(f"cannot import {source}: {exc}") from None
    fields.update(family=info.family, awq=info.awq, fingerprint=info.fingerprint)
    return {"copy": copy, "rename": rename, "manifest": fields}


class PromotionRefused(EdgeInspectorError):
    """A candidate that may not become current (the rules of :func:`promotion_refusals`)."""


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1%}"


def promotion_refusals(candidate: Version, current: Version | None, margin: float) -> list[str]:
    """Why ``candidate`` may not replace ``current``; empty when it may. The rules: it was evaluated
    against the current version on a recording with good and defective parts; it misses no
    defective part the current version caught; its overkill (good parts rejected) is at most
    ``margin`` above the current one's; its quantized weights did not fail the parity check.
    With no current version (the first one), nothing is compared."""
    if current is None:
        return []
    name, cur = candidate.id, current.id
    m = candidate.metrics
    if not m:
        return [f"{name} was never evaluated: run `edge-inspector model evaluate {name} --recording DIR` "
                f"(it is compared with the current version, {cur}, on a held-out recording)"]
    if m.get("against") != cur:
        return [f"{name} was evaluated against {m.get('against') or 'no version'}, but the current "
                f"version is {cur}: evaluate it again (`edge-inspector model evaluate {name} ...`)"]
    out = []
    c, k = m.get("current") or {}, m.get("candidate") or {}
    if not k.get("defective"):
        out.append(f"the evaluation recording ({m.get('recording')}) has no defective part: "
                   "what the candidate misses cannot be checked")
    missed = list(m.get("missed_caught_by_current") or [])
    if missed:
        shown = ", ".join(map(str, missed[:10])) + (f" and {len(missed) - 10} more" if len(missed) > 10 else "")
        out.append(f"{name} misses {len(missed)} defective part{'s' if len(missed) > 1 else ''} that {cur} "
                   f"caught: {shown}")
    if not k.get("good"):
        out.append(f"the evaluation recording ({m.get('recording')}) has no good part: overkill cannot "
                   "be compared")
    else:
        delta = m.get("overkill_delta")
        if delta is not None and delta > margin + 1e-9:
            out.append(f"{name} raises overkill from {_pct(c.get('overkill_rate'))} ({cur}) to "
                       f"{_pct(k.get('overkill_rate'))}: +{delta * 100:.1f} points, beyond the margin of "
                       f"{margin * 100:.1f} points (models.promote_overkill_margin, or --margin)")
    parity = candidate.manifest.get("parity")
    if isinstance(parity, dict) and parity.get("ok") is False:
        out.append(f"{name}'s quantized weights failed the parity check against the merged model "
                   f"(parity.json: {json.dumps({k: v for k, v in parity.items() if not isinstance(v, list)})})")
    return out
