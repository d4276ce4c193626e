"""The fit check: will a model's weights and KV cache fit the memory of its accelerators?

``catalogue`` holds the facts (accelerators, models, each with its source), ``facts`` finds a model's facts
(a local config.json, the Hugging Face cache, the catalogue), ``arithmetic`` does the sums per device as
each engine accounts its memory (docs/fit.md).
"""
