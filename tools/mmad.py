"""The MMAD benchmark through the judge's engine: MMAD's questions, prompt and scoring, and its table.

    python tools/mmad.py --mmad DIR/mmad.json --model-dir M [--data-root DIR] [--templates random|similar]
                         [--shots 1] [--domain-knowledge DIR/domain_knowledge.json] [--agent variation|texture]
                         [--agent-view boxes|crops] [--cot] [--votes 1] [--free] [--strict] [--limit N] [--out DIR]
    python tools/mmad.py --score DIR/answers.json [--strict]       # score recorded answers again
    python tools/mmad.py --compare A/report.json B/report.json     # settings side by side

MMAD (Jiang et al., ICLR 2025; github.com/jam-cc/MMAD) is ``mmad.json``: per image (its path starts
with the data set: DS-MVTec, MVTec-LOCO, VisA, GoodsAD) a ``conversation`` of multiple-choice questions
``{Question, Answer, Options, type}``, and ``similar_templates`` / ``random_templates``, known-good
images of the object. ``domain_knowledge.json``: text per data set (DS-MVTec's under MVTec) and object.

Each question is asked on its own, as MMAD's Qwen2.5-VL script asks it (instruction, optional domain
knowledge, ``--shots`` templates, the query image, the question and its lettered options). ``--agent``:
the station's regions stage, fitted on the entry's templates, as MMAD's "agent" (boxes drawn in red on
the query, or the zoomed crops given); ``--cot``: reasoning before "Answer: X" (free decoding); without
it the reply is constrained to one option letter (``--free``: not). ``--votes k``: k sampled replies in
one batch, the most named letter wins; ``--temperature 0`` (default): greedy.

Scoring is MMAD's (``helper/summary.py``): the last standalone letter A-E of the reply, else the closest
option's text (``--strict``: none); a reply that names none is left out and counted. Per data set and
question type (Object Structure and Details fold into Object Analysis); Anomaly Detection is the mean of
the accuracies on normal (path contains "good") and anomalous images. A type a data set lacks shows "-"
and stays out of the means (MMAD counts it 0). ``answers.json`` keeps MMAD's record keys, so MMAD's own
summary script reads it. More in docs/judge.md.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter, defaultdict
from difflib import get_close_matches
from pathlib import Path
from typing import Any

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TYPES = ("Anomaly Detection", "Defect Classification", "Defect Localization", "Defect Description",
         "Defect Analysis", "Object Classification", "Object Analysis")
_FOLD = {"Object Structure": "Object Analysis", "Object Details": "Object Analysis"}
_LETTER = re.compile(r"\b([A-E])\b")
SYSTEM = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
INSTRUCTION = ("\nYou are an industrial inspector who checks products by images. You should judge whether there "
               "is a defect in the query image and answer the questions about it.\n")
DIRECT = ("Answer with the option's letter from the given choices directly.\n"
          "Answer with the option's letter from the given choices directly! ")
COT = ("Think step by step: compare the query image with the normal sample, say what differs and why, "
       "then end your reply with 'Answer: ' and the option's letter. ")
KNOWLEDGE = ("Following is the domain knowledge which contains some type of defect and the normal object "
             "characteristics: \n {}")
AGENT_BOXES = ("The red boxes drawn in the query image mark the regions that an anomaly detector, "
               "comparing it with normal samples, found most different. ")
AGENT_CROPS = "Following are zoomed crops of the regions that an anomaly detector found most different: "


# -- parsing and scoring (no model) -----------------------------------------------------------------

def parse_choice(text: str, options: dict[str, str], fuzzy: bool = True) -> tuple[str | None, str]:
    """MMAD's reading of a reply: (letter, how), how being "letter", "fuzzy" (the closest option's
    text, MMAD's fallback) or "none"."""
    letters = _LETTER.findall(text)
    if letters:
        return letters[-1], "letter"
    if fuzzy and options:
        close = get_close_matches(text, list(options.values()), n=1, cutoff=0.0)
        if close:
            return next(k for k, v in options.items() if v == close[0]), "fuzzy"
    return None, "none"


