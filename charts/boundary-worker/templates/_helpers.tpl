{{/* Names and labels shared by every template. */}}

{{- define "bw.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "bw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "bw.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bw.labels" -}}
{{ include "bw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "bw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The namespaces whose objects the operator reads and writes. */}}
{{- define "bw.namespaced" -}}
{{- if .Values.watchNamespaces -}}true{{- end -}}
{{- end -}}

{{/* Cluster-scoped objects carry the release namespace: releases of the same name in two
namespaces (one operator per set of namespaces) must not collide. */}}
{{- define "bw.clusterScopedName" -}}
{{- printf "%s-%s" .Release.Namespace (include "bw.fullname" .) | trunc 57 | trimSuffix "-" -}}
{{- end -}}

{{/* The leader election Lease, in the release namespace. */}}
{{- define "bw.leaseName" -}}
{{- default (include "bw.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}
