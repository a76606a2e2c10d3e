# approuter container image: built from source in a Rust image, run from a distroless image that has
# only glibc, libgcc and the CA certificates (no shell, no package manager), as a non-root user.
#
#   docker build -t approuter .
#   docker run -p 5000:5000 -v "$PWD/app:/app:ro" -e destinations='[…]' -e VCAP_SERVICES='…' approuter
#
# The app folder (xs-app.json, default-env.json, localDir folders) is mounted or copied to /app.

FROM rust:1-bookworm AS build
# aws-lc-rs compiles its C part with CMake.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p approuter --bin approuter \
    && cp target/release/approuter /approuter

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /approuter /usr/local/bin/approuter
WORKDIR /app
# The admin endpoints listen on all interfaces inside the container so that the platform's probes
# and Prometheus can reach them; publish only the main port to the outside.
ENV PORT=5000 \
    XS_BIND_ADDRESS=0.0.0.0 \
    ADMIN_ADDRESS=0.0.0.0:9090 \
    LOG_JSON=true
EXPOSE 5000 9090
USER nonroot
ENTRYPOINT ["/usr/local/bin/approuter", "--dir", "/app"]
