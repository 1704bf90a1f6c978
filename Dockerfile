# The openai-gateway image: built from this repository, the release binary on a minimal base,
# run as a non-root user, with /healthz as its health check.
#
#   docker build -t openai-gateway .
#   docker run -p 8080:8080 -v ./gateway.toml:/etc/gateway.toml:ro openai-gateway \
#     --config /etc/gateway.toml
#
# It listens on 0.0.0.0:8080, so it needs callers (`[[users]]` in the config file) or
# --allow-anonymous (see docs/security.md); its data dir is the /data volume.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p openai-gateway \
 && mkdir -p /out/data \
 && cp target/release/openai-gateway /out/openai-gateway

# glibc and CA certificates, nothing else: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/openai-gateway /usr/local/bin/openai-gateway
COPY --from=build --chown=65532:65532 /out/data /data
USER nonroot
ENV GATEWAY_LISTEN=0.0.0.0:8080 DATA_DIR=/data
VOLUME /data
EXPOSE 8080
# The binary asks itself: the image has no curl.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s \
  CMD ["/usr/local/bin/openai-gateway", "--healthcheck"]
ENTRYPOINT ["/usr/local/bin/openai-gateway"]