def vote(texts, options: dict[str, str], fuzzy: bool = True) -> tuple[str | None, list[str]]:
    """The most named letter of k replies (ties: the first named), and how each reply was read."""
    parsed = [parse_choice(t, options, fuzzy) for t in texts]
    letters = Counter(x for x, _ in parsed if x)
    return (letters.most_common(1)[0][0] if letters else None), [h for _, h in parsed]


def dataset_of(image: str) -> str:
    return image.replace("\\", "/").split("/")[0]


def score(records: list[dict[str, Any]], normal_flag: str = "good") -> dict[str, Any]:
    """MMAD's table from answer records {image, question_type, correct_answer, gpt_answer}."""
    hits: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    sides: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"normal": [0, 0], "abnormal": [0, 0]})
    left_out: Counter = Counter()
    order: list[str] = []
    for r in records:
        ds, qtype = dataset_of(r["image"]), _FOLD.get(r["question_type"], r["question_type"])
        if ds not in order:
            order.append(ds)
        if r.get("gpt_answer") not in tuple("ABCDE") or r["correct_answer"] not in tuple("ABCDE"):
            left_out[ds, qtype] += 1
            continue
        ok = int(r["gpt_answer"] == r["correct_answer"])
        hits[ds][qtype][0] += ok
        hits[ds][qtype][1] += 1
        if qtype == "Anomaly Detection":
            side = sides[ds]["normal" if normal_flag in r["image"] else "abnormal"]
            side[0] += ok
            side[1] += 1
    types = [t for t in TYPES if any(t in hits[d] or (d, t) in left_out for d in order)]
    types += sorted({t for d in order for t in hits[d]} - set(types))
    table: dict[str, dict[str, float | None]] = {}
    for ds in order:
        row: dict[str, float | None] = {}
        for t in types:
            ok, n = hits[ds][t] if t in hits[ds] else (0, 0)
            if not n:
                row[t] = None
            elif t == "Anomaly Detection":
                row[t] = 100 * sum(c / m if m else 0.0 for c, m in sides[ds].values()) / 2
            else:
                row[t] = 100 * ok / n
        row["Average"] = _mean(row.values())
        table[ds] = row
    if table:
        table["Average"] = {c: _mean(table[d][c] for d in order) for c in [*types, "Average"]}
    return {"table": table, "types": types, "answers": len(records), "left_out": sum(left_out.values()),
            "left_out_by_type": {f"{d}/{t}": n for (d, t), n in sorted(left_out.items())},
            "detection_accuracy": {ds: {k: round(100 * c / m, 2) if m else None for k, (c, m) in s.items()}
                                   for ds, s in sides.items()}}


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def format_table(report: dict[str, Any]) -> str:
    cols = [*report["types"], "Average"]
    width = max([len(d) for d in report["table"]] + [8])
    lines = [" ".join([f"{'':{width}}", *(f"{c:>{max(len(c), 6)}}" for c in cols)])]
    for ds, row in report["table"].items():
        cells = [f"{'-' if row[c] is None else f'{row[c]:.1f}':>{max(len(c), 6)}}" for c in cols]
        lines.append(" ".join([f"{ds:{width}}", *cells]))
    lines.append(f"{report['answers']} answers; left out (no option named): {report['left_out']}"
                 + (f" ({', '.join(f'{k} {v}' for k, v in report['left_out_by_type'].items())})"
                    if report["left_out"] else ""))
    if report.get("parsed"):
        p = report["parsed"]
        lines.append(f"read as MMAD reads them: {p.get('letter', 0)} by letter, {p.get('fuzzy', 0)} by the "
                     f"closest option's text, {p.get('none', 0)} not at all")
    return "\n".join(lines)


