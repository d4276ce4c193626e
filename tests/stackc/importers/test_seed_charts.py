"""Every example values file of the seed charts imports (exit 0 or 1, never 2 for a file the chart
renders, never 3) and the imported spec builds.

The charts are test data in ``shared/charts`` beside the checkout ($STACKC_CHARTS_DIR elsewhere);
the tests skip with a reason where it is absent, as the CRD tests do.
"""

from __future__ import annotations

import pytest

from stackc.cli import main
from stackc.testing import charts_dir, compile_text

#: chart -> the importer's name and the glob of its example values files
SEED_CHARTS = {
    "production-stack": ("production-stack", "production-stack/tutorials/assets/values-*.yaml"),
    "lmstack": ("lmstack", "lmstack/helm/values-example.yaml"),
    "doubleword": ("doubleword", "doubleword-inference-stack/examples/*.yaml"),
    "ai-on-eks": ("ai-on-eks", "ai-on-eks-inference-charts/charts/inference-charts/values-*.yaml"),
}


def examples() -> list:
    root = charts_dir()
    if root is None:
        return [pytest.param(None, None, marks=pytest.mark.skip(
            reason="the seed charts are not here: set STACKC_CHARTS_DIR or put shared/charts beside the checkout"))]
    return [pytest.param(importer, path, id=f"{chart}/{path.name}")
            for chart, (importer, pattern) in SEED_CHARTS.items() for path in sorted(root.glob(pattern))]


#: example files that deploy no model at all: a spec without one is refused, located (exit 2)
NO_MODEL = {"values-s3-copy-llama3-8b.yaml": "renders only a Job copying weights to S3"}


@pytest.mark.parametrize(("importer", "path"), examples())
def test_every_example_values_file_imports_and_builds(tmp_path, capsys, importer, path):
    spec = tmp_path / "stack.toml"
    code = main(["import", "--from", importer, str(path), "-o", str(spec)])
    err = capsys.readouterr().err
    if path.name in NO_MODEL:
        assert code == 2 and f"{path}:1:1: error[E091] no model to import" in err
        return
    assert code in (0, 1), err
    assert "Traceback" not in err
    compile_text(spec.read_text(), name=str(spec))  # raises with located diagnostics if it does not build
