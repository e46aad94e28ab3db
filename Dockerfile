# syntax=docker/dockerfile:1
#
# The warden image: `docker build -t warden:0.1.0 .` (see docs/install.md).
#
# Two stages: the binary is built in the official Rust image on Debian bookworm and copied,
# stripped, into debian:bookworm-slim, which has the shared libraries it links against (glibc,
# libgcc_s; tests/tests/deploy_image.rs checks the binary needs nothing else) plus the CA
# certificates for TLS to Slack, SMTP, Prometheus and the API server. No model is inside:
# summaries use a GGUF file from a mounted volume (`analysis.model.path`), fetched into it
# with `warden model pull`.
#
# The image runs as an unprivileged user (uid 65532) and writes nothing outside its volumes, so
# it runs with a read-only root filesystem: the store lives on /var/lib/warden (a volume) and
# temporary files go to /tmp (an emptyDir in the manifests).

ARG RUST_VERSION=1.88

FROM rust:${RUST_VERSION}-bookworm AS build
# `warden --version` names this commit (.git is not in the build context):
#   docker build --build-arg WARDEN_GIT_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG WARDEN_GIT_COMMIT=unknown
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p warden-agent --bin warden \
    && strip --strip-all -o /warden target/release/warden

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 65532 warden \
    && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /var/lib/warden --shell /usr/sbin/nologin warden \
    && install -d -o 65532 -g 65532 -m 0750 /var/lib/warden /var/lib/warden/models \
    && install -d -m 0755 /etc/warden
COPY --from=build /warden /usr/local/bin/warden
USER 65532:65532
WORKDIR /var/lib/warden
VOLUME ["/var/lib/warden"]
# The API, /healthz, /readyz and /metrics (server.listen in warden.yaml).
EXPOSE 8080
ENTRYPOINT ["warden", "run", "-c", "/etc/warden/warden.yaml"]
