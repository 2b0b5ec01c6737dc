"""The mixture benchmark: its data builder (disjoint parts, equal validation sizes, no benchmark
data in the pool, the mixture's shares) and a tiny end-to-end run of the experiment."""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections import Counter

import pytest

from instruct_select.errors import InputError
from instruct_select.experiments import mixture as mixture_module
from instruct_select.experiments.mixture_data import (CAPABILITIES, MIXTURES, MixtureSizes, build_mixture,
                                                      write_mixture)
from tests.conftest import SHARED

DATA = SHARED / "data" / "real"
pytestmark = pytest.mark.skipif(not (DATA / "t0_sample.jsonl").is_file(), reason=f"{DATA} is not here")


def _texts(records):
    return {json.dumps(r["messages"], sort_keys=True) for r in records}


def _user_texts(records):
    return {r["messages"][-2]["content"] for r in records}


@pytest.fixture(scope="module")
def parts():
    return build_mixture(DATA, MixtureSizes.small())


def test_pool_follows_the_mixture_and_validation_sizes_are_equal(parts):
    sizes = MixtureSizes.small()
    counts = {source: len(rows) for source, rows in parts["pool"].items()}
    assert sum(counts.values()) == sizes.pool
    for source, share in MIXTURES["tulu"].items():
        assert abs(counts[source] - share * sizes.pool) <= 1
    assert max(counts, key=counts.get) == "t0"
    assert {c: len(parts["validation"][c]) for c in CAPABILITIES} == {c: sizes.validation for c in CAPABILITIES}
    assert {c: len([r for r in parts["tests"][c] if r.get("checker") != "loss_only"]) for c in CAPABILITIES} \
        == sizes.tests


def test_pool_validation_and_tests_are_disjoint(parts):
    pool = set().union(*(_texts(rows) for rows in parts["pool"].values()))
    validation = set().union(*(_texts(rows) for rows in parts["validation"].values()))
    tests = set().union(*(_texts(rows) for rows in parts["tests"].values()))
    assert not pool & validation and not pool & tests and not validation & tests
    for capability in CAPABILITIES:  # and by question, not only by whole conversation
        assert not _user_texts(parts["validation"][capability]) & _user_texts(parts["tests"][capability])


def test_no_benchmark_data_in_the_pool(parts):
    pool_users = set().union(*(_user_texts(rows) for rows in parts["pool"].values()))
    benchmark_questions = set()
    for name in ("mmlu_val.jsonl", "mmlu_test.jsonl", "gsm8k_test.jsonl"):
        benchmark_questions |= {json.loads(line)["question"].strip()
                                for line in (DATA / name).read_text().split("\n") if line.strip()}
    for name in ("humaneval.jsonl", "ifeval_input_data.jsonl"):
        benchmark_questions |= {json.loads(line)["prompt"] for line in (DATA / name).read_text().split("\n")
                                if line.strip()}
    user_oriented = {json.loads(line)["instruction"] for line in
                     (DATA / "self_instruct_user_oriented.jsonl").read_text().split("\n") if line.strip()}
    for text in pool_users:
        assert text.strip() not in benchmark_questions
        assert not any(text.startswith(u) for u in user_oriented)
        assert not any(q in text for q in benchmark_questions if len(q) > 80)


def test_records_carry_their_metrics(parts):
    tests = parts["tests"]
    assert all(r["checker"] == "choice" and r["messages"][-1]["content"] == r["choices"][r["answer"]]
               for r in tests["knowledge"] + tests["reasoning"])
    assert {r["checker"] for r in tests["math"]} == {"number"}
    assert {r["checker"] for r in tests["coding"]} == {"humaneval"}
    small = MixtureSizes.small()
    assert Counter(r["checker"] for r in tests["instruction"]) == {"ifeval": small.tests["instruction"],
                                                                   "loss_only": small.loss_tests}
    # The second mixture shares validation and tests with the first (only the pool changes).
    other = build_mixture(DATA, dataclasses.replace(MixtureSizes.small(), mixture="code_math"))
    assert other["validation"] == parts["validation"] and other["tests"] == parts["tests"]
    assert len(other["pool"]["gsm8k"]) > len(parts["pool"]["gsm8k"])


