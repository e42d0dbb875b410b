# tlpwire with its TAP addon, for docker-compose.yml (a root complex and an endpoint container
# linked by PCIe TLPs over WebSocket, each with a TAP). Same commands as scripts/netns-demo.sh.
#
#   docker compose build && docker compose up        (see docs/DEMO.md)

# ---- build: TypeScript → dist/, and native/tap/build/Release/{tap,bulkcopy}.node (npm ci runs `prepare`)
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make gcc g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY bin ./bin
COPY scripts ./scripts
COPY native ./native
COPY src ./src
RUN npm ci
# build-native never fails an install (tap: is optional); in this image the TAP is the point.
RUN test -f native/tap/build/Release/tap.node || { cat native/tap/build-native.log; exit 1; }

# ---- runtime: production dependencies, the build output, and the tools the demo uses
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 iputils-ping iperf3 netcat-openbsd \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/bin ./bin
COPY --from=build /app/native/tap/build/Release/tap.node /app/native/tap/build/Release/bulkcopy.node ./native/tap/build/Release/
ENV PATH=/app/bin:$PATH
# 5301: the PCIe link (rc --listen ws://0.0.0.0:5301)
EXPOSE 5301
ENTRYPOINT ["tlpwire"]
CMD ["--help"]
