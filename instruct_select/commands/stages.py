"""One stage at a time: ``select``, ``train``, ``evaluate``, ``inspect``, and ``methods`` (what select can use)."""
from __future__ import annotations

from pathlib import Path

from ..artifacts import check_output_path
from ..errors import ConfigError
from .shared import command_context, resolve_chat_template, warn


def cmd_select(args) -> None:
    from ..method_names import with_representation
    from ..run.stages import MethodInputs, TokenCounting, select_stage

    args.method = with_representation(args.method, args.representation)  # bids with rds+: bids:rds+
    check_output_path("--out", args.out, {"--pool": args.pool, "--scores": args.scores, "--tokenizer": args.tokenizer})
    artifacts = _selection_inputs(args)
    given = MethodInputs(artifacts=artifacts, tokens=TokenCounting(args.tokenizer) if args.tokenizer else None)
    result = select_stage(command_context(args, args.pool), args.method, args.budget, args.out, seed=args.seed,
                          given=given)
    print(f"selection written to {result.path}: {result.manifest['outputs']['n_selected']} examples "
          f"({result.manifest['outputs']['data']}, selection.tsv, diagnostics.json)")


def _selection_inputs(args) -> dict:
    """The artifacts --method needs (from --scores), checked with --tokenizer before any work: a
    missing one is refused naming the command that makes it."""
    from ..models.loading import check_tokenizer_path
    from ..select.base import SELECT_FLAGS, missing_need
    from ..select.registry import get_selector

    missing = [n for n in get_selector(args.method).needs if not (n in SELECT_FLAGS and args.scores)]
    if missing:
        raise ConfigError(missing_need(missing[0], args.method))
    if args.tokenizer:
        check_tokenizer_path(args.tokenizer, "--tokenizer")
    if not args.scores:
        return {}
    from ..artifacts import Artifact, fingerprint_model, require_finished
    from ..influence.attribution import AttributionMatrix

    require_finished(args.scores, "attribution matrix")
    return {"attribution": Artifact(AttributionMatrix.load(args.scores), fingerprint_model(args.scores))}


def cmd_train(args) -> None:
    from ..layout import TrainFolders
    from ..models.loading import check_model_source
    from ..run.stages import train_stage

    settings = _train_settings(args)
    check_output_path("--out", args.out, {"--model": args.model, "--data": args.data, "--selection": args.selection,
                                          "--config": args.config})
    _check_not_selection(args.data)
    warn(settings.warnings())
    check_model_source(args.model, "--model")
    template = resolve_chat_template(args.chat_template)
    context = command_context(args, args.data, device=args.device, dtype=args.dtype, chat_template=template)
    result = train_stage(context, args.model, args.out, settings, selection_dir=args.selection)
    print(f"model written to {TrainFolders(result.path).model}")


def _check_not_selection(data: str) -> None:
    """--data is the pool; a selection folder there gets the flag that takes it."""
    folder = Path(data)
    if folder.is_dir() and (folder / "selection.tsv").is_file():
        raise ConfigError(f"--data {data} is a selection folder; train on a selection with --data POOL "
                          f"--selection {data} (the pool the selection was made from)")


def cmd_evaluate(args) -> None:
    from ..config import EvalSettings
    from ..report.tables import results_tables
    from ..models.loading import check_model_path
    from ..run.stages import evaluate_stage

    settings = EvalSettings(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, max_length=args.max_length)
    check_model_path(args.model, "--model")
    if args.base:
        check_model_path(args.base, "--base")
    out = args.out or Path(args.model).parent / "evaluation"
    check_output_path("--out", out, {"--model": args.model, "--tests": args.tests, "--base": args.base})
    context = command_context(args, device=args.device, dtype=args.dtype)
    result = evaluate_stage(context, args.model, args.tests, out, settings, base=args.base)
    rows = {Path(args.model).name: result.manifest["outputs"]}
    print(results_tables(rows))
    print(f"metrics written to {Path(result.path) / 'metrics.json'}")


def cmd_inspect(args) -> None:
    from ..data.loading import load_examples

    loaded = load_examples(args.path, format=args.format, skip_invalid=args.skip_invalid, id_field=args.id_field,
                           columns=args.columns)
    print(loaded.summary())


def cmd_methods(args) -> None:
    from ..select.registry import available_selectors

    for name, selector in available_selectors().items():
        needs = ", ".join(selector.needs) or "nothing"
        print(f"{name:<16} {selector.description} (needs: {needs})")
    from ..select.grid import RULES
    from ..select.representations import REPRESENTATION_AXIS

    print("\nAny grid selector over any representation: SELECTOR:REPRESENTATION (e.g. bids:rds+), or "
          "representation: in the run config, --representation for select.")
    for name, (_, text) in RULES.items():
        print(f"  selector {name:<14} {text}")
    for name, rep in REPRESENTATION_AXIS.items():
        print(f"  representation {name:<8} {rep.description} (needs: {rep.need})")


def _train_settings(args):
    from ..config import TrainSettings, apply_overrides, from_dict, load_yaml

    data = load_yaml(args.config) if args.config else {}
    section = data.get("train", data)
    if "train" in data and not isinstance(section, dict):
        raise ConfigError(f"{args.config}: the train section must be a mapping of settings, got {section!r}")
    data = apply_overrides(section, args.overrides)
    return from_dict(TrainSettings, data)
