"""``edge-inspector model list|import|evaluate|promote|rollback``: the VLM judge's model versions.

Versions live in the registry (``models.dir``; ``edge_inspector.learn.models``). A station whose
config says ``judge.model_version: current`` serves the version promoted last; ``promote`` and
``rollback`` switch the pointer and then ask the running station to ``reload`` over its control
socket (the same command as ``edge-inspector ctl reload``), waiting until the reload is applied: the
part being inspected finishes under the old version, the next ones are judged (and recorded) by the
new one. A reload the station refuses puts the pointer back. With no station running, only the
pointer changes; the next start serves it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import structlog

from edge_inspector.cli.common import add_config_options
from edge_inspector.errors import ConfigError, EdgeInspectorError

log = structlog.get_logger(__name__)


def register(sub) -> None:
    p = sub.add_parser("model", help="model versions: list, import, evaluate, promote, rollback")
    msub = p.add_subparsers(dest="model_command", required=True, metavar="ACTION")

    ls = msub.add_parser("list", help="the versions in models.dir, the current one marked")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(func=cmd_list)

    imp = msub.add_parser("import", help="a training run (or a checkpoint) as a new version")
    imp.add_argument("run_dir", metavar="RUN_DIR", help="edge-inspector train's --out folder (run.json, "
                     "merged/, awq/, adapter/, parity.json), or a checkpoint directory")
    imp.add_argument("--name", metavar="V", help="the version's name (default: v1, v2, ...)")
    imp.add_argument("--link", action="store_true", help="link the run's folders instead of copying "
                     "them (the run must then stay where it is)")
    imp.set_defaults(func=cmd_import)

    ev = msub.add_parser("evaluate", help="a candidate against the current version on a held-out "
                         "labelled recording; the figures go into its manifest")
    ev.add_argument("version", metavar="V")
    ev.add_argument("--recording", required=True, metavar="DIR", help="a labelled recording: a folder "
                    "with manifest.jsonl (tools/eval_synthetic.py --record) or the manifest itself")
    ev.add_argument("--json", action="store_true", help="print the figures as JSON")
    ev.set_defaults(func=cmd_evaluate)

    pr = msub.add_parser("promote", help="make an evaluated candidate current and reload the station")
    pr.add_argument("version", metavar="V")
    pr.add_argument("--margin", type=float, metavar="X", help="overkill increase allowed, as a rate "
                    "(0.02: two points); default models.promote_overkill_margin")
    pr.add_argument("--force", action="store_true", help="promote although the rules refuse it (logged, "
                    "and written to the registry's history with the reasons)")
    _reload_options(pr)
    pr.set_defaults(func=cmd_promote)

    rb = msub.add_parser("rollback", help="back to the version that was current before, and reload")
    _reload_options(rb)
    rb.set_defaults(func=cmd_rollback)

    for q in (ls, imp, ev, pr, rb):
        add_config_options(q)


def _reload_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-reload", action="store_true", help="only switch the pointer; the station "
                   "serves it at its next reload or start")
    p.add_argument("--wait", type=float, default=600.0, metavar="S", help="how long to wait for the "
                   "station's reload (building the new judge loads the model; default 600 s)")
    p.add_argument("--socket", metavar="PATH", help="the daemon's control socket instead of the config's")


def _registry(args: argparse.Namespace):
    """The config (``judge.model_version`` left unresolved: no version need be current yet) and its
    registry."""
    from edge_inspector.config import load_config
    from edge_inspector.learn.models import Registry
    from edge_inspector.logs import configure

    cfg = load_config(args.config, args.overrides, resolve_model=False)
    configure(cfg.logging.level, cfg.logging.format)
    return cfg, Registry(cfg.models_dir)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- list, import ------------------------------------------------------------------------------


def _summary(v, current: str | None) -> dict[str, Any]:
    m = v.manifest
    metrics = m.get("metrics") or {}
    return {"version": v.id, "current": v.id == current, "created": m.get("created"), "kind": m.get("kind"),
            "base": m.get("base"), "weights": m.get("weights"), "awq": m.get("awq"),
            "dataset_hash": m.get("dataset_hash"), "steps": m.get("steps"),
            "evaluated_against": metrics.get("against") if metrics else None,
            "missed": len(metrics.get("missed_caught_by_current") or []) if metrics else None,
            "overkill_delta": metrics.get("overkill_delta") if metrics else None,
            "path": str(v.path)}


def cmd_list(args: argparse.Namespace) -> int:
    cfg, reg = _registry(args)
    pointer = reg.pointer()
    current = pointer["version"] if pointer else None
    rows = [_summary(v, current) for v in reg.versions()]
    if args.json:
        _out(json.dumps({"dir": str(reg.root), "current": current, "versions": rows,
                         "manifests": {v.id: v.manifest for v in reg.versions()}}, indent=2, default=str))
        return 0
    if not rows:
        _out(f"no model versions in {reg.root}: `edge-inspector model import RUN_DIR`")
        return 0
    head = f"  {'version':<12} {'created':<21} {'weights':<8} {'dataset':<14} {'evaluated':<22} base"
    lines = [f"models in {reg.root} (current: {current or 'none'})", head]
    for r in rows:
        delta = "n/a" if r["overkill_delta"] is None else f"{r['overkill_delta']:+.3f}"
        ev = ("-" if r["evaluated_against"] is None and r["missed"] is None else
              f"vs {r['evaluated_against'] or '-'}: {r['missed']} missed, overkill {delta}")
        lines.append(f"{'*' if r['current'] else ' '} {r['version']:<12} {r['created'] or '-':<21} "
                     f"{(r['weights'] or '-') + ('/awq' if r['awq'] and r['weights'] != 'awq' else ''):<8} "
                     f"{(r['dataset_hash'] or '-')[:12]:<14} {ev:<22} {r['base'] or '-'}")
    _out("\n".join(lines))
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    _, reg = _registry(args)
    v = reg.import_run(Path(args.run_dir), args.name, link=args.link)
    log.info("model_imported", version=v.id, source=str(args.run_dir), weights=v.manifest["weights"],
             linked=args.link)
    _out(f"imported {args.run_dir} as {v.id} ({v.path}, serves {v.manifest['weights']}/); next: "
         f"`edge-inspector model evaluate {v.id} --recording DIR`")
    return 0


# --- evaluate ----------------------------------------------------------------------------------


def _recording(path: Path) -> Path:
    manifest = path / "manifest.jsonl" if path.is_dir() else path
    if not manifest.is_file():
        raise EdgeInspectorError(f"--recording {path}: no manifest.jsonl there (a labelled recording, as "
                                 "tools/eval_synthetic.py --record writes)")
    return manifest


def _inspect_all(args: argparse.Namespace, version: str, items: list[dict]) -> list[dict]:
    """Every item through the station's own stages (``inspect``'s), with ``version``'s weights."""
    from edge_inspector.cli.inspect import OfflineInspector

    ns = argparse.Namespace(config=args.config, overrides=[
        *args.overrides, "judge.model_dir=null", f"judge.model_version={json.dumps(version)}"])
    engine = OfflineInspector(ns, any(i.get("reference") for i in items))
    log.info("model_evaluating", version=version, parts=len(items))
    try:
        return [engine.run(item) for item in items]
    finally:
        engine.close()


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edge_inspector.cli.inspect import manifest_items
    from edge_inspector.learn.evaluation import compare, is_defective
    from edge_inspector.learn.models import ModelError

    cfg, reg = _registry(args)
    if cfg.judge.kind != "vlm":
        raise ConfigError(f"judge.kind: model versions are VLM checkpoints; evaluating one needs a config "
                          f"with judge.kind: vlm (this one has {cfg.judge.kind})")
    candidate = reg.get(args.version)
    current = reg.current()
    if current is not None and current.id == candidate.id:
        raise ModelError(f"{candidate.id} is the current version: evaluate a candidate against it")
    manifest = _recording(Path(args.recording))
    items = list(manifest_items(manifest))
    if not any(is_defective(i) is not None for i in items):
        raise EdgeInspectorError(f"{manifest}: no labelled part (\"label\": good | defective)")
    cur_results = _inspect_all(args, current.id, items) if current is not None else None
    cand_results = _inspect_all(args, candidate.id, items)
    report = compare(items, cur_results, cand_results)
    t = time.time()
    metrics = {"against": current.id if current else None, "recording": str(manifest.resolve()),
               "recording_sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()[:16],
               "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)), "config": cfg.fingerprint(),
               **report}
    reg.set_metrics(candidate.id, metrics)
    from edge_inspector.learn.models import promotion_refusals

    refusals = promotion_refusals(reg.get(candidate.id), current, cfg.models.promote_overkill_margin)
    log.info("model_evaluated", version=candidate.id, against=metrics["against"],
             missed=len(report.get("missed_caught_by_current") or []), overkill_delta=report.get("overkill_delta"))
    if args.json:
        _out(json.dumps({**metrics, "promotion_refusals": refusals}, indent=2, default=str))
        return 0
    _out(_evaluation_table(candidate.id, current.id if current else None, metrics, refusals))
    return 0


