FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends openssl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm install --omit=dev --no-audit --no-fund
COPY . .
RUN ln -s /app/bin/homeostat.js /usr/local/bin/homeostat
ENTRYPOINT []
CMD ["homeostat", "--help"]
