"""The spec ``stackc init`` writes: small, valid, and commented so it teaches the format."""

STARTER_SPEC = '''\
# A stackc stack spec (format v1). Reference: docs/spec.md; JSON Schema: `stackc schema`.
# Build it with `stackc build THIS_FILE`; review changes with `stackc diff THIS_FILE`.
version = 1

[stack]
name = "demo"            # names the output folder (out/demo/) and prefixes object names
namespace = "llm"        # every object goes here
targets = ["manifests"]  # `stackc plugins` lists the targets you have

# Values every model inherits; a model's own values win.
[defaults]
engine = "vllm"
replicas = 1

[defaults.scheduling]
node_selector = { "nvidia.com/gpu.present" = "true" }
tolerations = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]

[models.llama]
model = "meta-llama/Llama-3.1-8B-Instruct"   # Hugging Face id; also hf://, s3://, gs://, pvc://, oci://, /path
aliases = ["llama-3.1-8b"]                   # more names clients may use
accelerators = { count = 1, resource = "nvidia.com/gpu" }
resources = { requests = { cpu = "4", memory = "32Gi" }, limits = { memory = "48Gi" } }
security.hf_token = { name = "hf-token", key = "token" }   # a Secret you create; never inlined

[models.llama.serving]
max_context = 8192
gpu_memory_fraction = 0.9
'''
