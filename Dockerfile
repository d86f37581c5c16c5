# Dockerfile: the gateway as one static binary on distroless, running as non-root.

# Build stage. The Go minor version follows go.mod; a newer patch release is fetched by the
# toolchain itself if go.mod ever asks for one the image does not have yet.
FROM golang:1.26-bookworm AS build
WORKDIR /src

# Modules first, in their own layer, so source edits do not download them again.
COPY go.mod go.sum ./
RUN go mod download

COPY . .
# CGO off: a static binary that needs no libc, which is what lets the final image be
# distroless/static. -trimpath keeps build paths out of the binary; -s -w drops symbols.
# VERSION becomes the service.version of exported spans (docker build --build-arg VERSION=1.2.3).
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/atenex-api-gateway .

# Final stage: no shell, no package manager, CA certificates and tzdata only.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/atenex-api-gateway /atenex-api-gateway
# 65532:65532, the same ids the Kubernetes securityContext enforces.
USER nonroot:nonroot
# 8080: public API (PORT). 9090: admin listener with /metrics, and pprof only when
# GATEWAY_PPROF=true (GATEWAY_ADMIN_PORT), never to be published outside the cluster.
EXPOSE 8080 9090
# Exec form: there is no shell in this image, and the process must receive SIGTERM directly
# to drain in-flight requests.
ENTRYPOINT ["/atenex-api-gateway"]
