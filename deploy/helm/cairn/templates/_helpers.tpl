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

{{- /* TLS for both listeners from tls.secretName (and client certificates from tls.clientCaSecret), as environment: a config of the user's own keeps its [server.tls] free. */}}
{{- define "cairn.tlsEnv" -}}
{{- if .Values.tls.secretName }}
- name: CAIRN_SERVER__TLS__CERT
  value: /etc/cairn-tls/tls.crt
- name: CAIRN_SERVER__TLS__KEY
  value: /etc/cairn-tls/tls.key
{{- if .Values.tls.clientCaSecret }}
- name: CAIRN_SERVER__TLS__CLIENT_CA
  value: /etc/cairn-tls-ca/ca.crt
{{- end }}
{{- end }}
{{- end -}}

{{- /* Read-only mounts of the TLS Secrets and of secretMounts (JWKS, SSH keys, the audit signing key, ...). */}}
{{- define "cairn.secretVolumeMounts" -}}
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: /etc/cairn-tls
  readOnly: true
{{- if .Values.tls.clientCaSecret }}
- name: tls-ca
  mountPath: /etc/cairn-tls-ca
  readOnly: true
{{- end }}
{{- end }}
{{- range $i, $m := .Values.secretMounts }}
- name: secret-{{ $i }}
  mountPath: {{ $m.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "cairn.secretVolumes" -}}
{{- if .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    defaultMode: 0440
{{- if .Values.tls.clientCaSecret }}
- name: tls-ca
  secret:
    secretName: {{ .Values.tls.clientCaSecret }}
    defaultMode: 0440
{{- end }}
{{- end }}
{{- range $i, $m := .Values.secretMounts }}
{{- if or (eq $m.mountPath "/etc/cairn") (hasPrefix "/etc/cairn/" $m.mountPath) (eq $m.mountPath "/var/lib/cairn") }}
{{- fail (printf "secretMounts[%d].mountPath: %s would hide the config or the data dir; mount under /etc/cairn-secrets/ instead" $i $m.mountPath) }}
{{- end }}
- name: secret-{{ $i }}
  secret:
    secretName: {{ $m.secretName }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{- /* How the kubelet checks a cairn container: /healthz over HTTP, over HTTPS with TLS on, or the port alone when clients must present certificates (the kubelet has none). */}}
{{- define "cairn.healthCheck" -}}
{{- if and .Values.tls.secretName .Values.tls.clientCaSecret }}
tcpSocket:
  port: http
{{- else }}
httpGet:
  path: /healthz
  port: http
  {{- if .Values.tls.secretName }}
  scheme: HTTPS
  {{- end }}
{{- end }}
{{- end -}}

{{- /* Readiness: gRPC health in the clear; with TLS the kubelet's gRPC probe cannot connect, so /healthz (or the port). */}}
{{- define "cairn.readinessCheck" -}}
{{- if .Values.tls.secretName }}
{{- include "cairn.healthCheck" . }}
{{- else }}
grpc:
  port: 7701
{{- end }}
{{- end -}}
