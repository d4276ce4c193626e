{{ define "ray.namespaced.13b0f9b767feb30c" }}hold:
  queue: 100
  timeout_s: 60.0
limits:
  max_body_bytes: 10485760
  max_in_flight: 1024
listen:
  host: 0.0.0.0
  port: 8080
models:
  llama-1b:
    aliases: []
    discovery:
      kubernetes:
        namespace: {{ include "ray.plainNamespace" . }}
        port: 8000
        service: ray-llama-1b-serve-svc
    health:
      path: /-/healthz
    served_name: NousResearch/Llama-3.2-1B
    strategy: prefix
version: 1
{{ end }}
