# supergo as a container's entrypoint (README.md, "Running in a container"): PID 1 reaps every
# orphan, stops its programs itself on `docker stop` (highest priority first, each with its
# stop_timeout) and exits 0, and the programs' output is the container's log.
#
#   docker build -t supergo-demo .
#   docker run -d --name demo -p 4041:4041 --stop-timeout 30 supergo-demo
#   curl 127.0.0.1:4041/                          # pid: 8
#   docker exec demo supergoctl restart hello     # zero-downtime restart inside the container
#   docker logs demo                              # `hello | …` lines and supergo's own log
#   docker stop demo                              # SIGTERM: every program stopped, exit 0

# Build: the daemon, the CLI and the demo child, in the official Rust image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p supergo -p supergoctl --bins --example hello

# Run: the binaries and the config on Debian slim (glibc, as in the build image; supergo itself
# needs nothing else). Your programs and their runtime go here too.
FROM debian:bookworm-slim
COPY --from=build /src/target/release/supergo /src/target/release/supergoctl /usr/local/bin/
COPY --from=build /src/target/release/examples/hello /usr/local/bin/hello
COPY config/container.toml /etc/supergo/supergo.toml
EXPOSE 4041
# What supergo takes as "stop everything and exit" (also INT and QUIT).
STOPSIGNAL SIGTERM
ENTRYPOINT ["supergo"]
CMD ["--config", "/etc/supergo/supergo.toml"]
