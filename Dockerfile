# Multi-stage build of clickwatch.
#   target `clickwatch`: the binary on a slim Debian (the stream job, generate, batch)
#   target `airflow`:    Apache Airflow with the clickwatch binary and the DAG
FROM rust:1.95-bookworm AS build
# rdkafka builds its bundled librdkafka with cmake; it includes curl's header.
RUN apt-get update && apt-get install -y --no-install-recommends cmake libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY bin/clickwatch.rs bin/clickwatch.rs
COPY src src
COPY dataflows dataflows
RUN cargo build --release --locked --bin clickwatch

FROM debian:bookworm-slim AS clickwatch
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* && useradd --system --create-home clickwatch
COPY --from=build /src/target/release/clickwatch /usr/local/bin/clickwatch
USER clickwatch
WORKDIR /data
ENTRYPOINT ["clickwatch"]
CMD ["--help"]

FROM apache/airflow:3.3.2 AS airflow
COPY --from=build /src/target/release/clickwatch /usr/local/bin/clickwatch
COPY airflow/dags /opt/airflow/dags
