"""inference/ is plain Python: importing it must not import Django or Celery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_importing_inference_does_not_import_django() -> None:
    modules = [
        ".".join(p.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
        for p in (REPO / "inference").rglob("*.py")
        if p.stem != "__main__"
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "frameworks = {'django', 'rest_framework', 'celery', 'tracker'}\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in frameworks)\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert len(modules) >= 24
    assert result.stdout.strip() == ""
