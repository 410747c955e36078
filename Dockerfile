# syntax=docker/dockerfile:1.7
# DES in one image: `des serve` on port 8000 by default; the same image runs
# the packer and the migrator by overriding the command:
#   docker run ... des:local                                    # HTTP retriever on DES_PORT (8000)
#   docker run ... des:local node bin/des.js pack --input-json /data/manifests/to-pack.json --output-dir /data/output
#   docker run ... des:local node bin/des.js migrate --config /config/migration.yaml
#   docker run ... des:local des-migrate --config /config/migration.yaml   # the original's command names (des-pack, des-migrate, des-stats) are on PATH too
#
# Stages: `deps` (production node_modules only), `builder` (Rust + Node: the
# addon and the JS), and the final slim image, which gets node_modules from
# `deps` and dist/, bin/, the loader and the addon from `builder`.

# Node 24: the active LTS (Node 20 reached its end of life in April 2026).
ARG NODE_VERSION=24
ARG RUST_VERSION=1

# --- Rust toolchain, copied into the Node builder (no curl | sh) ---
FROM rust:${RUST_VERSION}-bookworm AS rust

# --- production dependencies only ---
FROM node:${NODE_VERSION}-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# No dependency of the runtime needs an install script (the addon is built below).
RUN --mount=type=cache,target=/root/.npm \
    npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# --- build the addon (release) and the TypeScript ---
FROM node:${NODE_VERSION}-bookworm AS builder
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo PATH=/usr/local/cargo/bin:$PATH
COPY --from=rust /usr/local/rustup /usr/local/rustup
COPY --from=rust /usr/local/cargo /usr/local/cargo
WORKDIR /app
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --no-audit --no-fund
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY crates ./crates
COPY tsconfig.json index.js index.d.ts ./
COPY src ./src
COPY bin ./bin
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/app/target \
    npm run build \
 && ls des.*.node

# --- runtime ---
FROM node:${NODE_VERSION}-bookworm-slim AS runtime
# The commit in des_build_info: `docker build --build-arg DES_BUILD_COMMIT=$(git rev-parse HEAD)`.
ARG DES_BUILD_COMMIT=""
# The port is DES_PORT (not a --port in CMD), so the HEALTHCHECK probes the port des serve
# listens on when a deployment changes it: `docker run -e DES_PORT=9000 -p 9000:9000 ...`.
ENV NODE_ENV=production \
    DES_BACKEND=local \
    DES_BASE_DIR=/data/des \
    DES_HOST=0.0.0.0 \
    DES_PORT=8000 \
    DES_BUILD_COMMIT=${DES_BUILD_COMMIT}
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=builder /app/package.json ./
COPY --from=builder /app/index.js /app/index.d.ts ./
COPY --from=builder /app/des.*.node ./
COPY --from=builder /app/dist ./dist
COPY --from=builder /app/bin ./bin
# The image's user `node` (uid 1000) owns only the data mount points; the
# application files stay root-owned and read-only to it. The package's commands
# are on PATH as the original image had them, so its Jobs, CronJobs and compose
# commands (`des-pack --input-json ...`, `des-migrate --config ...`) run unchanged.
RUN mkdir -p /data/des /data/input /data/manifests /data/output \
 && chown -R 1000:1000 /data \
 && for c in des des-pack des-migrate des-stats; do ln -s "/app/bin/$c.js" "/usr/local/bin/$c"; done
USER 1000:1000
EXPOSE 8000
# No curl in the slim image: Node's fetch does the probe, on DES_PORT.
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.DES_PORT || 8000) + '/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "bin/des.js", "serve"]