# -- the prompt --------------------------------------------------------------------------------------

def question_text(q: dict[str, Any]) -> str:
    options = "".join(f"{k}. {v}\n" for k, v in q["Options"].items())
    return f"Question: {q['Question']} \n{options}"


def build_prompt(q: dict[str, Any], image, templates=(), knowledge: str | None = None, cot: bool = False,
                 agent: tuple | None = None, agent_view: str = "boxes"):
    """One question as a judge Prompt. Everything but the question is its prefix, whose key/value cache
    the engine keeps: an image's questions share one pass of the vision tower. ``agent``: the regions
    stage's (boxes, crops) for the query."""
    from edge_inspector.judge.vlm.prompt import ImagePart, Prompt, choice_form

    prefix: list = [SYSTEM + INSTRUCTION + (COT if cot else DIRECT)]
    if knowledge:
        prefix.append(KNOWLEDGE.format(knowledge))

    def picture(img, role: str) -> None:
        prefix.extend([f"Picture {sum(isinstance(x, ImagePart) for x in prefix) + 1}: ", ImagePart(img, role)])

    if templates:
        prefix.append(f"Following is/are {len(templates)} image of normal sample, which can be used as a "
                      "template to compare the image being queried.")
        for t in templates:
            picture(t, "reference")
    boxes, crops = agent if agent is not None else ((), ())
    prefix.append("Following is the query image: ")
    picture(draw_boxes(image, boxes) if boxes and agent_view == "boxes" else image, "frame")
    if boxes and agent_view == "boxes":
        prefix.append(AGENT_BOXES)
    elif crops and agent_view == "crops":
        prefix.append(AGENT_CROPS)
        for c in crops:
            picture(c, "crop")
    prefix.append("Following is the question list: ")
    suffix = (question_text(q) + "<|im_end|>\n<|im_start|>assistant\n",)
    form = None if cot else choice_form(tuple(q["Options"]))
    return Prompt(prefix=tuple(prefix), suffix=suffix, n_regions=0, form=form, answer_prefix="")


def draw_boxes(image, boxes):
    out = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    t = max(2, round(max(image.shape[:2]) / 300))
    for b in boxes:
        cv2.rectangle(out, (int(b.x1), int(b.y1)), (int(b.x2) - 1, int(b.y2) - 1), (0, 0, 255), t)
    return out


# -- running -----------------------------------------------------------------------------------------

class Agent:
    """The regions stage fitted on an entry's known-good templates (cached per template list)."""

    def __init__(self, kind: str, max_boxes: int) -> None:
        self.kind, self.max_boxes = kind, max_boxes
        self._cache: dict[tuple[str, ...], Any] = {}
        self.failures, self.last_error = 0, ""

    def find(self, image, templates: list, key: tuple[str, ...]) -> tuple | None:
        """(boxes, crops) of the query, or None when the regions stage cannot score it."""
        from edge_inspector.envelope import Frame
        from edge_inspector.regions.refine import with_refinement
        from edge_inspector.regions.texture import TextureConfig, TextureFinder
        from edge_inspector.regions.variation import VariationConfig, VariationFinder

        try:
            finder = self._cache.get(key)
            if finder is None:
                config_cls, finder_cls = ((VariationConfig, VariationFinder) if self.kind == "variation"
                                          else (TextureConfig, TextureFinder))
                cfg = config_cls(zoom={"max_crops": self.max_boxes})
                h, w = image.shape[:2]  # the variation model needs the query's size
                goods = [cv2.resize(t, (w, h)) if t.shape[:2] != (h, w) else t for t in templates]
                finder = self._cache[key] = with_refinement(finder_cls(cfg, images=goods), cfg)
                if len(self._cache) > 8:
                    self._cache.pop(next(iter(self._cache)))
            r = finder.find(Frame("mmad", 0, "mmad", 0.0, 0.0, math.inf, image))
        except Exception as exc:  # noqa: BLE001 - a query the regions stage cannot score is asked without it
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return None
        return r.boxes[: self.max_boxes], r.crops[: self.max_boxes]


