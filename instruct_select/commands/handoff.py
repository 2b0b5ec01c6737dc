"""Report and hand-off subcommands: the HTML report, lm-evaluation-harness, exporting a selection."""
from __future__ import annotations

import math
from pathlib import Path



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
