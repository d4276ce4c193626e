"""``stackc import``: another chart's Helm values in, a commented stack spec and a report out.

One module per chart; each reads the merged values through :class:`values.Values`, which
remembers every key it was asked about, so whatever a chart module did not map is reported by
key path and YAML position instead of being lost. Nothing here is imported by ``import stackc``:
the CLI loads it when the command runs.
"""

CHARTS = {
    "production-stack": "stackc.importers.production_stack",
    "lmstack": "stackc.importers.lmstack",
    "doubleword": "stackc.importers.doubleword",
    "ai-on-eks": "stackc.importers.ai_on_eks",
    "kserve": "stackc.importers.kserve",
    "inference-stack": "stackc.importers.inference_stack",
}
