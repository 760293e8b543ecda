# hookyard: multi-stage build, small non-root runtime image.
#   docker build -t hookyard .
#   docker run -p 8080:8080 -v "$PWD/examples/quickstart:/etc/hookyard:ro" hookyard
# The config is mounted as a directory (works with Kubernetes ConfigMaps: the
# `..data` folders they create are skipped). The embedded queue lives in
# /var/lib/hookyard: mount a volume there to keep queued events across restarts.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Not built here, but cargo needs every workspace member's manifest.
COPY bench/hookyard-bench ./bench/hookyard-bench
RUN cargo build --release --locked --bin hookyard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/hookyard hookyard \
    && mkdir -p /var/lib/hookyard /etc/hookyard && chown hookyard /var/lib/hookyard
COPY --from=build /src/target/release/hookyard /usr/local/bin/hookyard
USER hookyard
WORKDIR /var/lib/hookyard
ENV HOOKYARD_CONFIG=/etc/hookyard
# 8080: /hooks/*, /v1/* (unless server.api_listen is set), /metrics, /healthz, /readyz.
# Inside a container set server.listen to "0.0.0.0:8080".
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/hookyard"]
CMD ["run", "--log-format", "json"]
