"""Any selector over any representation (select/grid.py): the named methods keep their selections,
every grid pair passes the selector conformance test, and each selector's rule gives the answer
worked out by hand on a small matrix."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from instruct_select.config import RunConfig
from instruct_select.data.example import Example
from instruct_select.errors import ConfigError
from instruct_select.features.representations import Representations
from instruct_select.select.base import SelectionContext
from instruct_select.select.grid import RULES, GridSelector, grid_methods
from instruct_select.method_names import GRID_SELECTORS, REPRESENTATIONS, method_name, with_representation
from instruct_select.select.registry import REGISTRY, get_selector, grid_selectors
from instruct_select.select.round_robin import round_robin_fast, round_robin_naive, turn_order
from instruct_select.select.selection import run_selector
from test_selectors import _artifacts, _pool

# Each named method's selection (budget 9, seed 5) on _artifacts(_pool(60), seed=11), recorded with
# the code before the grid existed (commit ccf5256): the grid must not change any of them.
RECORDED = {
    "bids": ["p033", "p035", "p036", "p051", "p017", "p001", "p013", "p012", "p047"],
    "ifd": ["p006", "p034", "p055", "p033", "p043", "p020", "p007", "p027", "p014"],
    "instance-max": ["p033", "p035", "p036", "p013", "p051", "p047", "p017", "p012", "p028"],
    "less": ["p017", "p028", "p045", "p052", "p027", "p037", "p008", "p031", "p051"],
    "lp-easy": ["p035", "p031", "p020", "p049", "p052", "p021", "p005", "p046", "p058"],
    "lp-hard": ["p018", "p024", "p051", "p025", "p012", "p017", "p054", "p050", "p036"],
    "lp-random": ["p055", "p029", "p006", "p058", "p031", "p017", "p005", "p042", "p038"],
    "normalized": ["p033", "p035", "p017", "p036", "p051", "p013", "p012", "p028", "p047"],
    "random": ["p043", "p035", "p054", "p037", "p049", "p008", "p009", "p055", "p025"],
    "rds": ["p015", "p021", "p053", "p004", "p055", "p032", "p018", "p002", "p007"],
    "rds+": ["p035", "p020", "p049", "p046", "p036", "p029", "p016", "p002", "p028"],
    "sum": ["p028", "p017", "p037", "p045", "p027", "p036", "p042", "p000", "p052"],
    "task-balanced": ["p028", "p017", "p031", "p035", "p051", "p037", "p013", "p052", "p027"],
}


@pytest.mark.parametrize("method", sorted(RECORDED))
def test_named_methods_keep_their_selections(method):
    pool = _pool(60)
    assert run_selector(method, SelectionContext(pool, seed=5, artifacts=_artifacts(pool, seed=11)),
                        "9").ids == RECORDED[method]


@pytest.mark.parametrize("selector,representation", [("less", "less"), ("bids", "less"), ("rds+", "rds+")])
def test_paper_pairs_on_the_grid_are_the_papers_methods(selector, representation):
    """Written on the grid, a paper's pair is its method; and the grid's own rule over the paper's
    representation gives the same ranking, bit for bit (ids and scores)."""
    pool = _pool(60)
    art = _artifacts(pool, seed=11)
    assert get_selector(f"{selector}:{representation}") is REGISTRY[selector]
    named = run_selector(selector, SelectionContext(pool, artifacts=art), "20")
    assert run_selector(with_representation(selector, representation), SelectionContext(pool, artifacts=art),
                        "20").ids == named.ids
    selection = SelectionContext(pool=pool, artifacts=art)
    grid = GridSelector(selector, representation).rank(selection, 20)
    assert grid.ids == named.ids and grid.scores == named.scores


@pytest.mark.parametrize("method", sorted(grid_selectors()))
def test_grid_pairs_report_their_axes_and_rank_by_prefix(method):
    """Beyond the conformance test (tests/test_selectors.py, which runs every grid pair): the
    diagnostics name the pair, every pick has a finite score, and a larger budget extends the ranking."""
    pool = _pool()
    artifacts = _artifacts(pool)
    first = run_selector(method, SelectionContext(pool, seed=3, artifacts=artifacts), "7")
    selector, representation = method.split(":")
    assert first.diagnostics["selector"] == selector and first.diagnostics["representation"] == representation
    json.dumps(first.diagnostics)  # diagnostics.json can hold them
    assert first.scores is not None and len(first.scores) == 7 and all(np.isfinite(first.scores))
    assert run_selector(method, SelectionContext(pool, seed=3, artifacts=artifacts), "12").ids[:7] == first.ids


def test_grid_names_and_refusals():
    assert grid_methods(["less"], ["less", "bids", "uot"]) == ["less", "bids", "uot:less"]
    assert len(grid_methods()) == len(GRID_SELECTORS) * len(REPRESENTATIONS)
    assert set(grid_methods()) == set(grid_selectors()) | {"less", "bids", "rds+"}
    assert method_name("bids", "rds+") == "bids:rds+" and method_name("bids:embed", "rds+") == "bids:embed"
    assert method_name("random", "rds+") == "random"  # no similarity matrix: no representation
    with pytest.raises(ConfigError, match="needs a representation: name it as uot:less"):
        get_selector("uot")
    with pytest.raises(ConfigError, match="unknown representation 'gradients'"):
        get_selector("bids:gradients")
    with pytest.raises(ConfigError, match="only the grid selectors"):
        method_name("ifd:rds+")


def test_config_takes_the_representation_and_refuses_embed_without_an_encoder():
    config = RunConfig(model="m", pool="p", methods=["random", "less", "bids", "rds+", "uot:less"], representation="rds+")
    assert config.methods == ["random", "less:rds+", "bids:rds+", "rds+", "uot:less"]
    assert RunConfig(model="m", pool="p", methods=["bids:less", "rds+:rds+"]).methods == ["bids", "rds+"]
    with pytest.raises(ConfigError, match="embed representation, which needs an encoder: set embed_encoder"):
        RunConfig(model="m", pool="p", methods=["bids"], representation="embed")
    pool = _pool()
    with pytest.raises(ConfigError, match="embed_encoder set to a local encoder folder"):
        run_selector("bids:embed", SelectionContext(pool, artifacts={}), 5)


def _rank(selector, scores, tasks, limit, options=None):
    """The grid rule of ``selector`` on the similarity matrix ``scores`` (rows p0.., columns tagged by task)."""
    scores = np.asarray(scores, dtype=np.float32)
    ids = [f"p{i}" for i in range(len(scores))]
    columns = [{"id": f"v{j}", "task": t, "subtask": None} for j, t in enumerate(tasks)]
    return RULES[selector][0](scores, ids, columns, options or {}, limit)


#                 a    a    b
HAND = np.array([[.9, .1, .0],   # p0: task a mean .5, b 0; max .9
                 [.4, .4, .6],   # p1: a .4, b .6; max .6
                 [.8, .8, .1]])  # p2: a .8, b .1; max .8
HAND_TASKS = ["a", "a", "b"]


def test_less_task_max_by_hand():
    # best task mean: p2 .8 (a), p1 .6 (b), p0 .5 (a)
    ranking = _rank("less", HAND, HAND_TASKS, 3)
    assert ranking.ids == ["p2", "p1", "p0"] and ranking.scores == pytest.approx([.8, .6, .5])


def test_doubly_greedy_by_hand():
    # each row's best validation example: p0 .9, p2 .8, p1 .6
    ranking = _rank("doubly-greedy", HAND, HAND_TASKS, 3)
    assert ranking.ids == ["p0", "p2", "p1"] and ranking.scores == pytest.approx([.9, .8, .6])
    assert ranking.diagnostics["nearest_task"] == {"a": 2, "b": 1}


def test_rds_plus_rule_by_hand():
    # task a's max: p0 .9, p2 .8, p1 .4; task b's max: p1 .6, p2 .1, p0 0. Turns: a p0, b p1, a p2.
    ranking = _rank("rds+", HAND, HAND_TASKS, 3)
    assert ranking.ids == ["p0", "p1", "p2"] and ranking.scores == pytest.approx([.9, .6, .8])
    assert ranking.diagnostics["picked_for_task"] == {"a": 2, "b": 1}


def test_round_robin_by_hand():
    #                   a     b
    scores = np.array([[.9, .1],    # p0
                       [.8, .2],    # p1
                       [.7, .3],    # p2
                       [.0, .25]])  # p3
    # a takes p0, b takes p2 (.3), a takes p1, b takes p3 (the only one left). Doubly greedy would
    # take p0, p1 first: the round-robin gives task b its own.
    ranking = _rank("round-robin", scores, ["a", "b"], 4)
    assert ranking.ids == ["p0", "p2", "p1", "p3"] and ranking.scores == pytest.approx([.9, .3, .8, .25])
    assert _rank("doubly-greedy", scores, ["a", "b"], 2).ids == ["p0", "p1"]
    # Unequal validation sizes: tasks alternate, a task's examples in column order, cycling.
    assert turn_order(["a", "b", "a", "a"]) == [0, 1, 2, 1, 3, 1]


@pytest.mark.parametrize("seed", range(4))
def test_round_robin_fast_equals_naive(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, size=(40, 7)).astype(np.float32)  # many ties: the lower row must win
    tasks = [["x", "y", "z"][j % 3] for j in range(7)]
    for limit in (1, 13, 40):
        assert round_robin_fast(scores, tasks, limit) == round_robin_naive(scores, tasks, limit)


def test_bids_rule_by_hand():
    """Column a: four strong rows .9 .8 .7 .6 (and 0, 0); column b: two weaker .5 .4. Standardised
    over the pool (mean .5, std .3651 / mean .15, std .2141): a = 1.095 .822 .548 .274 -1.369 -1.369,
    b = -.701 (x4) 1.635 1.168. Picks: p4 (1.635); then p0 (1.095 + 1.369 beats p5's 0); mean of the
    picks now (-.137, .467): p1 (.822 + .137 = .959 beats p5's 1.168 - .467 = .701); mean (.183, .078):
    p5 (1.168 - .078 = 1.090 beats p2's .548 - .183 = .365). The raw top 4 would be p0..p3."""
    scores = np.zeros((6, 2), dtype=np.float32)
    scores[:4, 0] = [.9, .8, .7, .6]
    scores[4:, 1] = [.5, .4]
    assert _rank("bids", scores, ["a", "b"], 4).ids == ["p4", "p0", "p1", "p5"]
    assert _rank("doubly-greedy", scores, ["a", "b"], 4).ids == ["p0", "p1", "p2", "p3"]


def test_uot_by_hand():
    """Each validation example ships its mass 1/V; with the pool's marginal nearly free (rho2 = 1e-4)
    it goes almost all to its nearest pool example, at temperature epsilon = .01 on the cost (1 - S)/2.
    v0 and v1 are both nearest p2, v2 nearest p0: p2 gets about 2/3, p0 about 1/3, the others
    almost nothing (p1, the runner-up of every column, ahead of p3)."""
    scores = np.array([[.1, .2, .9],    # p0
                       [.7, .7, .6],    # p1
                       [.9, .95, .1],   # p2
                       [.0, .0, .0]])   # p3
    ranking = _rank("uot", scores, ["a", "a", "b"], 4)
    assert ranking.ids == ["p2", "p0", "p1", "p3"]
    assert ranking.scores[:2] == pytest.approx([2 / 3, 1 / 3], abs=0.01)
    # The closed form as rho2 -> 0: each column's mass split by softmax(-cost / epsilon).
    cost = (1 - scores.T) / 2
    split = np.exp(-cost / .01) / np.exp(-cost / .01).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(ranking.scores, (split.sum(axis=0) / 3)[[2, 0, 1, 3]], atol=2e-3)
    assert ranking.diagnostics["uot"]["transported_mass"] == pytest.approx(1, abs=1e-6)
    with pytest.raises(ConfigError, match="uot_reg_m must be two numbers"):
        _rank("uot", scores, ["a", "a", "b"], 2, {"uot_reg_m": 1})


def test_the_embed_representation_is_cosine_of_the_encoder_vectors():
    """bids:embed on vectors whose cosines are known: the similarity matrix the rules read."""
    pool = [Example(f"e{i}", "t", [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}])
            for i in range(3)]
    reps = Representations(["e0", "e1", "e2"], np.array([[2, 0], [0, 1], [1, 1]], np.float32),
                           ["v0", "v1"], np.array([[1, 0], [0, 3]], np.float32), ["a", "b"])
    from instruct_select.select.representations import REPRESENTATION_AXIS

    sim = REPRESENTATION_AXIS["embed"].similarity(SelectionContext(pool=pool, artifacts={"encoder_embeddings": reps}))
    r = 1 / np.sqrt(2)
    np.testing.assert_allclose(sim.scores, [[1, 0], [0, 1], [r, r]], atol=1e-6)
    assert sim.columns == [{"id": "v0", "task": "a", "subtask": None}, {"id": "v1", "task": "b", "subtask": None}]
    # round-robin: v0 takes e0, v1 takes e1, v0 takes e2
    assert run_selector("round-robin:embed", SelectionContext(pool, artifacts={"encoder_embeddings": reps}),
                        3).ids == ["e0", "e1", "e2"]


def test_encoder_embeddings_are_each_example_mean_pooled_alone(tiny_model_dir, tmp_path):
    """Batched with padding, each vector is the mean of the encoder's last states over the example's
    own tokens, as when it is embedded alone."""
    import torch

    from instruct_select.features.embeddings import conversation_text
    from instruct_select.features.store import FeatureStore
    from instruct_select.run.producers.encoder_embeddings import fill_encoder_embeddings, load_encoder

    examples = [Example(f"x{i}", "t", [{"role": "user", "content": "word " * (1 + 5 * i)},
                                       {"role": "assistant", "content": "ok"}]) for i in range(4)]
    model, tokenizer = load_encoder(tiny_model_dir)
    store = FeatureStore.open_or_create(tmp_path / "store", [e.id for e in examples], int(model.config.hidden_size),
                                        "float32", {})
    assert fill_encoder_embeddings(model, tokenizer, examples, store, 64, 3) == {"computed": 4}
    with torch.inference_mode():
        alone = [model(**tokenizer(conversation_text(e), return_tensors="pt")).last_hidden_state[0].mean(dim=0).numpy()
                 for e in examples]
    np.testing.assert_allclose(np.asarray(store.features), np.stack(alone), atol=1e-4)


def test_an_encoder_folder_is_checked_and_never_substituted(tmp_path):
    from instruct_select.run.producers.encoder_embeddings import check_encoder

    with pytest.raises(ConfigError, match="needs an encoder: set embed_encoder"):
        check_encoder("")
    with pytest.raises(ConfigError, match="is not a local model folder"):
        check_encoder(str(tmp_path / "absent"))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="not a tokenizer"):
        check_encoder(str(tmp_path))


def test_grid_pairs_end_to_end_on_the_tiny_lab(tiny_lab, tiny_model_dir, tmp_path):
    """bids and round-robin over embed (the tiny model's folder as the encoder) and uot over rds+
    through ``run_config``: embed's stores where the layout says, one selection folder per pair with
    its diagnostics; a rerun reuses every stage."""
    from instruct_select.artifacts import finished_manifest
    from instruct_select.config import from_dict
    from instruct_select.data.loading import load_examples
    from instruct_select.features.store import FeatureStore
    from instruct_select.layout import Arm, RunLayout
    from instruct_select.run.pipeline import run_config
    from instruct_select.select.selection import read_selected_ids

    config = from_dict(RunConfig, {
        "model": str(tiny_lab.model("small")), "pool": str(tiny_lab.pool), "validation": str(tiny_lab.validation),
        "run_dir": str(tmp_path / "run"), "methods": ["bids", "round-robin", "uot:rds+"], "representation": "embed",
        "embed_encoder": str(tiny_model_dir), "budgets": ["10%"], "dtype": "float32", "device": "cpu",
        "finetune": False, "influence": {"features": {"max_length": 128, "token_budget": 2048}}})
    assert config.methods == ["bids:embed", "round-robin:embed", "uot:rds+"]
    run_config(config)
    layout = RunLayout(config.run_dir)
    pool = load_examples(tiny_lab.pool)
    store = FeatureStore.open(layout.encoder_embeddings("pool"))
    assert store.complete() and sorted(store.ids) == sorted(e.id for e in pool.examples)
    assert finished_manifest(layout.encoder_embeddings("validation")) is not None
    folders = {m: layout.arm(Arm(m, "10%", config.seed)).select for m in config.methods}
    for method, folder in folders.items():
        diagnostics = json.loads((folder / "diagnostics.json").read_text())
        assert diagnostics["selector"] + ":" + diagnostics["representation"] == method
        assert len(read_selected_ids(folder)) == round(0.1 * len(pool.examples))
    stamps = {p: p.stat().st_mtime_ns for p in layout.root.rglob("manifest.json")}
    run_config(config)
    assert {p: p.stat().st_mtime_ns for p in layout.root.rglob("manifest.json")} == stamps


def test_representation_cost_sums_its_stage_manifests(tmp_path):
    from instruct_select.layout import RunLayout
    from instruct_select.run.producers.costs import representation_seconds

    layout = RunLayout(tmp_path)

    def finished(folder, seconds):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manifest.json").write_text(json.dumps({"stage": "x", "seconds": seconds}))

    assert representation_seconds(layout, "rds+") is None and representation_seconds(layout, "less") is None
    finished(layout.representations("pool"), 2.5)
    assert representation_seconds(layout, "rds+") is None  # validation's stage unfinished
    finished(layout.representations("validation"), 0.5)
    assert representation_seconds(layout, "rds+") == 3.0
    finished(layout.warmup, 10)
    finished(layout.feature_store("pool", 1), 4)
    finished(layout.feature_store("pool", 1) / "shard-0-of-2", 3)  # a shard job's own time counts too
    finished(layout.feature_store("validation", 1), 1)
    finished(layout.scores, 0.25)
    assert representation_seconds(layout, "less") == 18.25


def test_select_command_takes_the_representation(tmp_path, capsys):
    """`select --method uot --representation less --scores DIR` selects over the attribution
    matrix; a representation `select` cannot compute, or a grid selector without one, is refused."""
    from instruct_select import cli
    from instruct_select.artifacts import atomic_write_json

    pool = _pool(20)
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps({"id": e.id, "task": e.task, "messages": e.messages}) + "\n"
                                                 for e in pool))
    matrix = _artifacts(pool)["attribution"]
    scores = tmp_path / "scores"
    scores.mkdir()
    np.save(scores / "scores.npy", matrix.scores)
    atomic_write_json(scores / "rows.json", matrix.rows)
    atomic_write_json(scores / "columns.json", matrix.columns)
    atomic_write_json(scores / "manifest.json", {"stage": "scores", "settings": {}, "inputs": {}, "outputs": {}})
    base = ["select", "--pool", str(tmp_path / "pool.jsonl"), "--budget", "5"]
    assert cli.main([*base, "--method", "uot", "--representation", "less", "--scores", str(scores),
                     "--out", str(tmp_path / "uot")]) == 0
    expected = run_selector("uot:less", SelectionContext(pool, artifacts={"attribution": matrix}), 5).ids
    rows = (tmp_path / "uot" / "selection.tsv").read_text().splitlines()[1:]
    assert [r.split("\t")[1] for r in rows] == expected
    assert cli.main([*base, "--method", "bids", "--representation", "rds+", "--out", str(tmp_path / "b")]) != 0
    assert "--method bids:rds+ needs the 'representations' artifact, which `select` cannot compute" in capsys.readouterr().err
    assert cli.main([*base, "--method", "round-robin", "--out", str(tmp_path / "rr")]) != 0
    assert "selector 'round-robin' needs a representation" in capsys.readouterr().err


