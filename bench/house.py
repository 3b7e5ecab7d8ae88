"""How easy the house is to follow (issue 15): the files a training run and a scoring run pass through, and the size
and repetition of each package.

    .venv/bin/python bench/house.py [--repo PATH] [--out bench/results/house.json]

`--repo` measures another checkout (for example a `git worktree` of an earlier commit) with this venv, so that a
before / after comparison uses the same interpreter and data.

- **Following a job**: on a throw-away SQLite database, a project of 200 demo documents (120 with their labels
  imported) is encoded with the bundled MiniLM, then `training_run` and `scoring_run` run under `sys.setprofile`.
  The "current file" is the innermost frame in `annotator/`, `learner/` or `webapp/`; each change of it is a step.
  Reported twice: with `learner` as one node (the platform's view: how often a job goes through the door and back)
  and with every file. Each time: the files visited, the hand-offs (distinct ordered pairs of files one step
  apart), the returns (a step into a file already left once; loops count each time) and the crossings between
  `annotator` and `learner`.
- **Packages**: files, lines and the longest file of `annotator`, `learner`, `webapp`, `tests`, `bench`
  (migrations left out).
- **Repetition**: the pairs of places sharing six or more lines, from the `duplicates` tool when it is installed
  (migrations left out).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import header, table, write_json

PACKAGES = ("annotator", "learner", "webapp", "tests", "bench")
TRACED = ("annotator", "learner", "webapp")

# Run inside the measured checkout (cwd), so `annotator` and `learner` are that checkout's.
CHILD = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webapp.settings")
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from annotator import services
from annotator.models import Job
from annotator.services.demo import demo_labels, demo_records

root = os.getcwd() + os.sep
user = get_user_model().objects.create_user(username="house", password="house-measure-1")
user.user_permissions.add(Permission.objects.get(codename="add_project", content_type__app_label="annotator"))
user = get_user_model().objects.get(pk=user.pk)
project = services.project_create(user=user, name="house", labels=demo_labels(), retrain_every=10**6)
records = demo_records(200, with_labels=True)
for record in records[120:]:
    record.labels = None
services.documents_import(project=project, user=user, records=records)
services.encode_run(job_id=Job.objects.get(project=project, kind="encode", status="PENDING").pk)
Job.objects.filter(project=project, status="PENDING").delete()


def follow(run, job_id):
    steps = []
    stack = []

    def repo_file(frame):
        name = frame.f_code.co_filename
        if name.startswith(root):
            relative = name[len(root):]
            if relative.split(os.sep)[0] in ("annotator", "learner", "webapp"):
                return relative
        return None

    def innermost(frame):
        while frame is not None:
            name = repo_file(frame)
            if name:
                return name
            frame = frame.f_back
        return None

    def note(name):
        if name and (not steps or steps[-1] != name):
            steps.append(name)

    def profile(frame, event, arg):
        if event == "call":
            note(innermost(frame))
        elif event == "return":
            note(innermost(frame.f_back))

    sys.setprofile(profile)
    try:
        run(job_id=job_id)
    finally:
        sys.setprofile(None)
    return steps


train = services.training_request(project=project, user=user)
train_steps = follow(services.training_run, train.pk)
score = Job.objects.get(project=project, kind="score", status="PENDING")
score_steps = follow(services.scoring_run, score.pk)
print("HOUSE-JSON " + json.dumps({"training_run": train_steps, "scoring_run": score_steps}))
"""


def step_stats(steps: list[str]) -> dict:
    """Files visited, returns to a file already left, crossings between annotator and learner."""
    seen: set[str] = set()
    returns = 0
    crossings = {"annotator->learner": 0, "learner->annotator": 0}
    for before, after in zip([None, *steps[:-1]], steps, strict=True):
        if after in seen:
            returns += 1
        seen.add(after)
        if before is not None:
            a, b = before.split(os.sep)[0], after.split(os.sep)[0]
            if (a, b) == ("annotator", "learner"):
                crossings["annotator->learner"] += 1
            elif (a, b) == ("learner", "annotator"):
                crossings["learner->annotator"] += 1
    edges = {(before, after) for before, after in itertools.pairwise(steps)}
    return {
        "files": len(seen),
        "hand_offs": len(edges),
        "returns": returns,
        "steps": len(steps),
        **crossings,
        "visited": sorted(seen),
    }


