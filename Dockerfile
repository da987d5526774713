# syntax=docker/dockerfile:1
#
# mistbridge container image: the bridge, the mistsend sender, a healthcheck
# probe and the Mist sample payloads, on distroless static (no shell, no
# package manager) as the non-root user 65532.
#
#   docker build -t mistbridge .
#   docker run -p 8080:8080 -p 4222:4222 -v mistbridge-data:/data --stop-timeout 65 -e MISTBRIDGE_WEBHOOK_SECRET=change-me mistbridge
#   docker run --entrypoint /usr/local/bin/mistsend mistbridge -url http://host:8080/webhooks/mist -secret change-me -samples /samples
#
# /data (MISTBRIDGE_DATA_DIR) holds the spool: events answered 200 and not yet
# acknowledged by a broker, delivered after a restart. Give it a named volume
# (-v above), which outlives the container; the anonymous volume VOLUME makes
# otherwise is removed with `docker run --rm`. --stop-timeout: `docker stop`
# kills after 10s by default, before the graceful shutdown (drain 5s, requests
# in flight up to 30s, closing the spool and sinks) ends.
#
# docker-compose.yml and deploy/kubernetes use this image; cmd/mistbridge/deploy_test.go
# checks that they agree with it.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
# Dependencies first, in their own layer and in a cache mount, so a source
# change does not download modules again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    export CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} && \
    go build -trimpath -ldflags='-s -w' -o /out/mistbridge ./cmd/mistbridge && \
    go build -trimpath -ldflags='-s -w' -o /out/mistsend ./cmd/mistsend && \
    go build -trimpath -ldflags='-s -w' -o /out/healthcheck ./deploy/healthcheck
# The data directory (spool, receivers database, embedded NATS store),
# created here because the final image has no shell: copied with the runtime
# user as owner, so a new volume mounted there is writable by it.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="mistbridge" \
      org.opencontainers.image.description="Juniper Mist webhooks to CloudEvents on Kafka and NATS" \
      org.opencontainers.image.source="https://github.com/mistbridge/mistbridge"
COPY --from=build /out/mistbridge /out/mistsend /out/healthcheck /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/data /data
# Public Mist example payloads (provenance in /samples/SOURCES.md), for mistsend.
COPY deploy/samples/ /samples/
# The embedded NATS server (used only when MISTBRIDGE_NATS_URL is empty)
# listens on every interface, so `docker run -p 4222:4222` can subscribe.
ENV MISTBRIDGE_DATA_DIR=/data \
    MISTBRIDGE_NATS_EMBEDDED_ADDR=0.0.0.0:4222
USER 65532:65532
EXPOSE 8080 4222
VOLUME /data
# healthcheck GETs http://127.0.0.1:<port of MISTBRIDGE_LISTEN_ADDR>/healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/healthcheck"]
ENTRYPOINT ["/usr/local/bin/mistbridge"]