def test_bids_on_any_representation_checks_validation_sizes_before_any_work(tiny_model_dir, tmp_path):
    from instruct_select.run.pipeline import check_config

    pool = _pool(20)
    (tmp_path / "pool.jsonl").write_text("".join(json.dumps({"id": e.id, "task": e.task, "messages": e.messages}) + "\n"
                                                 for e in pool))
    validation = tmp_path / "validation"
    validation.mkdir()
    for task, n in (("code", 2), ("math", 3)):
        (validation / f"{task}.jsonl").write_text("".join(
            json.dumps({"id": f"{task}{i}", "messages": [{"role": "user", "content": "q"},
                                                          {"role": "assistant", "content": "a"}]}) + "\n"
            for i in range(n)))
    config = RunConfig(model=str(tiny_model_dir), pool=str(tmp_path / "pool.jsonl"), validation=str(validation),
                       run_dir=str(tmp_path / "run"), methods=["bids"], representation="rds+", device="cpu")
    with pytest.raises(Exception, match="equal number of validation examples per task"):
        check_config(config)
    import dataclasses

    assert len(check_config(dataclasses.replace(config, methods=["uot"])).examples) == 20  # uot:rds+ has no such rule


def test_knn_uniform_by_hand(caplog):
    """Distances 1 - S. v0's nearest: p0 .1, p1 .2, p2 .9; v1's: p3 0, p1 .5, p2 .6. With alpha .5 and
    C 1 the rule needs (.5) x gaps >= (1 - .5) x 2 = 1: K = 1 gives gaps (.2 - .1) + (.5 - 0) = .6
    (.3 < 1); K = 2 gives (2 x .9 - .3) + (2 x .6 - .5) = 2.2 (1.1 >= 1): K = 2, each of the two
    nearest of each validation example gets 1 / (2 x 2). p1 is near both: .5; p0 and p3 .25 each, p3
    first (max similarity 1 against p0's .9); the rest 0, p2 (max similarity .4) before p4 (.1)."""
    scores = 1 - np.array([[.1, .7],    # p0
                           [.2, .5],    # p1
                           [.9, .6],    # p2
                           [.95, .0],   # p3
                           [.99, .9]])  # p4
    ranking = _rank("knn-uniform", scores, ["a", "b"], 5, {"knn_alpha": .5, "knn_c": 1.0})
    assert ranking.ids == ["p1", "p3", "p0", "p2", "p4"]
    assert ranking.scores == pytest.approx([.5, .25, .25, 0, 0])
    assert ranking.diagnostics["knn"] == {"k": 2, "pool_examples_with_mass": 3}
    # The study's constants (alpha .01, C 5) never stop on 5 rows: every example spreads over all of them,
    # every row gets the same mass, and the selection is doubly greedy's (said in the log).
    assert _rank("knn-uniform", scores, ["a", "b"], 5).diagnostics["knn"]["k"] == 5
    with caplog.at_level(logging.WARNING, logger="instruct_select.select.knn_uniform"):
        spread = _rank("knn-uniform", scores, ["a", "b"], 3)
    assert spread.ids == _rank("doubly-greedy", scores, ["a", "b"], 3).ids and "the whole pool" in caplog.text


def test_an_explicit_representation_for_a_method_without_one_is_refused():
    pool = _pool()
    with pytest.raises(ConfigError, match="'random' takes no representation"):
        run_selector(with_representation("random", "rds+"), pool, 5)
    # in a config, representation applies to the grid selectors and leaves the others as they are
    assert RunConfig(model="m", pool="p", methods=["random"], representation="rds+").methods == ["random"]


@pytest.mark.parametrize("selector", [s for s in GRID_SELECTORS if s not in ("less", "bids")])
def test_grid_selectors_over_less_leave_out_the_rows_the_matrix_excludes(selector):
    from instruct_select.influence.attribution import AttributionMatrix

    pool = _pool(30)
    matrix = _artifacts(pool)["attribution"]
    best = matrix.rows[int(np.argmax(matrix.scores.max(axis=1)))]  # every rule would take it early
    art = {"attribution": AttributionMatrix(matrix.scores, matrix.rows, matrix.columns, [best])}
    ids = run_selector(f"{selector}:less", SelectionContext(pool, artifacts=art), "29").ids
    assert best not in ids and len(ids) == 29
