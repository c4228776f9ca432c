"""Sweep overhead: Ray Tune wall time against the ideal (sum of trial times / concurrency).

Runs an eight-trial sweep of the kept experiment `sweep_gradient_boosting` (with 300-600
boosting stages, so that trials take a few seconds) through the CLI (`python -m framework
-m ...`) in a temporary folder, then prints the sweep's wall time, the sum of the trials' own
run times divided by the concurrency (the ideal), the overhead in percent, and how many
times data preparation ran.

Usage: python benchmarks/sweep.py [extra hydra overrides]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def main(extra: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            sys.executable,
            "-m",
            "framework",
            "-m",
            "+experiment=sweep_gradient_boosting",
            "tune.num_samples=8",
            "tune.max_concurrent_trials=2",
            "tune.register_best=false",
            'tune.params={model.n_estimators: "range(300, 700, 100)", '
            'model.learning_rate: "tag(log, interval(0.01, 0.3))", '
            'model.max_depth: "choice(2, 3, 4)"}',
            f"tune.best_experiment_dir={tmp}/best",
            *extra,
        ]
        env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
        run = subprocess.run(args, cwd=tmp, env=env, capture_output=True, text=True)
        if run.returncode != 0:
            sys.exit(f"sweep failed ({run.returncode}):\n{run.stderr[-3000:]}")
        (summary_path,) = Path(tmp).glob("multirun/*/*/sweep.json")
        summary = json.loads(summary_path.read_text())
    trials = summary["trials"]
    concurrency = summary["concurrency"]
    ideal = summary["trial_time_sum_s"] / concurrency
    wall = summary["trials_wall_s"]
    overhead = (wall / ideal - 1) * 100
    print(f"sweep: {trials} trials, {concurrency} at a time, gradient boosting on breast_cancer")
    print(f"  mean trial time          {summary['trial_time_sum_s'] / trials:8.2f} s")
    print(f"  ideal (sum / concurrency) {ideal:8.2f} s")
    print(f"  Ray Tune wall time       {wall:8.2f} s")
    print(
        f"  overhead                 {overhead:8.1f} %  (target <= 20%)  "
        f"{'met' if overhead <= 20 else 'MISSED'}"
    )
    print(
        f"  of which: first trial started after {summary['first_trial_start_s']:.2f} s, "
        f"Tune finished {summary['after_last_trial_s']:.2f} s after the last trial"
    )
    print(f"  whole command (Ray start, data prep, trials, report) {summary['wall_s']:.2f} s")
    print(f"  data preparation ran {summary['data_preparations']} time(s)")


if __name__ == "__main__":
    main(sys.argv[1:])
