# certkeeper as a container (sidecar or standalone). Build: docker build -t certkeeper .
# The runtime image holds only the binary, CA roots and an unprivileged user; it writes only
# to the /var/lib/certkeeper volume (and file-target directories you mount), so it runs with
# a read-only root file system. Config lives in /etc/certkeeper.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY config ./config
RUN cargo build --release --locked --bin certkeeper

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/certkeeper --shell /usr/sbin/nologin certkeeper \
    && install -d -o certkeeper -g certkeeper -m 0700 /var/lib/certkeeper \
    && install -d -m 0755 /etc/certkeeper
COPY --from=build /src/target/release/certkeeper /usr/bin/certkeeper
COPY config/certkeeper.example.toml /etc/certkeeper/certkeeper.example.toml
USER certkeeper
VOLUME ["/var/lib/certkeeper"]
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s CMD ["/usr/bin/certkeeper", "healthcheck", "--config", "/etc/certkeeper/certkeeper.toml"]
ENTRYPOINT ["/usr/bin/certkeeper"]
CMD ["run", "--config", "/etc/certkeeper/certkeeper.toml"]
