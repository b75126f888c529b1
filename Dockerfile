# syntax=docker/dockerfile:1
#
# cedargate container image: built with the pinned Rust toolchain, run on distroless (glibc, CA
# certificates, no shell, no package manager) as a non-root numeric user.
#
#   docker build -t cedargate .
#   docker run --rm -p 127.0.0.1:9191:9191 -p 127.0.0.1:9192:9192 \
#       -v "$PWD/my-cedargate.yaml:/etc/cedargate/cedargate.yaml:ro" \
#       -v "$PWD/my-policies:/etc/cedargate/policies:ro" cedargate
#
# The image carries NO config and NO policies: mount yours at /etc/cedargate/cedargate.yaml and
# at the `policy_dir` it names (/etc/cedargate/policies in the shipped examples), with `listen`
# on 0.0.0.0 (the default 127.0.0.1 is unreachable from outside the container). Forget a mount and
# cedargate refuses to start, naming the missing file, rather than enforcing example policies.
#   docker run --rm -v ...:/etc/cedargate/cedargate.yaml:ro -v ...:/etc/cedargate/policies:ro \
#       cedargate validate -c /etc/cedargate/cedargate.yaml
#
# Ports: 9191 Check (gRPC ext_authz + grpc.health.v1), 9192 admin (/healthz, /readyz, /metrics).
# Decision records go to stdout, operational logs to stderr (`--log-format json` for JSON).

# ---------------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
WORKDIR /src

# Only what the build reads. Cargo.toml declares the `it` test, the benches and the
# `authorizer-filter` example, and cargo refuses a manifest whose declared targets are missing,
# so their sources come along; crates/api's build.rs compiles proto/. build.rs names the commit in `--version`: there is no
# .git here, so pass it: docker build --build-arg CEDARGATE_COMMIT=$(git rev-parse --short=12 HEAD)
ARG CEDARGATE_COMMIT=unknown
ENV CEDARGATE_COMMIT=${CEDARGATE_COMMIT}
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY tests ./tests
COPY proto ./proto
COPY examples ./examples

# Cache mounts keep the registry and target folder between builds (BuildKit); the binary is
# copied out of the cached target folder because cache mounts are not part of the layer. The
# release profile strips symbols (`strip = "symbols"` in Cargo.toml: 29 MB instead of 173 MB);
# `strip` again to be sure nothing a profile override brings back ships.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin cedargate \
 && install -D -m 0755 target/release/cedargate /out/cedargate \
 && strip --strip-all /out/cedargate

# ---------------------------------------------------------------------------------------------
# distroless/cc: glibc, libgcc, CA certificates (JWKS and discovery are fetched over https and
# verified against the system roots), tzdata; nothing else. Debian 12 like the builder, so the
# binary's glibc matches. `:nonroot` runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=builder /out/cedargate /usr/local/bin/cedargate

LABEL org.opencontainers.image.title="cedargate" \
      org.opencontainers.image.description="Envoy ext_authz with OIDC/JWT identity and Cedar policies" \
      org.opencontainers.image.licenses="Apache-2.0"

# Numeric ids so Kubernetes' runAsNonRoot can verify them without reading /etc/passwd (the
# distroless `nonroot` user).
USER 65532:65532
WORKDIR /etc/cedargate
EXPOSE 9191 9192
# `cedargate health` reads listen.admin from this config (0.0.0.0 is asked on 127.0.0.1).
ENV CEDARGATE_CONFIG=/etc/cedargate/cedargate.yaml

# Ready = policies loaded, every issuer's keys usable, not draining (/readyz). No shell, no curl:
# the binary asks its own admin port. --start-period covers loading a large policy set.
HEALTHCHECK --interval=5s --timeout=3s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/cedargate", "health"]

# cedargate handles SIGTERM itself: health NOT_SERVING, readiness false, Checks still answered
# for listen.drain_seconds, then in-flight Checks finish and the decision log is flushed.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cedargate"]
CMD ["serve", "-c", "/etc/cedargate/cedargate.yaml"]
