# certkeeper as a container (sidecar or standalone). Build: docker build -t certkeeper .
# The runtime image holds only the binary, CA roots and an unprivileged user (uid 10001); it
# writes only to the /var/lib/certkeeper volume (and file-target directories you mount), so it
# runs with a read-only root file system. Mount the config at /etc/certkeeper/certkeeper.toml;
# without one, the entrypoint says so and runs a default config that manages nothing.
FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, built against stub sources: this layer is reused until Cargo.toml or
# Cargo.lock change, so editing the sources rebuilds only certkeeper itself.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
    && echo 'fn main() {}' >src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin certkeeper \
    && rm -rf src target/release/certkeeper* target/release/deps/certkeeper-* \
        target/release/deps/libcertkeeper-* target/release/.fingerprint/certkeeper-*
COPY src ./src
COPY config ./config
RUN cargo build --release --locked --bin certkeeper

FROM debian:bookworm-slim
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="certkeeper" \
      org.opencontainers.image.description="Keeps TLS certificates valid, deployed and compliant across cloud services" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/certkeeper/certkeeper" \
      org.opencontainers.image.documentation="https://github.com/certkeeper/certkeeper#readme"
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/certkeeper --shell /usr/sbin/nologin certkeeper \
    && install -d -o certkeeper -g certkeeper -m 0700 /var/lib/certkeeper \
    && install -d -m 0755 /etc/certkeeper
COPY --from=build /src/target/release/certkeeper /usr/bin/certkeeper
COPY packaging/container/entrypoint /usr/bin/certkeeper-entrypoint
COPY packaging/container/default.toml /usr/share/certkeeper/default.toml
COPY config/certkeeper.example.toml /usr/share/doc/certkeeper/examples/certkeeper.example.toml
ENV CERTKEEPER_CONFIG=/etc/certkeeper/certkeeper.toml
# Two malloc arenas instead of one per thread: ~17 MiB less idle RSS at 10,000 targets
# (BENCHMARKS.md, footprint).
ENV MALLOC_ARENA_MAX=2
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
VOLUME ["/var/lib/certkeeper"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s CMD ["/usr/bin/certkeeper-entrypoint", "healthcheck"]
ENTRYPOINT ["/usr/bin/certkeeper-entrypoint"]
CMD ["run"]
