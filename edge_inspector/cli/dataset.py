"""``edge-inspector dataset export``: the labelled inspections as a chat-format data set (JSONL, PNG
images, a manifest with hashes) for fine-tuning, built with the judge's own prompt
(``edge_inspector.dataset.export``); ``--synthetic N`` adds N synthetic boards with templated
descriptions. Prints the manifest's summary (``--json``: the manifest)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_inspector.cli.common import add_config_options, config_from
from edge_inspector.errors import EdgeInspectorError


def register(sub) -> None:
    p = sub.add_parser("dataset", help="export labelled inspections as a fine-tuning data set")
    dsub = p.add_subparsers(dest="dataset_command", required=True, metavar="ACTION")
    e = dsub.add_parser("export", help="labelled inspections -> DIR/{train,val}.jsonl, images/, manifest.json")
    add_config_options(e, required=True)
    e.add_argument("--out", "-o", required=True, metavar="DIR", help="a new (or empty) folder")
    e.add_argument("--val-share", type=float, default=0.2, metavar="F",
                   help="share of parts in val.jsonl, split by a hash of the part id (default 0.2)")
    e.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="add N synthetic boards (half good, half defective) with templated descriptions")
    e.add_argument("--synthetic-seed", type=int, default=0, metavar="S", help="seed of the synthetic boards")
    e.add_argument("--recipe", metavar="FILE",
                   help="the recipe the prompt is built from when the judge has none (default: the judge's)")
    e.add_argument("--json", action="store_true", help="print the manifest")
    e.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from edge_inspector.dataset.export import context_for, export
    from edge_inspector.dataset.synthetic import synthetic_examples

    if args.synthetic < 0:
        raise EdgeInspectorError("--synthetic needs a number of examples, 0 or more")
    cfg = config_from(args)
    ctx = context_for(cfg, args.recipe)
    extra = synthetic_examples(args.synthetic, ctx, args.synthetic_seed) if args.synthetic else ()
    manifest = export(cfg, Path(args.out), args.val_share, extra, ctx=ctx, config_path=args.config)
    if args.json:
        sys.stdout.write(json.dumps(manifest, indent=2) + "\n")
        return 0
    c = manifest["counts"]
    skipped = ", ".join(f"{k} {v}" for k, v in c["skipped"].items()) or "none"
    sys.stdout.write(f"{args.out}: {c['total']} examples (train {c['train']['examples']}, val "
                     f"{c['val']['examples']}; synthetic {c['train']['synthetic'] + c['val']['synthetic']}), "
                     f"skipped: {skipped}\ndataset {manifest['dataset_hash'][:16]}\n")
    return 0
