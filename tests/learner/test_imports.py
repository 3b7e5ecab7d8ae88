from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("django", "celery", "annotator", "webapp")


def loaded_after(statement: str) -> set[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_light_modules_import_neither_torch_nor_django() -> None:
    loaded = loaded_after(
        "import learner, learner.strategies, learner.metrics, learner.config, learner.data, "
        "learner.device, learner.embeddings, learner.encoder, learner.testing, learner.prior, learner.adapt, "
        "learner.fast, learner.simulate, learner.replay"
    )

    assert "learner" in loaded
    assert not loaded & {"torch", "transformers", *FORBIDDEN}


def test_the_torch_modules_do_not_import_django() -> None:
    loaded = loaded_after("import learner.losses, learner.fast, learner.full, learner.adapt, learner.encoder")

    assert "torch" in loaded
    assert not loaded & set(FORBIDDEN)


def test_no_learner_module_names_the_web_side() -> None:
    offenders = []
    for path in sorted((ROOT / "learner").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {name}" for name in names if name.split(".")[0] in FORBIDDEN]

    assert offenders == []
