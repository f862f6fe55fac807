# syntax=docker/dockerfile:1

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
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w -X main.version=$VERSION" -o /out/onesignal-cdc ./cmd/onesignal-cdc

# A static binary needs no libc or shell: distroless/static holds only CA
# certificates, tzdata and a passwd file with the nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/onesignal-cdc /onesignal-cdc
USER nonroot:nonroot
ENTRYPOINT ["/onesignal-cdc"]
CMD ["run", "--config", "/etc/onesignal-cdc/config.yaml"]
