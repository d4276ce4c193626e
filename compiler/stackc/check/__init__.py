"""Checks: of the spec before lowering (``check.spec``), of the plan after it (``check.plan``), and the
spec's JSON Schema (``check.schema``)."""
