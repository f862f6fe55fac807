{{/* Names: the chart's, the release's full name, and per component. */}}
{{- define "onesignal-cdc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "onesignal-cdc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A component's name: (dict "root" $ "component" "connector"). The
suffix is kept whole, so a long release name is cut before it. */}}
{{- define "onesignal-cdc.componentName" -}}
{{- $suffix := printf "-%s" .component }}
{{- printf "%s%s" (include "onesignal-cdc.fullname" .root | trunc (int (sub 63 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{- define "onesignal-cdc.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "onesignal-cdc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "onesignal-cdc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onesignal-cdc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component's objects: (dict "root" $ "component" "sink"). */}}
{{- define "onesignal-cdc.componentLabels" -}}
{{ include "onesignal-cdc.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "onesignal-cdc.componentSelectorLabels" -}}
{{ include "onesignal-cdc.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "onesignal-cdc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "onesignal-cdc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "onesignal-cdc.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "onesignal-cdc.secretName" -}}
{{- default (include "onesignal-cdc.fullname" .) .Values.credentials.existingSecret }}
{{- end }}

{{/*
The settings the chart cannot guess, checked once: every one that is
missing is named in a single failure, with what to set.
*/}}
{{- define "onesignal-cdc.validate" -}}
{{- $problems := list }}
{{- $cfg := .Values.config }}
{{- if hasKey ($cfg.postgres | default dict) "dsn" }}
{{- $problems = append $problems "config.postgres.dsn would put the database password in a ConfigMap: move it to credentials.postgresDSN (or your credentials.existingSecret)" }}
{{- end }}
{{- if hasKey ($cfg.postgres | default dict) "dsn_file" }}
{{- $problems = append $problems "config.postgres.dsn_file is set by the chart: remove it" }}
{{- end }}
{{- if hasKey ($cfg.onesignal | default dict) "api_key" }}
{{- $problems = append $problems "config.onesignal.api_key would put the API key in a ConfigMap: move it to credentials.onesignalAPIKey (or your credentials.existingSecret)" }}
{{- end }}
{{- if hasKey ($cfg.onesignal | default dict) "api_key_file" }}
{{- $problems = append $problems "config.onesignal.api_key_file is set by the chart: remove it" }}
{{- end }}
{{- $sasl := dig "kafka" "sasl" dict $cfg }}
{{- if or (hasKey $sasl "password") (hasKey $sasl "password_file") }}
{{- $problems = append $problems "config.kafka.sasl.password would put the Kafka password in a ConfigMap: move it to credentials.kafkaSASLPassword (or your credentials.existingSecret)" }}
{{- end }}
{{- $mechanism := dig "mechanism" "" $sasl }}
{{- if and $mechanism (not .Values.credentials.existingSecret) (not .Values.credentials.kafkaSASLPassword) }}
{{- $problems = append $problems (printf "config.kafka.sasl.mechanism is %s but credentials.kafkaSASLPassword is empty: set it (--set-file credentials.kafkaSASLPassword=password.txt) or name a Secret in credentials.existingSecret" $mechanism) }}
{{- end }}
{{- if .Values.kafkaTLS.secretName }}
{{- $tls := dig "kafka" "tls" dict $cfg }}
{{- if or (hasKey $tls "ca_file") (hasKey $tls "cert_file") (hasKey $tls "key_file") }}
{{- $problems = append $problems "config.kafka.tls.ca_file, cert_file and key_file are set by the chart from kafkaTLS: remove them" }}
{{- end }}
{{- if ne (empty .Values.kafkaTLS.certKey) (empty .Values.kafkaTLS.keyKey) }}
{{- $problems = append $problems "kafkaTLS.certKey and kafkaTLS.keyKey: set both (mutual TLS) or neither" }}
{{- end }}
{{- if not (or .Values.kafkaTLS.caKey .Values.kafkaTLS.certKey) }}
{{- $problems = append $problems "kafkaTLS.secretName is set but kafkaTLS.caKey and certKey are empty: name the Secret's CA key, client certificate and key, or both" }}
{{- end }}
{{- end }}
{{- if hasKey $cfg "ops" }}
{{- $problems = append $problems "config.ops is set by the chart from opsPort: remove it" }}
{{- end }}
{{- $brokers := (($cfg.kafka | default dict).brokers) | default list }}
{{- if not $brokers }}
{{- $problems = append $problems "config.kafka.brokers is empty: list your Kafka bootstrap servers, e.g. --set 'config.kafka.brokers={kafka-0.kafka:9092}'" }}
{{- else if has "embedded" $brokers }}
{{- $problems = append $problems "config.kafka.brokers: the embedded broker lives inside one process and cannot join the connector's and the sink's pods: list real Kafka brokers" }}
{{- end }}
{{- if and .Values.sink.enabled (not (($cfg.onesignal | default dict).app_id)) }}
{{- $problems = append $problems "config.onesignal.app_id is empty: set it to your app's ID (Settings › Keys & IDs)" }}
{{- end }}
{{- if not $cfg.mapping }}
{{- $problems = append $problems "config.mapping is empty: map a users table, a devices table or both (see docs/mapping.md)" }}
{{- end }}
{{- if not .Values.credentials.existingSecret }}
{{- if and .Values.connector.enabled (not .Values.credentials.postgresDSN) }}
{{- $problems = append $problems "credentials.postgresDSN is empty: set it (--set-file credentials.postgresDSN=dsn.txt) or name a Secret in credentials.existingSecret" }}
{{- end }}
{{- if and .Values.sink.enabled (not .Values.credentials.onesignalAPIKey) }}
{{- $problems = append $problems "credentials.onesignalAPIKey is empty: set it (--set-file credentials.onesignalAPIKey=key.txt) or name a Secret in credentials.existingSecret" }}
{{- end }}
{{- end }}
{{- if not (or .Values.connector.enabled .Values.sink.enabled) }}
{{- $problems = append $problems "connector.enabled and sink.enabled are both false: enable at least one" }}
{{- end }}
{{- if $problems }}
{{- fail (printf "\n  - %s" (join "\n  - " $problems)) }}
{{- end }}
{{- end }}

{{/*
The configuration file: .Values.config, with the paths of the files the
chart mounts filled in.
*/}}
{{- define "onesignal-cdc.config" -}}
{{- $cfg := deepCopy .Values.config }}
{{- with .Values.kafkaTLS }}
{{- if .secretName }}
{{- $kafka := dig "kafka" dict $cfg }}
{{- $tls := dig "tls" dict $kafka }}
{{- $_ := set $tls "enabled" true }}
{{- if .caKey }}
{{- $_ := set $tls "ca_file" "/etc/onesignal-cdc/kafka-tls/ca.crt" }}
{{- end }}
{{- if .certKey }}
{{- $_ := set $tls "cert_file" "/etc/onesignal-cdc/kafka-tls/tls.crt" }}
{{- $_ := set $tls "key_file" "/etc/onesignal-cdc/kafka-tls/tls.key" }}
{{- end }}
{{- $_ := set $kafka "tls" $tls }}
{{- $_ := set $cfg "kafka" $kafka }}
{{- end }}
{{- end }}
{{- $sink := dig "sink" dict $cfg }}
{{- if not (dig "state_dir" "" $sink) }}
{{- /* the sink pod's emptyDir (podTemplate); the root file system is read-only */}}
{{- $_ := set $sink "state_dir" "/var/lib/onesignal-cdc/sink" }}
{{- $_ := set $cfg "sink" $sink }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/*
One component's pod template: (dict "root" $ "component" "connector" "values" .Values.connector "secretKey" … "secretFile" … "secretEnv" …).
Each component mounts only the secrets it needs: the connector the DSN, the
sink the API key, and both the Kafka SASL password when SASL is on.
*/}}
{{- define "onesignal-cdc.podTemplate" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $secrets := list (dict "key" .secretKey "file" .secretFile "env" .secretEnv) }}
{{- if dig "kafka" "sasl" "mechanism" "" $root.Values.config }}
{{- $secrets = append $secrets (dict "key" $root.Values.credentials.kafkaSASLPasswordKey "file" "kafka-sasl-password" "env" "ONESIGNAL_CDC_KAFKA_SASL_PASSWORD_FILE") }}
{{- end }}
{{- $tls := $root.Values.kafkaTLS -}}
metadata:
  labels:
    {{- include "onesignal-cdc.componentLabels" . | nindent 4 }}
    {{- with $v.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if not $root.Values.credentials.existingSecret }}
    checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- end }}
    {{- with $v.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "onesignal-cdc.serviceAccountName" $root }}
  # The daemon never calls the Kubernetes API.
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: {{ $v.terminationGracePeriodSeconds }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .component }}
      image: {{ include "onesignal-cdc.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      args: [{{ .component | quote }}, "--config", "/etc/onesignal-cdc/config.yaml"]
      env:
        {{- range $secrets }}
        - name: {{ .env }}
          value: /etc/onesignal-cdc/secrets/{{ .file }}
        {{- end }}
        - name: ONESIGNAL_CDC_OPS_LISTEN
          value: ":{{ $root.Values.opsPort }}"
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      ports:
        - name: ops
          containerPort: {{ $root.Values.opsPort }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /livez
          port: ops
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: ops
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: /etc/onesignal-cdc/config.yaml
          subPath: config.yaml
          readOnly: true
        - name: secrets
          mountPath: /etc/onesignal-cdc/secrets
          readOnly: true
        {{- if $tls.secretName }}
        - name: kafka-tls
          mountPath: /etc/onesignal-cdc/kafka-tls
          readOnly: true
        {{- end }}
        {{- if eq .component "sink" }}
        # The sink's local cache of its state, rebuilt from Kafka at start.
        - name: sink-state
          mountPath: /var/lib/onesignal-cdc/sink
        {{- end }}
        {{- with $root.Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "onesignal-cdc.fullname" $root }}
    {{- if eq .component "sink" }}
    - name: sink-state
      emptyDir:
        sizeLimit: {{ $v.stateSizeLimit | default "2Gi" }}
    {{- end }}
    - name: secrets
      secret:
        secretName: {{ include "onesignal-cdc.secretName" $root }}
        defaultMode: 0440
        items:
          {{- range $secrets }}
          - key: {{ .key }}
            path: {{ .file }}
          {{- end }}
    {{- if $tls.secretName }}
    - name: kafka-tls
      secret:
        secretName: {{ $tls.secretName }}
        defaultMode: 0440
        items:
          {{- if $tls.caKey }}
          - key: {{ $tls.caKey }}
            path: ca.crt
          {{- end }}
          {{- if $tls.certKey }}
          - key: {{ $tls.certKey }}
            path: tls.crt
          - key: {{ $tls.keyKey }}
            path: tls.key
          {{- end }}
    {{- end }}
    {{- with $root.Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
