"""Learning percentage end to end: a selection model picks the hard examples, a target model trains on them.

    run_dir/selectors/<label>/train/          the selection model fine-tuned on the whole pool for n
                                              epochs, one checkpoint per epoch
    run_dir/selectors/<label>/losses/epoch-E/ every pool example's loss before training and after each epoch
    run_dir/selectors/<label>/embeddings/     the clustering embeddings (the base selection model's)
    run_dir/<method>-<budget>-seed<s>[-by-<label>]/  select, train (the target), evaluation
    run_dir/agreement-<a>-vs-<b>.json          Kendall τ between two models' LP, when asked

Every step is a cached stage, so a rerun only reads and an interrupted one resumes. The selection
model is trained once with its own seed (``LPSettings.selection_train``, default seed 0) and shared
by every budget and seed; the run's seed varies k-means, lp-random and the target's fine-tuning.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .artifacts import atomic_write_json
from .config import LPSettings
from .features.embeddings import embeddings_stage
from .features.trajectories import LossTrajectories, loss_trajectories_stage
from .pipeline import evaluate_stage, load_pool, select_stage, train_stage
from .select.base import get_selector
from .select.budget import Budget
from .select.learning_percentage import lp_agreement


def model_trajectories(model: str | Path, pool_path: str | Path, out_dir: str | Path, settings: LPSettings, *,
                       loaded=None, device: str | None = None, dtype: str = "float32",
                       chat_template: str | None = None, progress: bool = True, log=print) -> LossTrajectories:
    """Train ``model`` on the whole pool (n epochs, checkpoints kept) and return its loss trajectories.

    ``loaded``: the pool already loaded from ``pool_path`` (saves reading it twice).
    """
    out_dir = Path(out_dir)
    train = settings.selection_train_settings()
    loaded = load_pool(pool_path) if loaded is None else loaded
    train_stage(model, pool_path, out_dir / "train", train, device=device, dtype=dtype, chat_template=chat_template,
                loaded=loaded, progress=progress, log=log)
    return loss_trajectories_stage(model, out_dir / "train", loaded.examples, loaded.fingerprint, out_dir / "losses",
                                   max_length=train.max_length, token_budget=settings.pass_token_budget(),
                                   max_batch_size=settings.max_batch_size, device=device, progress=progress, log=log)


def selection_artifacts(model: str | Path, pool_path: str | Path, out_dir: str | Path, settings: LPSettings, *,
                        device: str | None = None, dtype: str = "float32", chat_template: str | None = None,
                        progress: bool = True, log=print) -> tuple[dict[str, Any], dict[str, str]]:
    """{"loss_trajectories": LossTrajectories, "embeddings": Embeddings} and their fingerprints."""
    out_dir = Path(out_dir)
    loaded = load_pool(pool_path)
    trajectories = model_trajectories(model, pool_path, out_dir, settings, loaded=loaded, device=device,
                                      dtype=dtype, chat_template=chat_template, progress=progress, log=log)
    max_length = settings.selection_train_settings().max_length
    embeddings = embeddings_stage(model, loaded.examples, loaded.fingerprint, out_dir / "embeddings",
                                  encoder=settings.encoder, max_length=max_length,
                                  token_budget=settings.pass_token_budget(),
                                  max_batch_size=settings.max_batch_size, dtype=dtype, chat_template=chat_template,
                                  device=device, progress=progress, log=log)
    artifacts = {"loss_trajectories": trajectories, "embeddings": embeddings}
    return artifacts, {name: value.fingerprint() for name, value in artifacts.items()}


def selection_folder(method: str, budget: str, seed: int, label: str | None) -> str:
    if method == "full":
        return f"full-seed{seed}"
    tag = str(Budget.parse(budget)).replace("%", "pct")
    return f"{method}-{tag}-seed{seed}" + (f"-by-{label}" if label else "")


def run_learning_percentage(pool: str | Path, tests: str | Path | None, selection_model: str | Path,
                            target_model: str | Path, run_dir: str | Path, *, method: str = "lp-hard",
                            budget: str = "10%", seed: int = 0, settings: LPSettings | None = None,
                            selection_label: str = "selector", target_label: str = "target",
                            kendall: bool = False, finetune: bool = True, device: str | None = None,
                            progress: bool = True, log=print) -> dict[str, Any]:
    """Select from ``pool`` with ``method`` at ``budget`` (LP by ``selection_model``), fine-tune
    ``target_model`` on the selection and evaluate it on ``tests`` (a folder, or None to skip).

    Returns {"selection", "model", "summary", "diagnostics", "agreement"} (paths as strings; the
    evaluation's outputs; the selector's diagnostics; Kendall τ between the selection model's and
    the target's LP when ``kendall``, which trains the target on the whole pool for n epochs too).
    """
    settings = settings or LPSettings()
    run_dir = Path(run_dir)
    needed = get_selector(method).needs
    artifacts: dict[str, Any] = {}
    fingerprints: dict[str, str] = {}
    if needed:
        artifacts, fingerprints = selection_artifacts(selection_model, pool, run_dir / "selectors" / selection_label,
                                                      settings, device=device, progress=progress, log=log)
    folder = run_dir / selection_folder(method, budget, seed, selection_label if needed else None)
    options = settings.options() if needed else None
    selected = select_stage(pool, method, budget, folder / "select", seed=seed, log=log,
                            artifacts={k: artifacts[k] for k in needed},
                            artifact_fingerprints={k: fingerprints[k] for k in needed}, options=options)
    result: dict[str, Any] = {"selection": str(selected.path), "model": None, "summary": None,
                              "diagnostics": str(selected.path / "diagnostics.json"), "agreement": None}
    if finetune:
        trained = train_stage(target_model, pool, folder / "train", settings.target_train_settings(seed),
                              selection_dir=selected.path, device=device, progress=progress, log=log)
        result["model"] = str(trained.path / "model")
        if tests:
            evaluated = evaluate_stage(trained.path / "model", tests, folder / "evaluation", settings.eval_settings(),
                                       device=device, progress=progress, log=log)
            result["summary"] = evaluated.manifest["outputs"]
    if kendall and needed:
        target = model_trajectories(target_model, pool, run_dir / "selectors" / target_label, settings,
                                    device=device, progress=progress, log=log)
        result["agreement"] = agreement(artifacts["loss_trajectories"], target, settings,
                                        run_dir / f"agreement-{selection_label}-vs-{target_label}.json")
    return result


def agreement(a: LossTrajectories, b: LossTrajectories, settings: LPSettings, path: str | Path) -> dict:
    """Kendall τ between the two models' LP (written to ``path`` as well)."""
    value = lp_agreement(a, b, settings.variant, settings.tolerance)
    atomic_write_json(path, value)
    return value


def run_learning_percentage_on_lab(lab, run_dir: str | Path, *, selection_size: str = "small",
                                   target_size: str = "large", **kwargs) -> dict[str, Any]:
    """``run_learning_percentage`` on a built lab (``instruct_select.lab.build.build_lab``)."""
    return run_learning_percentage(lab.pool, lab.test, lab.model(selection_size), lab.model(target_size), run_dir,
                                   selection_label=selection_size, target_label=target_size, **kwargs)