def follow_jobs(repo: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="house-") as folder:
        env = {
            **os.environ,
            "ALABEL_DATA_DIR": folder,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "ALABEL_LOG_LEVEL": "WARNING",
        }
        env.pop("DATABASE_URL", None)
        done = subprocess.run(
            [sys.executable, "-c", CHILD], cwd=repo, env=env, capture_output=True, text=True, check=False
        )
    line = next((row for row in done.stdout.splitlines() if row.startswith("HOUSE-JSON ")), None)
    if line is None:
        raise SystemExit(f"the traced run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    traces = json.loads(line.removeprefix("HOUSE-JSON "))
    result = {}
    for name, steps in traces.items():
        platform = [step if step.split(os.sep)[0] != "learner" else "learner" for step in steps]
        platform = [step for i, step in enumerate(platform) if i == 0 or platform[i - 1] != step]  # learner: one node
        result[name] = {"platform": step_stats(platform), "all": step_stats(steps), "sequence": platform}
    return result


def package_sizes(repo: Path) -> dict:
    listed = subprocess.run(["git", "ls-files", "*.py"], cwd=repo, capture_output=True, text=True, check=True)
    files = [name for name in listed.stdout.splitlines() if "/migrations/" not in name and (repo / name).exists()]
    untracked = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "*.py"], cwd=repo, capture_output=True, text=True
    )
    files += [name for name in untracked.stdout.splitlines() if "/migrations/" not in name]
    sizes: dict[str, dict] = {}
    for package in PACKAGES:
        mine = sorted({name for name in files if name.split("/")[0] == package})
        lines = {name: len((repo / name).read_text(encoding="utf-8").splitlines()) for name in mine}
        longest = max(lines, key=lambda name: lines[name]) if lines else ""
        sizes[package] = {
            "files": len(lines),
            "lines": sum(lines.values()),
            "longest": longest,
            "longest_lines": lines.get(longest, 0),
        }
    return sizes


def repetition(repo: Path) -> dict | None:
    tool = shutil.which("duplicates")
    if tool is None:
        return None
    done = subprocess.run(
        [tool, "--repo", str(repo), "--most", "200", "--seconds", "300"], capture_output=True, text=True, check=False
    )
    rows = [row for row in done.stdout.splitlines() if re.match(r"D\d+ ", row)]
    kept = [row for row in rows if "/migrations/" not in row]
    by_package: dict[str, int] = {}
    for row in kept:
        first = row.split()[1].split("/")[0]
        by_package[first] = by_package.get(first, 0) + 1
    return {"pairs": len(kept), "by_package": by_package, "summary": done.stdout.splitlines()[0] if rows else ""}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    repo = Path(args.repo).resolve()
    result = {"jobs": follow_jobs(repo), "packages": package_sizes(repo), "repetition": repetition(repo)}
    print(
        table(
            ["job", "view", "files", "hand-offs", "returns", "annotator->learner", "learner->annotator"],
            [
                [name, view, s["files"], s["hand_offs"], s["returns"], s["annotator->learner"], s["learner->annotator"]]
                for name, job in result["jobs"].items()
                for view, s in (("platform", job["platform"]), ("every file", job["all"]))
            ],
        )
    )
    print(
        table(
            ["package", "files", "lines", "longest file", "its lines"],
            [
                [name, s["files"], s["lines"], s["longest"], s["longest_lines"]]
                for name, s in result["packages"].items()
            ],
        )
    )
    if result["repetition"] is not None:
        print(f"pairs of places sharing 6+ lines (migrations left out): {result['repetition']['pairs']}")
    if args.out:
        write_json(Path(args.out), {**header("house", {"repo": str(repo)}), **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
