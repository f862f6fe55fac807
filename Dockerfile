# syntax=docker/dockerfile:1
# check=error=true

# docker build --build-arg VERSION=1.2.3 -t onesignal-cdc:1.2.3 .
# The tests in tools/dockerfile hold this file to BuildKit's lint rules
# (check=error=true makes a real build fail on them too).

# Build on the machine's own platform and cross-compile: the binary is pure Go
# (CGO_ENABLED=0), so an arm64 image needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first: this layer survives every change that leaves go.mod and go.sum alone.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download

COPY . .
ARG TARGETOS TARGETARCH VERSION=dev
# Static (no cgo, so no libc), reproducible (-trimpath drops local paths),
# small (-s -w drops the symbol table and DWARF), and stamped with VERSION
# for `onesignal-cdc version` and the build_info metric.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=$VERSION" -o /out/onesignal-cdc ./cmd/onesignal-cdc

# A static binary needs no libc or shell: distroless/static holds only CA
# certificates (for Kafka TLS, PostgreSQL sslmode=verify-full and the
# OneSignal API), tzdata and a passwd file with the nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="onesignal-cdc" \
      org.opencontainers.image.description="Change data capture from PostgreSQL through Kafka to OneSignal" \
      org.opencontainers.image.version="$VERSION"
COPY --from=build /out/onesignal-cdc /onesignal-cdc
# Numeric, so that Kubernetes can verify runAsNonRoot without a passwd
# lookup: 65532 is distroless's nonroot user and group.
USER 65532:65532
# The ops server: /metrics, /livez, /readyz and the status page.
EXPOSE 9090
ENTRYPOINT ["/onesignal-cdc"]
CMD ["run", "--config", "/etc/onesignal-cdc/config.yaml"]
