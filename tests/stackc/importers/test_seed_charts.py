"""Every example values file of the seed charts imports (exit 0 or 1, never 2 for a file the chart
renders, never 3) and the imported spec builds.

The charts are test data in ``shared/charts`` beside the checkout ($STACKC_CHARTS_DIR elsewhere);
the tests skip with a reason where it is absent, as the CRD tests do.
"""

from __future__ import annotations

import tomllib

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


#: example files whose chart deploys no server: the import serves what the values point at, and says so (W090)
NO_MODEL = {"values-s3-copy-llama3-8b.yaml": ("s3ModelCopy.model", "renders only a Job copying weights to S3")}


@pytest.mark.parametrize(("importer", "path"), examples())
def test_every_example_values_file_imports_and_builds(tmp_path, capsys, importer, path):
    spec = tmp_path / "stack.toml"
    code = main(["import", "--from", importer, str(path), "-o", str(spec)])
    err = capsys.readouterr().err
    assert code in (0, 1), err
    assert "Traceback" not in err
    if path.name in NO_MODEL:
        assert code == 1 and f"warning[W090] {NO_MODEL[path.name][0]}: not imported" in err
    compile_text(spec.read_text(), name=str(spec))  # raises with located diagnostics if it does not build


def test_weights_copied_to_s3_are_served_from_the_copy(tmp_path, capsys):
    """The chart's s3-copy example only runs a Job that copies the weights to S3: the imported spec serves
    that copy with vLLM (s3://BUCKET/PATH/ORG/NAME, the Job's sync target), named as the Hugging Face id."""
    values = tmp_path / "values.yaml"
    values.write_text("s3ModelCopy:\n  namespace: default\n  model: org/name\n  s3Path: bucket/models/\n")
    assert main(["import", "--from", "ai-on-eks", str(values), "-o", str(tmp_path / "s.toml")]) == 1
    err = capsys.readouterr().err
    assert f"{values}:3:3: warning[W090] s3ModelCopy.model: not imported: the chart renders only a Job" in err
    model = tomllib.loads((tmp_path / "s.toml").read_text())["models"]["inference"]
    assert (model["engine"], model["model"], model["served_name"]) == ("vllm", "s3://bucket/models/org/name",
                                                                       "org/name")
