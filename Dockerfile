# Coalesce container image: a static binary, the default models and
# configuration, no shell, running as an unprivileged numeric user.
#
#   docker build -t coalesce .            (or: make image, which uses buildah
#                                          or docker, whichever is installed)
#
# GO_IMAGE is the build stage's base: the official Go image of go.mod's Go
# version by default. Any image with the Go toolchain on PATH and CA
# certificates in /etc/ssl/certs works: every RUN is in exec form, so the
# base needs no shell (make image assembles such a base from the local Go
# installation when no registry is reachable: deploy/image/build.sh).
ARG GO_IMAGE=docker.io/library/golang:1.26

FROM ${GO_IMAGE} AS build
# VERSION and COMMIT are stamped into the binary (coalesce version,
# coalesce_build_info); make image passes git's.
ARG VERSION=dev
ARG COMMIT=unknown
# GOPROXY passes the builder's module proxy through.
ARG GOPROXY=https://proxy.golang.org,direct
ENV CGO_ENABLED=0 \
    GOOS=linux \
    GOPATH=/go \
    GOCACHE=/go/cache \
    GOTMPDIR=/go/tmp \
    GOPROXY=${GOPROXY} \
    GOFLAGS="-trimpath -buildvcs=false \"-ldflags=-s -w -buildid= -X main.version=${VERSION} -X main.commit=${COMMIT} -X github.com/coalesce-ml/coalesce/internal/app.commit=${COMMIT}\""
# WORKDIR creates the directory: a base without a shell has no mkdir, and
# may have no /tmp.
WORKDIR /go/tmp
WORKDIR /src
COPY . .
RUN ["go", "build", "-o", "/out/coalesce", "./cmd/coalesce"]
# models/wide-mlp's weights are generated (seeded, 84 MB), not committed.
RUN ["go", "run", "./models/wide-mlp/gen"]
# An empty /tmp for the final stage (scratch has none), owned by the
# runtime user below (COPY --chmod does not reach a copied directory itself
# in every builder; --chown does).
WORKDIR /out/tmp

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chown=65532:65532 /out/tmp /tmp
COPY --from=build /out/coalesce /usr/local/bin/coalesce
COPY --from=build /src/models /app/models
COPY configs /app/configs
ENV PATH=/usr/local/bin
WORKDIR /app
# 65532 is distroless' "nonroot"; numeric, so that Kubernetes can check
# runAsNonRoot without an /etc/passwd.
USER 65532:65532
# Data plane (predict, KServe V2, TF Serving, health) and admin plane
# (/metrics, health, pprof when on).
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/coalesce"]
# The shipped models' /predict default, as `make run` serves them; an image
# with a repository of its own sets its own (or leaves it: the first model).
CMD ["serve", "--config", "configs/coalesce.yaml", "--models.default", "digits-mlp"]
ARG VERSION=dev
ARG COMMIT=unknown
LABEL org.opencontainers.image.title="coalesce" \
      org.opencontainers.image.description="Sidecar inference server: adaptive batching, KServe V2, TF Serving and /predict on a pure-Go CPU engine" \
      org.opencontainers.image.source="https://github.com/coalesce-ml/coalesce" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}"