def knowledge_for(all_knowledge: dict | None, image: str) -> str | None:
    if not all_knowledge:
        return None
    parts = image.replace("\\", "/").split("/")
    entry = all_knowledge.get(parts[0].replace("DS-MVTec", "MVTec"), {}).get(parts[1] if len(parts) > 1 else "")
    return "\n".join(entry.values()) if isinstance(entry, dict) else None


def run(args: argparse.Namespace) -> dict[str, Any]:
    from edge_inspector.errors import EdgeInspectorError
    from edge_inspector.imageio import load_image
    from edge_inspector.judge.vlm.engine import Engine, SamplingSettings
    from edge_inspector.judge.vlm.generation import DeadlineGuard
    from edge_inspector.judge.vlm.loading import load_model

    path = Path(args.mmad)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        knowledge = json.loads(Path(args.domain_knowledge).read_text(encoding="utf-8")) \
            if args.domain_knowledge else None
    except (OSError, ValueError) as exc:
        raise EdgeInspectorError(f"cannot read the MMAD files: {exc}") from exc
    root = Path(args.data_root) if args.data_root else path.resolve().parent
    loaded = load_model(Path(args.model_dir), args.device)
    px = {"frame": args.max_pixels, "reference": args.max_pixels, "crop": 448 * 448}
    greedy = args.temperature <= 0
    sampling = SamplingSettings(temperature=1e-5 if greedy else args.temperature, top_p=1.0 if greedy else 0.9,
                                max_new_tokens=args.max_new_tokens or (256 if args.cot else 16), seed=args.seed)
    engine = Engine(loaded, px, sampling, prefix_cache=True, constrained=not args.free)
    agent = Agent(args.agent, args.agent_boxes) if args.agent else None
    key = "similar_templates" if args.templates == "similar" else "random_templates"
    images = list(data)[: args.limit] if args.limit else list(data)
    records, how = [], Counter()
    with _progress(args.no_progress) as bar:
        task = bar.add_task("MMAD", total=len(images))
        for rel in images:
            entry = data[rel]
            image = load_image(root / rel)
            names = list(entry.get(key) or [])
            shown = [load_image(root / t) for t in names[: args.shots]]
            view = None
            if agent is not None and names:
                goods = shown + [load_image(root / t) for t in names[args.shots:]]
                view = agent.find(image, goods, tuple(names))
            dk = knowledge_for(knowledge, rel)
            for q in entry.get("conversation", []):
                prompt = build_prompt(q, image, shown, dk, args.cot, view, args.agent_view)
                gen = engine.run(prompt, max(args.votes, 1), DeadlineGuard(math.inf))
                answer, hows = vote(gen.texts, q["Options"], fuzzy=not args.strict)
                how.update(hows)
                records.append({"image": rel, "question": question_text(q), "question_type": q["type"],
                                "correct_answer": q["Answer"], "gpt_answer": answer, "raw": list(gen.texts),
                                "agent_boxes": None if view is None else len(view[0]),
                                "agent_error": agent.last_error if agent is not None and view is None else None})
            bar.advance(task)
    settings = {k: v for k, v in vars(args).items() if k in ("model_dir", "templates", "shots", "domain_knowledge",
                "agent", "agent_view", "cot", "votes", "temperature", "free", "strict", "limit")}
    report = {**score(records), "parsed": dict(how), "settings": settings,
              "agent_failures": agent.failures if agent else 0}
    return {"report": report, "records": records}


def _progress(disable: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=disable)


