from __future__ import annotations

import json
from pathlib import Path


def test_the_fast_tier_imports_neither_torch_nor_scikit_learn_nor_django() -> None:
    import subprocess
    import sys

    code = (
        "import json, sys\nimport learner.features, learner.xmc\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parents[3],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = set(json.loads(result.stdout.splitlines()[-1]))

    assert "learner" in loaded
    assert not loaded & {"torch", "sklearn", "django", "celery", "annotator", "webapp"}
