"""`dqt paper`: figures 2, 4 and 5 from one profile, and the claims table's verdicts on runs
whose AUCs are known (synthetic curves logged to a real MLflow store)."""

from __future__ import annotations

import argparse

import pytest
from conftest import empty_store
from test_analysis_report import Store

from dqt.analysis import cli as analysis_cli
from dqt.analysis.claims import AGREE, CANNOT_TELL, DISAGREE, RETURN_AUC, SUCCESS_AUC, Arm, Judge, compare
from dqt.core.config import ConfigError


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    analysis_cli.register(parser.add_subparsers())
    return parser.parse_args(argv)


@pytest.fixture(scope="module")
def paper_store(tmp_path_factory) -> Store:
    root = tmp_path_factory.mktemp("paper")
    s = Store(empty_store(tmp_path_factory, root), root)
    exp = s.experiment("agents")
    for n in (1, 2):
        for lr, skill in (("linear", 0.6), ("linear-n", 0.1)):
            for seed in range(3):
                s.run("agents", exp, {"trainer.num_agents": n, "learner.lr_schedule": lr,
                                      "trainer.budget": "per-agent"}, seed, skill)
    exp = s.experiment("noise")
    arms = [(0.0, 0.0, "none", 0.6), (0.0, 10.0, "none", 0.1), (0.0, 10.0, "median", 0.55),
            (20.0, 1.0, "none", 0.1), (20.0, 1.0, "median", 0.12)]
    for mean, std, robust, skill in arms:
        for seed in range(3):
            s.run("noise", exp, {"noise.mean": mean, "noise.std": std, "noise.robust": robust}, seed, skill)
    exp = s.experiment("tasks")
    for task, skills in (("reach-v3", {"none": 0.3, "median": 0.6}), ("hammer-v3", {"none": 0.5, "median": 0.2})):
        for robust, skill in skills.items():
            for seed in range(3):
                s.run("tasks", exp, {"trainer.task": task, "noise.std": 10.0, "noise.robust": robust}, seed, skill)
    return s


def test_paper_writes_the_three_figures_and_a_claims_table(paper_store: Store, tmp_path):
    args = parse(["paper", "--profile", "test", "--tracking-uri", paper_store.uri, "--out", str(tmp_path)])
    assert args.handler(args) == 0
    out = tmp_path / "paper"
    for experiment, figure in (("agents", "agents"), ("noise", "noise"), ("tasks", "tasks")):
        assert (out / experiment / f"{figure}.png").stat().st_size > 1000
        assert (out / experiment / "summary.csv").exists() and (out / experiment / "report.md").exists()
    readme = (out / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| 2 |") or line.startswith("| 4 |")
            or line.startswith("| 5 |")]
    verdicts = {line.split(" | ")[1]: line.split(" | ")[3].strip("*") for line in rows}
    returns = {line.split(" | ")[1]: line.split(" | ")[5].strip(" |*") for line in rows}
    assert verdicts["n=2: linear or log-curve is the schedule to use; linear-n fails"] == AGREE
    assert verdicts["n=2: linear-n fails to converge (worse than linear / log-curve)"] == AGREE
    assert verdicts["μ=0, σ=10: the median makes QT less sensitive to the noise's spread"] == AGREE
    assert verdicts["μ=20, σ=1: the median stays sensitive to the noise's mean (below the noise-free runs)"] == AGREE
    assert verdicts["without the median, high-variance noise degrades QT (σ=10)"] == AGREE
    assert verdicts["reach-v3: the median reward has a higher AUC than the noisy one"] == AGREE
    assert verdicts["hammer-v3: the median reward has a higher AUC than the noisy one"] == DISAGREE
    # the synthetic eval returns rise with the same skill: the return AUC agrees with success here
    assert returns["hammer-v3: the median reward has a higher AUC than the noisy one"] == DISAGREE
    assert returns["reach-v3: the median reward has a higher AUC than the noisy one"] == AGREE
    assert "make paper PROFILE=test" in readme and "dqt sweep sweeps/noise.yaml --profile test" in readme
    assert "![figure 2](agents/agents.png)" in readme and "![figure 5](tasks/tasks.png)" in readme
    assert "What this budget cannot show" in readme and "make paper PROFILE=paper" in readme
    assert "hammer, reach in place of door-unlock, hammer, reach-wall, plate-slide" in readme


def test_a_claim_needs_a_difference_the_seeds_cannot_explain():
    def verdict(a, b, measure=SUCCESS_AUC):
        per_run = {f"a{i}": v for i, v in enumerate(a)} | {f"b{i}": v for i, v in enumerate(b)}
        judge = Judge({SUCCESS_AUC: per_run, RETURN_AUC: per_run})
        claim = compare("5", "x", Arm("a", tuple(f"a{i}" for i in range(len(a)))),
                        Arm("b", tuple(f"b{i}" for i in range(len(b)))), judge)
        return claim.verdicts[measure], claim.ours[measure]

    assert verdict([0.5, 0.6, 0.7], [0.1, 0.2, 0.15])[0] == AGREE
    assert verdict([0.1, 0.2, 0.15], [0.5, 0.6, 0.7])[0] == DISAGREE
    mixed, ours = verdict([0.5, 0.6, 0.1], [0.1, 0.2, 0.55])
    assert mixed == CANNOT_TELL and "difference +0.117" in ours
    zero, ours = verdict([0.0] * 3, [0.0] * 3)
    assert zero == CANNOT_TELL and "neither arm ever succeeds" in ours
    assert verdict([0.0] * 3, [0.0] * 3, RETURN_AUC) == (CANNOT_TELL, "a 0 vs b 0 (difference +0, 95% CI [+0, +0]; "
                                                                     "3 vs 3 seeds)")
    assert verdict([0.5], [0.1])[0] == CANNOT_TELL
    assert verdict([], [0.1]) == (CANNOT_TELL, "no runs of a")


def test_paper_without_runs_of_the_profile_is_one_line(paper_store: Store, tmp_path):
    args = parse(["paper", "--profile", "gpu", "--tracking-uri", paper_store.uri, "--out", str(tmp_path)])
    with pytest.raises(ConfigError, match="none of the experiments agents, noise, tasks has runs of profile 'gpu'"):
        args.handler(args)
