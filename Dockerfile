# syntax=docker/dockerfile:1
# berth: one image for every berth service (`berth serve api|state|http|db|dns|backup|all`),
# also used by compose.yaml as the web server (nginx) and to prepare shared volumes.

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src
# Only what the build reads (keeps target/ and .git out of the context copy).
COPY Cargo.toml Cargo.lock ./
COPY libs libs
COPY services services
COPY tests tests
COPY migrations migrations
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p berth \
 && install -m 0755 target/release/berth /usr/local/bin/berth

# ---- runtime ----------------------------------------------------------------
FROM debian:bookworm-slim
# nginx: `nginx -t` and reloads by the http worker (and the web server itself in compose);
# bind9-utils: named-checkconf, named-checkzone, rndc for the dns worker;
# mariadb-client: mariadb-dump / mariadb for the db and backup workers.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl nginx bind9-utils mariadb-client \
 && rm -rf /var/lib/apt/lists/*

COPY --from=build /usr/local/bin/berth /usr/local/bin/berth
COPY ops/nginx/berth.conf /etc/nginx/conf.d/berth.conf

# The nginx pid file lives in /run/nginx so compose can share it (with the pid
# namespace) between the nginx container and the http worker that reloads it.
RUN sed -i 's#^pid .*#pid /run/nginx/nginx.pid;#' /etc/nginx/nginx.conf \
 && install -d /run/nginx \
      /var/lib/berth/config/server_master/nginx/vhost.d \
      /var/lib/berth/config/server_master/bind \
 && touch /var/lib/berth/config/server_master/bind/zones.conf \
 && nginx -t

ENV BERTH_DATA_ROOT=/var/lib/berth \
    BERTH_NGINX_CONF=/etc/nginx/nginx.conf \
    BERTH_NAMED_CONF=/etc/bind/named.conf \
    RUST_LOG=info
VOLUME ["/var/lib/berth"]
EXPOSE 8080
ENTRYPOINT ["berth"]
CMD ["serve", "all"]