def _evaluation_table(cand: str, cur: str | None, m: dict[str, Any], refusals: list[str]) -> str:
    k = m["candidate"]
    lines = [f"{cand} on {m['recording']}: {k['parts']} parts ({k['good']} good, {k['defective']} defective)"
             + (f", against the current version {cur}" if cur else ", no current version to compare with")]
    keys = ("accuracy", "overkill_rate", "miss_rate", "no_reads", "box_recall", "cascade_skip_rate")
    lines.append(f"  {'':<18}" + (f"{cur:>14}" if cur else "") + f"{cand:>14}")
    for key in keys:
        lines.append(f"  {key:<18}" + (f"{str(m['current'][key]):>14}" if cur else "") + f"{str(k[key]):>14}")
    if cur:
        missed = m["missed_caught_by_current"]
        lines.append(f"  defective parts {cur} caught and {cand} passes: {', '.join(missed) or 'none'}")
        lines.append(f"  good parts {cand} rejects and {cur} passed: {', '.join(m['new_overkill']) or 'none'}")
    lines.append("promotion: " + ("allowed" if not refusals else "refused: " + "; ".join(refusals)))
    return "\n".join(lines)


# --- promote, rollback -------------------------------------------------------------------------


def _socket(cfg, args: argparse.Namespace) -> Path:
    from edge_inspector.service.config import control_socket_path

    return Path(args.socket) if args.socket else control_socket_path(cfg)


