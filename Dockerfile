# npm run package (scripts/package.ts) from source in a clean Debian 12 image. The last stage
# holds only the executables of dist/release, so
#   podman build --output type=local,dest=out .      (or docker build, with BuildKit)
# leaves out/tetherd-linux-x64, out/tetherd-linux-arm64 and the rest. BASE is any Debian 12
# image: Docker Hub's, or one made from Debian's packages (test/integration/dockerfile.test.ts).
ARG BASE=docker.io/library/debian:bookworm

FROM ${BASE} AS build
# ca-certificates for npm's https; C compilers for the addon of each target, whose binutils
# strip the base binaries; qemu and the armhf libraries Node 20 loads, to make the armv7 blob.
# Debian's Node only runs npm ci: Node 24 comes from the devDependency `node`, as on any machine.
# Docker Hub's image deletes downloaded packages after each install; the cache mounts keep them
# across builds. No fsync from dpkg: a build that stops leaves no image to keep consistent.
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt/lists,sharing=locked \
    rm -f /etc/apt/apt.conf.d/docker-clean && \
    apt-get update -qq && \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o Dpkg::Options::=--force-unsafe-io \
      ca-certificates nodejs npm \
      gcc libc6-dev gcc-aarch64-linux-gnu libc6-dev-arm64-cross \
      gcc-arm-linux-gnueabihf libc6-dev-armhf-cross \
      qemu-user-static libstdc++6-armhf-cross libatomic1-armhf-cross

WORKDIR /src
COPY . .
# Behind a TLS-intercepting proxy, --secret id=ca,src=FILE names its CA (a secret mount, so
# that the file stays out of the image).
RUN --mount=type=cache,target=/root/.npm \
    --mount=type=secret,id=ca \
    if [ -f /run/secrets/ca ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca; fi && \
    npm ci --no-audit --no-fund && npm run package

FROM scratch AS release
COPY --from=build /src/dist/release/ /
