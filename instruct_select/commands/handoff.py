"""Report and hand-off subcommands: the HTML report, lm-evaluation-harness, exporting a selection."""
from __future__ import annotations

import math
from pathlib import Path

from . import add_data_arguments


def cmd_report(args) -> None:
    from ..artifacts import check_output_path
    from ..report.html import write_report

    check_output_path("--out", args.out or Path(args.run_dir) / "report", {})
    page = write_report(args.run_dir, args.out)
    print(f"report written to {page} (figures beside it as PNG)")


def cmd_lm_eval(args) -> None:
    from ..evaluate.lm_eval_adapter import LmEvalSettings, evaluate_with_lm_eval, parse_mapping, parse_metrics
    from ..report.tables import capability_table

    settings = LmEvalSettings(
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()],
        capabilities=parse_mapping(args.capabilities), metrics=parse_metrics(args.metric or []),
        include_path=args.include_path, include_defaults=not args.only_include_path, limit=_number(args.limit),
        num_fewshot=args.num_fewshot,
        batch_size=int(args.batch_size) if args.batch_size.isdigit() else args.batch_size, device=args.device, dtype=args.dtype,
        apply_chat_template=not args.no_chat_template, seed=args.seed,
        confirm_run_unsafe_code=args.confirm_run_unsafe_code)
    out = args.out or Path(args.model).parent / "lm-eval"
    from ..artifacts import check_output_path

    check_output_path("--out", out, {"--model": args.model, "--base": args.base, "--include-path": args.include_path})
    summary = evaluate_with_lm_eval(args.model, settings, base=args.base, out_dir=out, quiet=args.quiet)
    for task, entry in summary["tasks"].items():
        print(f"{task:<24} {entry['metric']:<28} {100 * entry['score']:6.1f}  -> {entry['capability']}")
    print(capability_table({_model_label(args.model): summary}))
    print(f"summary written to {Path(out) / 'summary.json'} (lm-eval's results and sample prompts beside it)")


def _model_label(model: str) -> str:
    """RUN/bids-15pct-seed0/train/model -> bids-15pct-seed0: the folder that names the run."""
    parts = [p for p in Path(model).parts if p not in ("model", "train", "/")]
    return parts[-1] if parts else str(model)


def _number(text: str | None) -> int | float | None:
    """--limit: a count (10) or a fraction of each task (0.1)."""
    if text is None:
        return None
    from ..errors import ConfigError

    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--limit must be a number (a count like 50 or a fraction like 0.1), got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"--limit must be a positive finite number (a count like 50 or a fraction like 0.1), "
                          f"got {text!r}")
    return int(value) if value >= 1 and value.is_integer() else value


def cmd_export(args) -> None:
    from ..select.export import export_selection

    result = export_selection(args.selection_dir, args.pool, args.to, args.out, overwrite=args.overwrite,
                              format=args.format, skip_invalid=args.skip_invalid, id_field=args.id_field,
                              columns=args.columns)
    for note in result.notes:
        print(f"note: {note}")
    print(f"{result.rows} examples written to {result.path} ({args.to})")


def add_handoff_parsers(sub) -> None:
    """The report, lm-eval and export subcommands."""
    p = sub.add_parser("report", help="an HTML report of a run: compositions, influence, results, LP, IDEAL",
                       description="Write one self-contained HTML page (figures embedded) plus the PNG figures, "
                       "from whatever the run directory holds: per-task composition of each selection, the BIDS "
                       "diagnostics (AID, THI), influence distributions before and after normalisation, "
                       "per-capability results with their spread over seeds, learning percentage and IDEAL "
                       "volumes. Sections whose artifacts are absent say so.")
    p.add_argument("run_dir", metavar="RUN", help="a run directory (demo, experiment, run, ideal)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/report)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("lm-eval", help="score a fine-tuned model on lm-evaluation-harness tasks, per capability",
                       description="Evaluate a model folder (a LoRA adapter over its base, or a full model) with "
                       "lm-evaluation-harness, chat template applied, and summarise the tasks per capability: "
                       "macro-average, worst capability, spread. Needs pip install 'instruct_select[lmeval]'.")
    p.add_argument("--model", required=True, help="what `train` wrote (RUN/.../train/model), or any HF model folder / id")
    p.add_argument("--base", default=None, help="base model of an adapter (default: the adapter's own record)")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval tasks or groups, e.g. gsm8k,mmlu,ifeval")
    p.add_argument("--capabilities", default=None,
                   help="task=capability pairs (gsm8k=math,mmlu=knowledge) or a YAML/JSON file; default: one per task")
    p.add_argument("--metric", action="append", metavar="TASK=METRIC[,FILTER]",
                   help="a task's headline metric, repeatable (e.g. --metric gsm8k=exact_match,flexible-extract); "
                   "default: the first of exact_match, acc, acc_norm, pass@1, ... the task reports")
    p.add_argument("--include-path", default=None, help="a folder of your own lm-eval task YAML files")
    p.add_argument("--only-include-path", action="store_true",
                   help="use only the tasks in --include-path (skips indexing lm-eval's own, a few seconds)")
    p.add_argument("--limit", default=None, help="examples per task: a count, or a fraction below 1 (smoke tests)")
    p.add_argument("--num-fewshot", type=int, default=None)
    p.add_argument("--batch-size", default="8", help="batch size, or 'auto' (default: %(default)s)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16 or float16 (default: %(default)s)")
    p.add_argument("--no-chat-template", action="store_true", help="plain prompts (base models without a template)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--confirm-run-unsafe-code", action="store_true",
                   help="let code tasks (humaneval, mbpp) run the generated programs (also set HF_ALLOW_CODE_EVAL=1)")
    p.add_argument("--out", default=None, help="output folder (default: beside the model, lm-eval/)")
    p.set_defaults(func=cmd_lm_eval)

    p = sub.add_parser("export", help="write a selection as a datasets folder or JSONL for other trainers",
                       description="Write the examples of a selection folder, in rank order: --to hf is a Hugging "
                       "Face datasets folder (load_from_disk; id, task, messages, rank, score and the records' own "
                       "fields), --to jsonl the original records as JSON lines (what LLaMA-Factory and "
                       "open-instruct read). See docs/HANDOFF.md.")
    p.add_argument("selection_dir", metavar="SELECTION_DIR", help="a selection folder (holds selection.tsv)")
    p.add_argument("--pool", required=True, help="the pool the selection was made from")
    p.add_argument("--to", required=True, choices=["hf", "jsonl"], help="output kind")
    p.add_argument("--out", required=True, help="output folder (hf) or file (jsonl); must be new unless --overwrite")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out (never the selection folder)")
    add_data_arguments(p)
    p.set_defaults(func=cmd_export)
