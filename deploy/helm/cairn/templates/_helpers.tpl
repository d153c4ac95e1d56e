{{- define "cairn.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cairn.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cairn.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cairn.qdrantSelectorLabels" -}}
app.kubernetes.io/name: qdrant
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: {{ .Chart.Name }}
{{- end -}}

{{- /* The Qdrant gRPC url of split roles: the one given, else the Qdrant this release deploys. */}}
{{- define "cairn.qdrantUrl" -}}
{{- if .Values.split.qdrant.url -}}
{{- .Values.split.qdrant.url -}}
{{- else if .Values.split.qdrant.deploy.enabled -}}
{{- printf "http://%s-qdrant:6334" (include "cairn.fullname" .) -}}
{{- else -}}
{{- required "split.qdrant.url (or split.qdrant.deploy.enabled) is required when split.enabled" "" -}}
{{- end -}}
{{- end -}}