def test_too_large_a_request_is_refused(tmp_path):
    with pytest.raises(InputError, match=r"usable .* fewer than the \d+ asked; ask for fewer"):
        build_mixture(DATA, MixtureSizes(pool=5000))


def test_the_files_load_as_a_run_reads_them(tmp_path):
    from instruct_select.data.loading import load_examples, load_test_sets

    counts = write_mixture(DATA, tmp_path, MixtureSizes.tiny())
    pool = load_examples(tmp_path / "pool.jsonl")
    assert Counter(e.task for e in pool.examples) == counts["pool"]
    assert set(load_test_sets(tmp_path / "tests")) == set(CAPABILITIES)
    assert set(load_test_sets(tmp_path / "validation")) == set(CAPABILITIES)


def test_plan_estimate_adds_up():
    plan, sizes = mixture_module.MixturePlan(), MixtureSizes()
    parts = mixture_module.estimate_seconds(sizes, plan)
    assert parts["total"] == pytest.approx(sum(v for k, v in parts.items() if k != "total"))
    assert mixture_module.estimate_seconds(MixtureSizes.small(), mixture_module.MixturePlan.small())["total"] \
        < parts["total"]


@pytest.mark.slow
def test_tiny_end_to_end_run(tiny_model_dir, tmp_path, monkeypatch, request):
    """Every arm kind on the tiny model: data, base, full, random, less, bids, rds+, ifd, IDEAL vs
    uniform, the second mixture, and the tables (with the claims) in the results file."""
    import torch

    real_config = mixture_module.mixture_config

    def tiny_config(*args, **kwargs):
        config = real_config(*args, **kwargs)
        influence = dataclasses.replace(config.influence, warmup=dataclasses.replace(config.influence.warmup, epochs=2),
                                        features=dataclasses.replace(config.influence.features, dim=64))
        train = dataclasses.replace(config.train, epochs=1)
        return dataclasses.replace(config, influence=influence, train=train, device="cpu",
                                   eval=dataclasses.replace(config.eval, max_length=2048, loss_token_budget=4096))

    monkeypatch.setattr(mixture_module, "mixture_config", tiny_config)
    monkeypatch.setattr("instruct_select.experiments.mixture_data.GENERATION_TOKENS",
                        {"math": 8, "coding": 8, "instruction": 8})
    plan = mixture_module.MixturePlan(budgets=["25%"], seeds=[0, 1], ideal_budgets=["25%"], ideal_rounds=1,
                                      grid=["uot:less", "bids:rds+"], grid_budgets=["25%"],
                                      second_budget="25%", second_methods=["bids"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is faster, and kinder to a shared machine
    request.addfinalizer(lambda: torch.set_num_threads(threads))
    sizes = dataclasses.replace(MixtureSizes.tiny(), pool=24)
    out, record = tmp_path / "results.md", tmp_path / "record"
    markdown = mixture_module.run_mixture(tiny_model_dir, DATA, plan, sizes,
                                          mixture_module.MixtureFolders(tmp_path / "run", out, record))
    assert out.read_text() == markdown
    for label in ("| base |", "| full |", "| random @ 25% |", "| less @ 25% |", "| bids @ 25% |",
                  "| rds+ @ 25% |", "| ifd @ 25% |", "| uniform @ 25% |", "| ideal @ 25% |", "| uot:less @ 25% |",
                  "| bids:rds+ @ 25% |"):
        assert label in markdown, label
    assert "### Second mixture (code_math)" in markdown and "holds here?" in markdown
    grid = markdown.split("### Representation × selector at 25%: macro held-out loss reduction")[1].split("###")[0]
    assert "| uot | " in grid and "| bids | " in grid and "cost of the representation | " in grid
    assert "only in the selector" in grid
    claims = markdown.split("### The papers' claims, here")[1].split("###")[0]
    verdicts = [line for line in claims.splitlines() if re.search(r"\| (holds|fails)( \(within noise\))? \|$", line)]
    assert len(verdicts) == 5  # every claim judged at 25%
    base = json.loads((tmp_path / "run" / "tulu" / "base" / "evaluation" / "metrics.json").read_text())
    assert set(base["capabilities"]) == set(CAPABILITIES)
    assert base["capabilities"]["coding"]["metric"] == "pass@1"
    from instruct_select.report.html import write_report

    page = write_report(tmp_path / "run" / "tulu").read_text()
    assert "Mixture benchmark" in page and "holds here?" in page and "mixture.png" in page
    assert "Representation × selector at 25%" in page and "only in the selector" in page
    assert "instruction_level_strict" in base["capabilities"]["instruction"]

    # On a fresh machine (no run folder), the record alone gives every table and only the cells it
    # lacks run again: here IDEAL's, from random's recorded selection.
    shutil.rmtree(record / "tulu" / "ideal-25pct")
    again = mixture_module.run_mixture(tiny_model_dir, DATA, plan, sizes,
                                       mixture_module.MixtureFolders(tmp_path / "fresh", tmp_path / "again.md", record))

    def tables(text):  # all but the timing line and the stage times (IDEAL ran again, in its own time)
        return text.split("\n", 1)[1].split("### Stage times")[0]

    assert tables(again) == tables(markdown)
    trained = {p.relative_to(tmp_path / "fresh").parts[:2] for p in (tmp_path / "fresh").rglob("train") if p.is_dir()}
    assert trained == {("tulu", "ideal-25pct")} and not (tmp_path / "fresh" / "tulu" / "influence").exists()
    assert not list(record.rglob("*.safetensors")) and list(record.rglob("scores.npy"))
    rewritten = mixture_module.run_mixture(tiny_model_dir, DATA, dataclasses.replace(plan, tables_only=True), sizes,
                                           mixture_module.MixtureFolders(tmp_path / "tables", tmp_path / "t.md", record))
    assert rewritten.split("\n", 1)[1] == again.split("\n", 1)[1]
    assert not [p for p in (tmp_path / "tables").rglob("*") if p.name in ("select", "train", "evaluation")]


def test_cells_sharing_an_artifact_run_together():
    order = mixture_module._cell_order(mixture_module.MixturePlan().main_methods())
    assert order[:3] == ["random", "less", "bids"] and order[-2:] == ["ifd", "full"]
    position = {m: i for i, m in enumerate(order)}
    gradients = [position[m] for m in order if m.endswith(":less")]
    states = [position[m] for m in ["rds+", *[m for m in order if m.endswith(":rds+")]]]
    assert max(gradients) < min(states) and states == list(range(min(states), max(states) + 1))


def test_claims_say_when_a_difference_is_within_noise():
    from instruct_select.report.mixture_tables import claims_table

    def row(macro, se):
        return [{"reduction": {"a": (macro, se), "b": (macro, se)}, "accuracy": {},
                 "reduction_summary": {"macro": macro, "worst": macro, "spread": 1.0}, "accuracy_summary": None}]

    # SE of each macro = sqrt(2 se²)/2; of the difference = hypot of the two.
    table = claims_table({"less @ 5%": row(10.0, 2.0), "full": row(12.0, 2.0), "bids @ 15%": row(20.0, 0.5)})
    assert "| less @ 5%: 10.0% loss red. | full: 12.0% loss red. | fails (within noise) |" in table  # 2 < 2 × 2.0
    assert "| bids @ 15%: 20.0% loss red. | full: 12.0% loss red. | holds |" in table  # 8 > 2 × 1.46
    assert "| not measured |" in table


def test_grid_table_separates_representation_from_selector():
    from instruct_select.report.mixture_tables import grid_table

    def row(macro, worst):
        return [{"reduction_summary": {"macro": macro, "worst": worst, "spread": 0.0}}]

    labels = {("less", "less"): "less @ 15%", ("less", "rds+"): "less:rds+ @ 15%",
              ("bids", "less"): "bids @ 15%", ("bids", "rds+"): "bids:rds+ @ 15%"}
    rows = {"less @ 15%": row(10, 1), "less:rds+ @ 15%": row(14, 2), "bids @ 15%": row(11, 3),
            "bids:rds+ @ 15%": row(16, 4)}
    table = grid_table(rows, labels, "reduction", {"less": 600.0})
    assert "| less | 10.0 (1.0) | 14.0 (2.0) |" in table and "| bids | 11.0 (3.0) | 16.0 (4.0) |" in table
    assert "| cost of the representation | 10.0 min | - |" in table
    # representation: |10-14|, |11-16| -> 4.5; selector: |10-11|, |14-16| -> 1.5
    assert "only in the representation: 4.50 (2 pairs); only in the selector: 1.50 (2 pairs)" in table
    del rows["bids:rds+ @ 15%"]
    assert "| bids | 11.0 (3.0) | - |" in grid_table(rows, labels, "reduction", {})


def test_a_record_from_other_settings_is_refused(tmp_path):
    from instruct_select.errors import ConfigError
    from instruct_select.experiments.record import check_settings, mirror

    check_settings(tmp_path / "record", {"config": {"epochs": 2}, "model": "m"})
    check_settings(tmp_path / "record", {"config": {"epochs": 2}, "model": "m"})  # the same: accepted
    with pytest.raises(ConfigError, match="other settings \\(config.epochs: was 2, now 3\\)"):
        check_settings(tmp_path / "record", {"config": {"epochs": 3}, "model": "m"})
    run = tmp_path / "run"
    for name, text in {"arm/select/selection.tsv": "a", "arm/train/model/config.json": "{}",
                       "arm/evaluation/metrics.json": "{}", "influence/features/x/manifest.json": "{}",
                       "influence/features/x/meta.json": "{}",
                       "data/pool.jsonl": "{}", "arm2/train/started.json": "{}"}.items():
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text(text)
    assert mirror(run, tmp_path / "record") == 3 and mirror(run, tmp_path / "record") == 0
    assert (tmp_path / "record" / "influence" / "features" / "x" / "manifest.json").is_file()
    assert (tmp_path / "record" / "arm" / "evaluation" / "metrics.json").is_file()
    assert not (tmp_path / "record" / "arm" / "train").exists()


def test_run_with_tests_evaluates_the_untuned_model_by_default(tiny_model_dir, tmp_path, monkeypatch):
    """`instruct-select run` on the benchmark's files: the base row comes without asking (issue 24 point 6)."""
    from instruct_select.config import EvalSettings, RunConfig, TrainSettings
    from instruct_select.run.pipeline import run_config

    monkeypatch.setattr("instruct_select.experiments.mixture_data.GENERATION_TOKENS",
                        {"math": 4, "coding": 4, "instruction": 4})

    assert RunConfig(model="m", pool="p").evaluate_base
    data = tmp_path / "data"
    write_mixture(DATA, data, dataclasses.replace(MixtureSizes.tiny(), tests={c: 1 for c in CAPABILITIES}))
    config = RunConfig(model=str(tiny_model_dir), pool=str(data / "pool.jsonl"), tests=str(data / "tests"),
                       run_dir=str(tmp_path / "run"), methods=["random"], budgets=["10%"], device="cpu",
                       train=TrainSettings(epochs=1, max_length=256, save_checkpoints=False),
                       eval=EvalSettings(max_new_tokens=4, max_length=4096, loss_token_budget=8192))
    results = run_config(config)
    assert results.base is not None and "base (no tuning)" in (tmp_path / "run" / "results.md").read_text()
    assert set(results.base["scores"]) == set(CAPABILITIES)
