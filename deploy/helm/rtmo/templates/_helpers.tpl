{{/* Names: <release>-rtmo unless the release is already called rtmo-something. */}}
{{- define "rtmo.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 58 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 58 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rtmo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rtmo.labels" -}}
{{ include "rtmo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The GPU of target gpu: the same count in requests and limits (an extended resource cannot be overcommitted). */}}
{{- define "rtmo.resources" -}}
{{- $resources := deepCopy .resources -}}
{{- if eq .root.Values.target "gpu" -}}
{{- $gpu := dict .root.Values.gpu.resourceName (.root.Values.gpu.count | toString) -}}
{{- $_ := set $resources "limits" (merge (default dict $resources.limits) $gpu) -}}
{{- $_ := set $resources "requests" (merge (default dict $resources.requests) $gpu) -}}
{{- end -}}
{{- toYaml $resources -}}
{{- end -}}

{{/* The health check of the probes: a tiny frame through the rtmo_frames ensemble; exit 0 healthy, 1 not. */}}
{{- define "rtmo.probeCommand" -}}
exec:
  command: ["rtmo-client", "health", "--url", "localhost:8001"]
{{- end -}}
