"""A whole config: ``run`` (selection methods x budgets), ``ideal`` (IDEAL's rounds), ``merge`` (shard jobs' features)."""
from __future__ import annotations

from pathlib import Path

from ..artifacts import check_output_path
from ..errors import ConfigError
from .shared import resolve_chat_template, warn


def cmd_run(args) -> None:
    from ..config import RunConfig, apply_overrides, from_dict, load_yaml
    from ..run.pipeline import check_config, run_config
    from ..report.tables import results_tables

    data = apply_overrides(load_yaml(args.config), args.overrides)
    if data.get("kind") == "ideal":
        raise ConfigError(f"{args.config} is an IDEAL recipe (kind: ideal): run it with `instruct-select ideal {args.config}`")
    config = from_dict(RunConfig, data)
    config.chat_template = resolve_chat_template(config.chat_template, "chat_template") or ""
    check_output_path("run_dir", config.run_dir, {"config": args.config})
    _check_early_stop(config, args)
    warn(config.warnings())
    if args.dry_run:
        pool = check_config(config)
        print(f"{args.config}: valid; methods {config.methods} at budgets {config.budgets} of a pool of "
              f"{len(pool.examples)} examples into {config.run_dir}")
        from ..run.effective_settings import describe_effective_settings

        print(describe_effective_settings(config, data))
        return
    from ..distributed import Shard

    results = run_config(config, shard=Shard.parse(args.shard) if args.shard else None,
                         stop_after=args.stop_after)
    if results.rows():
        print(results_tables(results.rows()))
    for label, entry in results.arms.items():
        print(f"{label}: selection {entry.selection}" + (f", model {entry.model}" if entry.model else ""))


def _check_early_stop(config, args) -> None:
    """--shard and --stop-after name stages the run must have; otherwise they would be ignored
    while the job selects and fine-tunes everything."""
    from ..select.registry import get_selector

    needs = {need for method in config.methods for need in get_selector(method).needs}
    warmed = sorted(needs & {"attribution", "hidden_states"})
    if args.shard:
        from ..distributed import Shard

        Shard.parse(args.shard)
        if "attribution" not in needs:
            raise ConfigError(f"--shard splits the gradient features, and methods {config.methods} compute none "
                              "(only less, bids and the influence ablations do); drop --shard")
    if args.stop_after and not warmed:
        raise ConfigError(f"--stop-after {args.stop_after}: methods {config.methods} have no {args.stop_after} "
                          "stage (only the influence methods and rds do); drop --stop-after")


def cmd_ideal(args) -> None:
    from ..ideal.settings import check_ideal_inputs, load_ideal_config

    paths, settings = load_ideal_config(args.config, args.overrides)
    settings.chat_template = resolve_chat_template(settings.chat_template, "chat_template") or ""
    check_output_path("run_dir", paths.run_dir, {"config": args.config, "model": paths.model, "pool": paths.pool,
                                                 "reference": paths.reference, "tests": paths.tests,
                                                 "domain_map_file": settings.domain_map_file})
    warn(settings.train.warnings())
    check_ideal_inputs(paths, settings)
    if args.dry_run:
        print(f"{args.config}: valid; {settings.rounds} rounds, m={settings.m}, layers {settings.layers}")
        return
    from ..run.ideal_rounds import run_ideal

    result = run_ideal(paths.pool, paths.reference, paths.model, paths.run_dir, settings,
                       tests=paths.tests or None)
    for entry in result["rounds"]:
        print(f"round {entry['round']}: volumes {entry['volumes']['before']} -> {entry['volumes']['after']}")
    print(f"IDEAL run written to {paths.run_dir}/ideal")


def cmd_merge(args) -> None:
    from ..run.producers.attribution import merge_all_shards

    folder = Path(args.features_dir)
    if not folder.exists():
        raise ConfigError(f"{folder} does not exist; give the features folder of a run (RUN/influence/features)")
    if not folder.is_dir():
        raise ConfigError(f"{folder} is a file; give the features folder of a run (RUN/influence/features), "
                          "whose checkpoint folders hold the shards")
    # The pattern merge_all_shards reads: RUN/influence/features/SPLIT/epoch-E/shard-I-of-N.
    if not any(folder.glob("*/epoch-*/shard-*-of-*")):
        raise ConfigError(f"{folder} holds no feature shards (no SPLIT/epoch-E/shard-I-of-N folders); give the features folder "
                          "of a run whose `run --shard I/N` jobs wrote it (RUN/influence/features)")
    merged = merge_all_shards(args.features_dir)
    for folder in merged:
        print(f"merged {folder}")
