# syntax=docker/dockerfile:1
# Multi-stage: build with the dev toolchain, run with production dependencies only, as non-root.

# Node 24, one of the supported lines (22, 24: package.json "engines", enforced by .npmrc).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
# --ignore-scripts: the "prepare" script builds dist/, which needs the sources copied below; the
# build runs explicitly after them (no dependency has an install script).
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json ./
COPY src ./src
COPY bench ./bench
COPY conformance ./conformance
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim AS runtime
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    WASMBOX_DATA_DIR=/var/lib/wasmbox
WORKDIR /app
COPY --from=build --chown=node:node /app/package.json ./
COPY --from=build --chown=node:node /app/node_modules ./node_modules
COPY --from=build --chown=node:node /app/dist/src ./dist/src
COPY --chown=node:node openapi.yaml ./
# The playground page (GET /), read at start-up.
COPY --chown=node:node src/playground ./src/playground
RUN mkdir -p /var/lib/wasmbox && chown node:node /var/lib/wasmbox
USER node
EXPOSE 8080
VOLUME ["/var/lib/wasmbox"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# SIGTERM drains in-flight runs (up to their deadlines) before exit.
STOPSIGNAL SIGTERM
CMD ["node", "dist/src/server.js"]
