"""The lab and the demo: ``lab build``, ``demo`` (the lab's, or ``--real``: a small real comparison)."""
from __future__ import annotations

from ..artifacts import check_output_path
from . import LAB_DEMO_METHODS, REAL_DATA


def cmd_lab_build(args) -> None:
    from ..lab.build import LabSettings, build_lab

    check_output_path("--out", args.out, {})
    settings = LabSettings(seed=args.seed, pool_size=args.pool_size)
    paths = build_lab(args.out, settings)
    print(f"lab ready in {paths.root}")
    for name, path in paths.describe().items():
        print(f"  {name:<12} {path}")


def cmd_demo(args) -> None:
    if args.real:
        _real_demo(args)
        return
    import time

    from ..run.demo import DemoSettings, demo_table, run_demo

    args.run_dir = args.run_dir or "runs/demo"
    check_output_path("--run-dir", args.run_dir, {"--lab": args.lab})
    check_output_path("--lab", args.lab, {})
    settings = DemoSettings(budget=args.budget, seed=args.seed, methods=args.methods.split(","),
                            model_size=args.model_size)
    start = time.time()
    rows = run_demo(args.run_dir, args.lab, settings)
    print(demo_table(args.run_dir, settings, rows, time.time() - start))
    print("\nOn a real model: bash scripts/demo.sh --real (SmolLM2-135M-Instruct on real data, a small "
          "comparison); the full real benchmark and its latest table: results/real_mixed.md")


def _real_demo(args) -> None:
    """A small real mixed benchmark: SmolLM2-135M-Instruct, one budget, one seed."""
    from ..experiments import Grid
    from ..experiments.real_mixed import DEMO_METHODS, RealMixedSizes, run_real_mixed
    from ..layout import RunLayout
    from ..models.real import prepare_real_model

    layout = RunLayout(args.run_dir or "runs/real-demo")
    check_output_path("--run-dir", layout.root, {})
    methods = DEMO_METHODS if args.methods == LAB_DEMO_METHODS else args.methods.split(",")
    markdown = run_real_mixed(prepare_real_model("smollm2-135m"), REAL_DATA, layout.root,
                              Grid([args.budget], [args.seed], methods=methods), sizes=RealMixedSizes.demo(),
                              out=layout.experiments_md)
    print(f"{markdown}\n(written to {layout.experiments_md})")
