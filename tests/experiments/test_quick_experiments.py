"""``seglab experiment NAME --quick``: files, verdict consistent with the numbers, claim direction.

Directions are asserted where the claim is robust; each number the paragraph quotes is also
recomputed from the JSON.
"""

from __future__ import annotations

import pytest
from report_checks import load_outcome

from seglab.cli import main


def run_quick(name, out):
    assert main(["experiment", name, "--quick", "--out", str(out)]) == 0
    return load_outcome(out, name)


def test_memory(tmp_path):
    record = run_quick("memory", tmp_path)
    data = record["data"]
    allconv = data["models"]["allconv"]
    i = data["sides"].index(512)
    ratio = allconv["saved_bytes"][i] / allconv["parameter_bytes"]
    assert ratio > 10 and record["holds"]
    assert f"{ratio:.0f}x its parameter memory" in record["result"]
    for row in data["models"].values():
        # measured and saved bytes both grow with the input; the parameters do not
        assert row["peak_bytes"] == sorted(row["peak_bytes"]) and row["saved_bytes"] == sorted(row["saved_bytes"])
        assert row["budget_side"] > data["sides"][-1]


def test_receptive_field(tmp_path):
    record = run_quick("receptive-field", tmp_path)
    fam = record["data"]["families"]
    depths = record["data"]["depths"]
    # theory, by hand: 1 + 2 * depth for the all-conv stack, 1 + 2 * (2**depth - 1) with doubling dilations
    assert fam["allconv"]["theoretical"] == [1 + 2 * d for d in depths]
    assert fam["dilation"]["theoretical"] == [1 + 2 * (2**d - 1) for d in depths]
    assert fam["pooling"]["theoretical"][-1] > 2 * fam["allconv"]["theoretical"][-1]
    for f in fam.values():
        # the effective side is odd (a square around one pixel): an even window of t px needs t + 1
        assert all(e <= t + 1 for e, t in zip(f["effective"], f["theoretical"], strict=True))
    holds = (fam["pooling"]["effective"][-1] > fam["allconv"]["effective"][-1]
             and fam["dilation"]["effective"][-1] > fam["allconv"]["effective"][-1])
    assert record["holds"] == holds
    assert f"{fam['allconv']['theoretical'][-1]:.0f} px for the all-conv stack" in record["result"]


def test_checkerboard(tmp_path):
    record = run_quick("checkerboard", tmp_path)
    res = record["data"]["results"]
    ratio = res["transposed_last"]["init"]["output"]["ripple_s2"] / res["resize_conv"]["init"]["output"]["ripple_s2"]
    assert ratio > 10
    assert res["transposed_last"]["init"]["output"]["energy_s2"] > 10 * res["resize_conv"]["init"]["output"]["energy_s2"]
    assert f"is {ratio:.0f}x that of resize-conv" in record["result"]
    assert len(record["figures"]) == 3


@pytest.mark.slow
def test_upsampling(tmp_path):
    record = run_quick("upsampling", tmp_path)
    scores = record["data"]["scores"]
    wins = sum(scores["unet"][m]["boundary_f1"] > scores["encdec"][m]["boundary_f1"] for m in scores["unet"])
    assert record["holds"] == (wins == len(scores["unet"]))
    assert f"for {wins} of {len(scores['unet'])} up-sampling modes" in record["result"]


@pytest.mark.slow
def test_imbalance(tmp_path):
    record = run_quick("imbalance", tmp_path)
    at1 = record["data"]["results"]["0.01"]
    assert at1["dice"]["dice"] > at1["ce"]["dice"]
    assert f"dice {at1['dice']['dice']:.3f}/{at1['dice']['recall']:.3f}" in record["result"]
    assert all(len(row["curve"]) >= 2 for row in at1.values() if isinstance(row, dict))


@pytest.mark.slow
def test_routes(tmp_path):
    record = run_quick("routes", tmp_path)
    rows = record["data"]["routes"]
    assert set(rows) == {"three_class", "embedding"}
    for row in rows.values():
        assert "error" not in row and 0 <= row["aji"] <= 1 and row["images_per_second"] > 0
        assert f"AJI {row['aji']:.3f}" in record["result"]


def test_unknown_experiment_is_one_line(tmp_path, capsys):
    assert main(["experiment", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("seglab: error: unknown experiment 'nope'") and "receptive-field" in err
    assert list(tmp_path.iterdir()) == []


def test_cli_names_match_the_registry():
    from seglab.cli.experiment import NAMES
    from seglab.experiments import EXPERIMENTS

    assert tuple(EXPERIMENTS) == NAMES


def test_index_lists_what_the_folder_holds(tmp_path):
    from seglab.experiments import run_experiment

    run_experiment("receptive-field", out=tmp_path, quick=True)
    index = (tmp_path / "index.md").read_text()
    record = load_outcome(tmp_path, "receptive-field")
    assert "[receptive-field](receptive-field.md)" in index and record["result"] in index
    assert "memory" not in index
