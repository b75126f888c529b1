# syntax=docker/dockerfile:1
#
# cedargate container image: built with the pinned Rust toolchain, run on slim Debian as a
# non-root user.
#
#   docker build -t cedargate .
#   docker run --rm -p 127.0.0.1:9191:9191 -p 127.0.0.1:9192:9192 \
#       -v "$PWD/my-cedargate.yaml:/etc/cedargate/cedargate.yaml:ro" cedargate
#
# The image carries the example policies in /etc/cedargate/policies (the default `policy_dir`,
# relative to the config file) but no config: mount yours at /etc/cedargate/cedargate.yaml, with
# `listen` on 0.0.0.0 (the default 127.0.0.1 is unreachable from outside the container). Mount a
# policy folder over /etc/cedargate/policies to replace the examples.
#   docker run --rm -v ...:/etc/cedargate/cedargate.yaml:ro cedargate validate -c /etc/cedargate/cedargate.yaml
#
# Ports: 9191 Check (gRPC ext_authz + grpc.health.v1), 9192 admin (/healthz, /readyz, /policy).
# Decision records go to stdout, operational logs to stderr (`--log-format json` for JSON).

# ---------------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Only what the build reads. Cargo.toml declares the `it` test and the `check` bench, and cargo
# refuses a manifest whose declared targets are missing, so their sources come along.
# (If proto/ is added, copy it here too.) build.rs names the commit in `--version`: there is no
# .git here, so pass it: docker build --build-arg CEDARGATE_COMMIT=$(git rev-parse --short=12 HEAD)
ARG CEDARGATE_COMMIT=unknown
ENV CEDARGATE_COMMIT=${CEDARGATE_COMMIT}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY tests ./tests

# Cache mounts keep the registry and target folder between builds (BuildKit); the binary is
# copied out of the cached target folder because cache mounts are not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cedargate \
 && install -D -m 0755 target/release/cedargate /out/cedargate

# ---------------------------------------------------------------------------------------------
# Same Debian release as the builder, so the binary's glibc matches.
FROM debian:bookworm-slim

# ca-certificates: JWKS and discovery are fetched over https and verified against the system
# roots. Nothing else: no shell tools are needed to run cedargate.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 cedargate \
 && useradd --system --uid 10001 --gid cedargate --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin cedargate

COPY --from=builder /out/cedargate /usr/local/bin/cedargate
COPY policies /etc/cedargate/policies

LABEL org.opencontainers.image.title="cedargate" \
      org.opencontainers.image.description="Envoy ext_authz with OIDC/JWT identity and Cedar policies" \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric ids so Kubernetes' runAsNonRoot can verify them without reading /etc/passwd.
USER 10001:10001
WORKDIR /etc/cedargate
EXPOSE 9191 9192

# cedargate handles SIGTERM itself (health NOT_SERVING, readiness false, in-flight Checks finish).
STOPSIGNAL SIGTERM
ENTRYPOINT ["cedargate"]
CMD ["serve", "-c", "/etc/cedargate/cedargate.yaml"]
