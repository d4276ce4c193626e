{{/* Labels only the chart adds: the chart, who manages the release, and global.labels. */}}
{{- define "disagg.chartLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.global.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The release's namespace as a plain YAML scalar in a text: quoted where YAML would read another type. */}}
{{- define "disagg.plainNamespace" -}}
{{- if regexMatch "^(yes|no|true|false|on|off|null|0b[01]+|0[0-7]+|0|[1-9][0-9]*|0x[0-9a-f]+|[0-9]{4}-[0-9]{2}-[0-9]{2})$" .Release.Namespace -}}
'{{ .Release.Namespace }}'
{{- else -}}
{{ .Release.Namespace }}
{{- end -}}
{{- end }}
