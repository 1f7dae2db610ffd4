# syntax=docker/dockerfile:1

# Build:  docker build --build-arg VERSION=$(git describe --tags --always) -t bffgate .
# Run:    docker run -v "$PWD/config:/etc/bffgate:ro" -p 8080:8080 bffgate
#         (the default command is `serve -config /etc/bffgate/gateway.yaml`;
#         the image holds no configuration: mount it)

FROM golang:1.26 AS build
WORKDIR /src
ARG VERSION=dev
# Module downloads and the build cache live in cache mounts, so a source
# change rebuilds only what changed and no module is fetched twice.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/bffgate ./cmd/bffgate

# distroless/static: CA certificates, /etc/passwd with nonroot (65532), tzdata;
# no shell and no package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bffgate /bffgate
USER nonroot:nonroot
# 8080: the gateway (server.listen); 9090: /healthz /readyz /metrics
# (server.admin_listen). Listen on 0.0.0.0 inside the container.
EXPOSE 8080 9090
ENTRYPOINT ["/bffgate"]
CMD ["serve", "-config", "/etc/bffgate/gateway.yaml"]