def label(s: dict[str, Any]) -> str:
    """A run's settings in a few words."""
    parts = [Path(str(s.get("model_dir", "?"))).name, f"{s.get('shots', 1)}-shot {s.get('templates', 'random')}"]
    parts += [x for x, on in (("knowledge", s.get("domain_knowledge")), ("cot", s.get("cot")),
                              ("free", s.get("free"))) if on]
    if s.get("agent"):
        parts.append(f"agent {s['agent']}/{s.get('agent_view')}")
    if (s.get("votes") or 1) > 1:
        parts.append(f"{s['votes']} votes")
    return ", ".join(parts)


def compare(paths: list[str]) -> str:
    reports = [json.loads(Path(p).read_text(encoding="utf-8")) for p in paths]
    cols = [*TYPES, "Average"]
    lines = [" | ".join(["setting", *cols])]
    for p, r in zip(paths, reports, strict=True):
        avg = r["table"].get("Average", {})
        cells = ["-" if avg.get(c) is None else f"{avg[c]:.1f}" for c in cols]
        lines.append(" | ".join([label(r.get("settings", {})) or p, *cells]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--mmad", help="an MMAD-format mmad.json")
    src.add_argument("--score", help="an answers.json from an earlier run (or MMAD's own answer files)")
    src.add_argument("--compare", nargs="+", help="report.json files to set side by side")
    ap.add_argument("--model-dir", help="the VLM checkpoint directory (Qwen2.5-VL / Qwen3-VL, AWQ too)")
    ap.add_argument("--data-root", help="the folder image paths are relative to (default: mmad.json's)")
    ap.add_argument("--templates", choices=("random", "similar"), default="random")
    ap.add_argument("--similar-template", dest="templates", action="store_const", const="similar",
                    help="the same as --templates similar (MMAD's flag)")
    ap.add_argument("--shots", type=int, default=1, help="templates shown per question (0: zero-shot)")
    ap.add_argument("--domain-knowledge", help="MMAD's domain_knowledge.json: add the object's text")
    ap.add_argument("--agent", choices=("variation", "texture"), help="the regions stage as the agent")
    ap.add_argument("--agent-view", choices=("boxes", "crops"), default="boxes")
    ap.add_argument("--agent-boxes", type=int, default=4, help="most boxes or crops shown")
    ap.add_argument("--cot", action="store_true", help="chain of thought before the answer")
    ap.add_argument("--free", action="store_true", help="free decoding (default: one option letter)")
    ap.add_argument("--strict", action="store_true", help="no closest-option fallback: unread answers are left out")
    ap.add_argument("--votes", type=int, default=1)
    ap.add_argument("--temperature", type=float, default=0.0, help="0: greedy")
    ap.add_argument("--max-new-tokens", type=int, default=0, help="most tokens per reply (0: 16, 256 with --cot)")
    ap.add_argument("--max-pixels", type=int, default=1280 * 28 * 28, help="per image (MMAD's Qwen setting)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--limit", type=int, default=0, help="only the first N images")
    ap.add_argument("--out", default="mmad-results", help="folder for answers.json and report.json")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    from edge_inspector.errors import EdgeInspectorError

    try:
        if args.compare:
            print(compare(args.compare))
            return 0
        if args.score:
            records = json.loads(Path(args.score).read_text(encoding="utf-8"))
            if args.strict:  # read the recorded replies again, without the closest-option fallback
                for r in records:
                    if r.get("raw"):
                        r["gpt_answer"], _ = vote(r["raw"], {}, fuzzy=False)
            result = {"report": score(records), "records": records}
        else:
            if not args.model_dir:
                raise EdgeInspectorError("--mmad needs --model-dir")
            result = run(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except EdgeInspectorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "answers.json").write_text(json.dumps(result["records"], indent=1), encoding="utf-8")
    (out / "report.json").write_text(json.dumps(result["report"], indent=1), encoding="utf-8")
    if settings := result["report"].get("settings"):
        print(f"MMAD, {label(settings)}")
    print(format_table(result["report"]))
    print(f"answers: {out / 'answers.json'}  report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