def _reload_station(path: Path, wait_s: float, expect: str) -> str | None:
    """Ask the daemon on ``path`` to reload and wait for the result. Returns what happened, for
    the output; raises ModelError when the station refused (or did not finish) the reload; returns
    None when no station listens there."""
    from edge_inspector.learn.models import ModelError
    from edge_inspector.service.control import ControlError, request

    try:
        before = request(path, "status")["status"].get("reload") or {}
    except ControlError as exc:
        if isinstance(exc.__cause__, FileNotFoundError | ConnectionRefusedError):
            return None  # no station runs: the pointer alone
        raise ModelError(f"the station on {path}: {exc}") from None
    done_before = before.get("reloads", 0) + before.get("refused", 0)
    try:
        request(path, "reload")
    except ControlError as exc:
        raise ModelError(f"the station on {path} did not take the reload: {exc}") from None
    started = time.monotonic()
    deadline = started + wait_s
    while True:
        try:
            status = request(path, "status")["status"]
        except ControlError as exc:
            raise ModelError(f"the station on {path} stopped answering during the reload: {exc}") from None
        state = status.get("reload") or {}
        if state.get("reloads", 0) + state.get("refused", 0) > done_before:
            if state.get("state") != "applied":
                raise ModelError(f"the station refused the reload: {state.get('error')}")
            served = status.get("model_version")
            took = f"the station reloaded in {time.monotonic() - started:.1f} s"
            if served != expect:
                return (f"{took}, but serves {served or 'an unversioned model'}: its config does not say "
                        "judge.model_version: current")
            return f"{took}: the next parts are judged by {expect}"
        if time.monotonic() > deadline:
            raise ModelError(f"the station did not finish the reload within {wait_s:g} s (still "
                             f"{state.get('state')}); `edge-inspector status` shows how it ends")
        time.sleep(0.2)


def _switch_and_reload(cfg, args, reg, switch, action: str) -> int:
    from edge_inspector.learn.models import ModelError

    before = reg.pointer()
    old, new = switch()
    log.info(f"model_{action}", previous=old, current=new)
    if args.no_reload:
        _out(f"{action}: {new} is current (was {old or 'none'}); the station serves it at its next reload")
        return 0
    path = _socket(cfg, args)
    try:
        what = _reload_station(path, args.wait, new)
    except ModelError as exc:
        reg.restore_pointer(before, str(exc))
        log.error(f"model_{action}_undone", previous=old, refused=new, error=str(exc))
        raise ModelError(f"{exc}; the pointer is back to {old or 'none'}") from None
    if what is None:
        what = f"no station is running ({path}): it serves {new} when it starts"
    _out(f"{action}: {new} is current (was {old or 'none'}); {what}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from edge_inspector.learn.models import ModelError, PromotionRefused, promotion_refusals

    cfg, reg = _registry(args)
    candidate = reg.get(args.version)
    current = reg.current()
    if current is not None and current.id == candidate.id:
        raise ModelError(f"{candidate.id} is the current version already")
    margin = cfg.models.promote_overkill_margin if args.margin is None else args.margin
    if not 0.0 <= margin <= 1.0:
        raise EdgeInspectorError(f"--margin {args.margin}: a rate between 0 and 1 (0.02: two points)")
    refusals = promotion_refusals(candidate, current, margin)
    if refusals and not args.force:
        raise PromotionRefused(f"promotion of {candidate.id} refused: " + "; ".join(refusals)
                               + " (--force promotes anyway, and is logged)")
    if refusals:
        log.warning("model_promote_forced", version=candidate.id, current=current.id if current else None,
                    overridden=refusals)
    note = {"forced": bool(refusals), "overridden": refusals} if refusals else {}
    if current is None:
        note["first"] = True
    return _switch_and_reload(cfg, args, reg, lambda: reg.switch(candidate.id, "promote", **note), "promote")


def cmd_rollback(args: argparse.Namespace) -> int:
    cfg, reg = _registry(args)
    return _switch_and_reload(cfg, args, reg, reg.rollback, "rollback")
