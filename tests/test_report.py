"""The HTML report: built from a small run directory made through the real selection code (a
fake attribution matrix, fake loss trajectories, hand-written results and IDEAL summary), it
embeds every figure and writes the PNGs; absent artifacts are named on the page; headless
Chromium renders it to a non-blank screenshot."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess

import numpy as np
import pytest

from instruct_select.cli import main
from instruct_select.influence.attribution import AttributionMatrix
from instruct_select.artifacts import Artifact
from instruct_select.run.context import RunContext
from instruct_select.run.stages import MethodInputs, select_stage
from instruct_select.report.collect import budget_key, collect_run, results_from_json
from instruct_select.report.html import write_report

TASKS = ["code", "math", "logic"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(rng, shift=0.0, loss=True):
    """An evaluation's outputs: accuracy per capability and (unless ``loss`` is False, as in rows made
    before the held-out loss was measured) the loss, lower where accuracy is higher."""
    scores = {c: float(np.clip(rng.uniform(0.2, 0.8) + shift, 0, 1)) for c in ["code", "math", "logic", "format"]}
    values = list(scores.values())
    row = {"scores": scores, "summary": {"macro": float(np.mean(values)), "worst": min(values),
                                         "spread": float(np.std(values)), "n_capabilities": 4}}
    if loss:
        losses = {c: float(3.0 - 2.0 * v + rng.uniform(0, 0.3)) for c, v in scores.items()}
        values = list(losses.values())
        row["loss"] = losses
        row["loss_summary"] = {"macro": float(np.mean(values)), "worst": max(values),
                               "worst_capability": max(losses, key=losses.get), "spread": float(np.std(values)),
                               "n_capabilities": 4}
    return row


def _pool(path, n=60):
    lines = [json.dumps({"id": f"ex{i}", "task": TASKS[i % 3],
                         "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]})
             for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return [f"ex{i}" for i in range(n)]


def _attribution(folder, ids, rng):
    folder.mkdir(parents=True)
    scores = rng.normal(size=(len(ids), 6)).astype(np.float32) + np.repeat([0.5, 0.0, -0.5], 2)
    np.save(folder / "scores.npy", scores)
    (folder / "rows.json").write_text(json.dumps(ids))
    (folder / "columns.json").write_text(json.dumps([{"id": f"v{j}", "task": TASKS[j // 2]} for j in range(6)]))
    (folder / "manifest.json").write_text("{}")
    return AttributionMatrix.load(folder)


def _losses(folder, ids, rng, epochs=3):
    from instruct_select.features.store import FeatureStore

    start = rng.uniform(2, 4, size=len(ids))
    for epoch in range(epochs + 1):
        store = FeatureStore.open_or_create(folder / f"epoch-{epoch}", ids, 1, "float32",
                                            {"train_run": "t", "data": "d", "checkpoint": epoch})
        store.write(ids, (start * (1 - 0.3 * rng.uniform(0.2, 1.0, size=len(ids))) ** min(epoch, 1)
                          * 0.9 ** epoch)[:, None])
        (folder / f"epoch-{epoch}" / "manifest.json").write_text("{}")


def _lp_selection(folder, ids):
    folder.mkdir(parents=True)
    rows = ["rank\tid\ttask\tscore"] + [f"{r}\t{i}\t{TASKS[int(i[2:]) % 3]}\t" for r, i in enumerate(ids, 1)]
    (folder / "selection.tsv").write_text("\n".join(rows) + "\n")
    composition = {t: sum(TASKS[int(i[2:]) % 3] == t for i in ids) for t in TASKS}
    (folder / "diagnostics.json").write_text(json.dumps({"composition": composition,
                                                         "pool_composition": {t: 20 for t in TASKS}}))
    (folder / "manifest.json").write_text(json.dumps({"stage": "select", "seed": 0,
                                                      "settings": {"method": "lp-hard", "budget": "10%"}}))


def _ideal(folder):
    folder.mkdir(parents=True)
    rounds = [{"round": 1, "volumes": {"before": {"code": 20, "math": 20}, "after": {"code": 23, "math": 17}},
               "beta": {"code": 0.15, "math": -0.15}, "influences": {"code": -1.0, "math": 1.0},
               "metrics": _row(np.random.default_rng(5))},
              {"round": 2, "volumes": {"before": {"code": 23, "math": 17}, "after": {"code": 25, "math": 15}},
               "beta": {"code": 0.1, "math": -0.15}, "influences": {"code": -0.6, "math": 0.9}, "metrics": None}]
    (folder / "summary.json").write_text(json.dumps({"domains": ["code", "math"], "pool_volumes":
                                                     {"code": 20, "math": 20}, "rounds": rounds, "final": None}))


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """A run directory holding every artifact the report draws."""
    root = tmp_path_factory.mktemp("run")
    rng = np.random.default_rng(0)
    ids = _pool(root / "pool.jsonl")
    matrix = _attribution(root / "influence" / "scores", ids, rng)
    context = RunContext.create(pool=root / "pool.jsonl")
    for seed in (0, 1):
        for method in ("random", "less", "bids"):
            artifacts = {"attribution": Artifact(matrix, "m")} if method != "random" else {}
            select_stage(context, method, "10%", root / f"{method}-10pct-seed{seed}" / "select", seed=seed,
                         given=MethodInputs(artifacts=artifacts))
    select_stage(context, "full", "10%", root / "full-seed0" / "select")
    _losses(root / "influence" / "learning_percentage" / "losses", ids, rng)
    _lp_selection(root / "lp-hard-10pct-seed0" / "select", ids[:6])
    runs = {b: {m: [_row(rng, 0.1 * (m == "bids")) for _ in (0, 1)] for m in ("random", "less", "bids", "lp-hard")}
            for b in ("5%", "10%")}
    (root / "experiments.json").write_text(json.dumps({"budgets": ["5%", "10%"], "seeds": [0, 1], "runs": runs,
                                                       "methods": ["random", "less", "bids", "lp-hard"],
                                                       "base": _row(rng, -0.2)}))
    _ideal(root / "ideal")
    return root


def test_report_embeds_every_figure(full_run, tmp_path):
    page = write_report(full_run, tmp_path / "report")
    text = page.read_text()
    pngs = sorted((tmp_path / "report").glob("*.png"))
    names = {p.name for p in pngs}
    assert {"composition.png", "results-5pct.png", "results-10pct.png", "loss-5pct.png", "loss-10pct.png",
            "influence-aid-thi-10pct.png", "influence-distributions.png", "learning-percentage-0.png",
            "ideal-volumes.png"} <= names
    for png in pngs:
        data = png.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000
        assert base64.b64encode(data).decode() in text  # each PNG is embedded, byte for byte
    assert text.count("data:image/png;base64,") == len(pngs)
    assert "Not in this run" not in text
    assert "<table>" in text and "± " in text and "Models trained on each IDEAL mixture" in text
    loss = text[text.index("<section id='loss'>"):].split("</section>")[0]
    assert loss.count("<table>") == 2 and "held-out loss (nats)" in loss and "No loss for" not in loss
    assert f"{np.mean([r['loss']['code'] for r in _runs(full_run)['10%']['bids']]):.3f} ± " in loss
    # random and full carry no influence diagnostics of their own: the report computes them.
    note = text[text.index("AID and THI of "):].split(" computed here")[0]
    assert "random @ 10%" in note and "full" in note and "bids" not in note


def test_influence_figure_draws_the_instance_level_beside_older_diagnostics(full_run):
    from instruct_select.report import plots

    bids = next(s for s in collect_run(full_run).selections if s.label == "bids-10pct-seed0")
    normalised = bids.influence["normalised"]
    assert set(normalised["aid_instance"]) == {f"v{j}" for j in range(6)} == set(bids.influence["instance_task"])
    assert sum(normalised["thi_instance"].values()) == sum(normalised["thi_instance_by_task"].values()) == 6
    assert bids.influence["statistics_rows"] == 60 and bids.influence["left_out"]["no_response_token"] == 0
    # A selection whose diagnostics predate the instance level (aid and thi only) is drawn beside it.
    aid = {k: {"bids": bids.influence[k]["aid"], "old": dict.fromkeys(TASKS, 0.1)} for k in ("raw", "normalised")}
    thi = {k: {"bids": bids.influence[k]["thi"], "old": dict.fromkeys(TASKS, 2)} for k in ("raw", "normalised")}
    instances = {"bids": {t: [v for key, v in normalised["aid_instance"].items()
                              if bids.influence["instance_task"][key] == t] for t in TASKS}}
    fig = plots.influence_diagnostics_figure(aid, thi, "10%", instances, {"bids": normalised["thi_instance_by_task"]})
    assert len(fig.axes) == 4 and fig.axes[3].get_title() == "THI, instance level, normalised"
    assert len(plots.influence_diagnostics_figure(aid, thi, "10%").axes) == 3


def _runs(root):
    return json.loads((root / "experiments.json").read_text())["runs"]


def test_loss_tables_read_the_same_rows_and_mark_what_is_absent():
    from instruct_select.report.tables import capability_table, mean_spread_table

    rng = np.random.default_rng(3)
    new, old = _row(rng), _row(rng, loss=False)
    accuracy = capability_table({"new": new, "old": old})
    assert accuracy.splitlines()[0] == "| method | code | format | logic | math | macro | worst | spread |"
    assert accuracy.splitlines()[2].split(" | ")[1] == f"{100 * new['scores']['code']:.1f}"
    loss = capability_table({"new": new, "old": old}, metric="loss")
    caption, _, header, _, new_line, old_line = loss.splitlines()
    assert "Held-out loss" in caption and "lower is better" in caption and header == accuracy.splitlines()[0]
    assert new_line.split(" | ")[1] == f"{new['loss']['code']:.3f}"
    assert new_line.endswith(f"| {new['loss_summary']['worst']:.3f} | {new['loss_summary']['spread']:.3f} |")
    assert old_line == "| old | - | - | - | - | - | - | - |"
    assert capability_table({"old": old}, metric="loss").splitlines()[2] == "| method | macro | worst | spread |"
    other = _row(rng)
    cells = mean_spread_table({"m": [new, other, old]}, metric="loss").splitlines()[-1].split(" | ")
    pair = [new["loss"]["code"], other["loss"]["code"]]  # the seed without a loss adds nothing
    assert cells[1] == f"{np.mean(pair):.3f} ± {np.std(pair):.3f}" and cells[-1] == "3 |"
    worst = [new["loss_summary"]["worst"], other["loss_summary"]["worst"]]
    assert cells[6] == f"{np.mean(worst):.3f} ± {np.std(worst):.3f}"
    with pytest.raises(ValueError, match="unknown metric"):
        capability_table({"new": new}, metric="bleu")


def test_collect_reads_the_layouts(full_run):
    found = collect_run(full_run)
    labels = {s.label for s in found.selections}
    assert {"bids-10pct-seed0", "bids-10pct-seed1", "full-seed0", "lp-hard-10pct-seed0"} <= labels
    bids = next(s for s in found.selections if s.label == "bids-10pct-seed0")
    assert (bids.method, bids.budget, bids.seed) == ("bids", "10%", 0) and bids.influence
    assert found.attribution_dir == full_run / "influence" / "scores"
    assert found.loss_dirs == [full_run / "influence" / "learning_percentage" / "losses"]
    assert set(found.results) == {"5%", "10%"} and len(found.results["10%"]["bids"]) == 2
    assert sorted(["all", "500", "10%", "5%", "200tok"], key=budget_key) == ["5%", "10%", "200tok", "500", "all"]


def test_results_json_of_a_demo_and_of_a_run_config():
    row = _row(np.random.default_rng(1))
    demo = {"settings": {"budget": "15%"}, "rows": {"base (no tuning)": row, "random @ 15%": row, "full": row}}
    results, base = results_from_json(demo)
    assert base == row and list(results) == ["15%"] and set(results["15%"]) == {"random", "full"}
    run = {"bids @ 10%": {"selection": "s", "model": "m", "summary": row},
           "less @ 10%": {"selection": "s", "model": None, "summary": None}}
    results, base = results_from_json(run)
    assert base is None and list(results["10%"]) == ["bids"]
    now = {"settings": {"budgets": ["5%", "10%"]}, "base": row,
           "arms": {"bids @ 10%": {"selection": "s", "model": "m", "summary": row},
                    "lp-hard @ 5% (by small)": {"selection": "s", "model": "m", "summary": row},
                    "full": {"selection": "s", "model": "m", "summary": row}}}
    results, base = results_from_json(now)
    assert base == row and results == {"10%": {"bids": [row], "full": [row]},
                                       "5%": {"lp-hard (by small)": [row], "full": [row]}}


def test_partial_run_names_what_is_absent(tmp_path, capsys):
    row = _row(np.random.default_rng(2), loss=False)  # made before the held-out loss was measured
    (tmp_path / "results.json").write_text(json.dumps({"settings": {"budget": "15%"},
                                                       "rows": {"random @ 15%": row, "bids @ 15%": row}}))
    assert main(["report", str(tmp_path)]) == 0
    assert str(tmp_path / "report" / "report.html") in capsys.readouterr().out
    text = (tmp_path / "report" / "report.html").read_text()
    assert text.count("Not in this run") == 6 and "ideal/summary.json" in text
    assert "No held-out loss in the results" in text and not (tmp_path / "report" / "loss-15pct.png").exists()
    assert (tmp_path / "report" / "results-15pct.png").stat().st_size > 0
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def _chromium() -> str | None:
    return next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)


def test_report_renders_in_headless_chromium(full_run, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium): the rendering check needs a browser")
    page = write_report(full_run, tmp_path / "report")
    shot = tmp_path / "shot.png"
    command = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2000",
               page.resolve().as_uri()]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    from PIL import Image

    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2000, 1200)
    assert pixels.std() > 20  # text and figures, not a blank page
    assert (pixels < 128).mean() > 0.01  # a real share of dark pixels: something was drawn
