# hookyard: multi-stage build, small non-root runtime image.
#   podman build --format docker -t hookyard .     (or: docker build -t hookyard .)
#   podman run -p 8080:8080 -v "$PWD/examples/quickstart:/etc/hookyard:ro" \
#     -v hookyard-data:/var/lib/hookyard hookyard
# The config is mounted as a directory (works with Kubernetes ConfigMaps: the
# `..data` folders they create are skipped). The embedded queue lives in
# /var/lib/hookyard: mount a volume there to keep queued events across restarts.
#
# Two ways to get the binary into the image:
#   - default (no arguments): compiled from source in the `build` stage;
#   - `--target runtime-prebuilt`: a release binary already built on a
#     Debian 12 (glibc 2.36) host, taken from `target/release/hookyard` in the
#     build context and stripped of debug info. CI uses it so a run does not
#     pay a cold release build inside the container; .dockerignore lets only
#     that file of target/ in.
#
# HEALTHCHECK is a Docker image-format field: podman keeps it only when the
# image is built with `--format docker` (the OCI format has no such field).

FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
# Not built here, but cargo needs every workspace member's manifest.
COPY bench/hookyard-bench ./bench/hookyard-bench
# Cargo.toml keeps line tables in release builds (for profiling); the
# image does without them: the binary shrinks from 155 MB to 27 MB,
# and backtraces still name functions (the symbols stay).
ENV CARGO_PROFILE_RELEASE_DEBUG=0
RUN cargo build --release --locked --bin hookyard

# `--target runtime-prebuilt` takes the binary from the build context and
# strips its debug info (as the build above leaves it out).
FROM debian:bookworm-slim AS prebuilt
RUN apt-get update && apt-get install -y --no-install-recommends binutils
COPY target/release/hookyard /hookyard
RUN strip --strip-debug /hookyard

# Everything of the runtime image except the binary, shared by both ways.
FROM debian:bookworm-slim AS runtime
# apt-get clean and the lists: the package caches are 80 MB (images built
# from debootstrap lack the official image's docker-clean apt hook).
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log \
    && useradd --system --uid 10001 --home-dir /var/lib/hookyard hookyard \
    && mkdir -p /var/lib/hookyard /etc/hookyard && chown hookyard /var/lib/hookyard
USER hookyard
WORKDIR /var/lib/hookyard
ENV HOOKYARD_CONFIG=/etc/hookyard
# 8080: /hooks/*, /v1/* (unless server.api_listen is set), /metrics, /healthz, /readyz.
# Inside a container set server.listen to "0.0.0.0:8080".
EXPOSE 8080
# The image has no curl: the binary checks itself. /readyz is 503 while the
# daemon starts or drains, so an orchestrator stops sending it traffic.
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/hookyard", "health", "http://127.0.0.1:8080/readyz"]
ENTRYPOINT ["/usr/local/bin/hookyard"]
CMD ["run", "--log-format", "json"]

# `podman build --format docker --target runtime-prebuilt .`: the binary
# from the build context instead of compiling it.
FROM runtime AS runtime-prebuilt
COPY --from=prebuilt /hookyard /usr/local/bin/hookyard

# The default (last) stage: the binary compiled above.
FROM runtime
COPY --from=build /src/target/release/hookyard /usr/local/bin/hookyard
