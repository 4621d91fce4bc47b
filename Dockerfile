# Build stage: compile TypeScript to dist/. Runtime stage: production dependencies + dist/ only,
# run by plain node (no TypeScript loader).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --no-audit --no-fund
COPY . .
RUN npm run build

FROM node:24-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund
COPY bin ./bin
COPY deploy/pve ./deploy/pve
COPY --from=build /app/dist ./dist
RUN ln -s /app/bin/homeostat.js /usr/local/bin/homeostat
ENTRYPOINT []
CMD ["homeostat", "--help"]
