"""``experiment NAME``: run one of the experiments (``instruct_select.experiments``) from its arguments."""
from __future__ import annotations

from ..artifacts import check_output_path


def cmd_experiment(args) -> None:
    """Check the experiment's output folders against its inputs, then run its ``main(args)``
    (``args.experiment_main``, set by the parser)."""
    lab = getattr(args, "lab", None) or getattr(args, "lab_dir", None)
    if getattr(args, "run_dir", None) is not None:
        check_output_path("--run-dir", args.run_dir, {"--lab": lab})
    if lab:
        check_output_path("--lab", lab, {})
    args.experiment_main(args)
