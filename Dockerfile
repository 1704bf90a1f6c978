# The openai-gateway image: built from this repository, the release binary on a minimal base,
# run as a non-root user, with /healthz as its health check.
#
#   docker build -t openai-gateway .                      # profile-guided (the default)
#   docker build --build-arg PGO=0 -t openai-gateway .    # the plain release build, faster to build
#   docker run -p 8080:8080 -v ./gateway.toml:/etc/gateway.toml:ro openai-gateway \
#     --config /etc/gateway.toml
#
# It listens on 0.0.0.0:8080, so it needs callers (`[[users]]` in the config file) or
# --allow-anonymous (see docs/security.md); its data dir is the /data volume.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# PGO=1 (the default): a profile-guided build (bench/pgo-build: an instrumented build serves
# the benchmark's training run, then the optimizing build uses its counts), about a third
# less CPU per request than the plain release build. PGO=0: the plain release build.
ARG PGO=1
RUN mkdir -p /out/data \
 && if [ "$PGO" = 1 ]; then \
      rustup component add llvm-tools \
      && bench/pgo-build \
      && cp target/pgo/openai-gateway /out/openai-gateway; \
    else \
      cargo build --release --locked -p openai-gateway \
      && cp target/release/openai-gateway /out/openai-gateway; \
    fi

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
