# certkeeper container image. The Operations issue fills in the hardened runtime stage.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
COPY --from=build /src/target/release/certkeeper /usr/bin/certkeeper
USER 65534:65534
ENTRYPOINT ["/usr/bin/certkeeper"]
CMD ["run", "--config", "/etc/certkeeper/certkeeper.toml"]
