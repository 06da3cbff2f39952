#!/usr/bin/env bash
# Regenerates the Swift code for protos/*.proto. The output is committed; run this only after
# editing a .proto file (the package build never runs protoc).
#
#   scripts/generate-protos.sh
#
# What it does:
#   1. installs protoc (Debian's protobuf-compiler) when it is missing;
#   2. builds the code-generator plugins protoc-gen-swift (swift-protobuf 1.39.0) and
#      protoc-gen-grpc-swift-2 (grpc-swift-protobuf 2.4.1) in a scratch package OUTSIDE the
#      repository ($PETREL_PROTOC_PLUGINS, default /tmp/petrel-protoc-plugins), so the
#      project's own package never depends on the generators;
#   3. writes message code for every proto into Sources/TritonProtos/ and the gRPC service
#      stubs (client + server) into Sources/GRPCFrontend/Generated/ (target GRPCFrontend,
#      which depends on GRPCCore and GRPCProtobuf); the stubs `import TritonProtos` for the
#      message types;
#   4. encodes each test fixture Tests/Fixtures/pbtxt/*/config.pbtxt with protoc's own (C++)
#      text-format parser into config.binpb next to it: the tests check that Petrel's Swift
#      parser reads the same message from the text as the reference parser wrote on the wire.
#
# Keep the plugin versions in step with the swift-protobuf version in Package.swift: the
# generated code checks that its runtime library is compatible.
set -euo pipefail

SWIFT_PROTOBUF_VERSION="1.39.0"
GRPC_SWIFT_PROTOBUF_VERSION="2.4.1"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUGINS="${PETREL_PROTOC_PLUGINS:-/tmp/petrel-protoc-plugins}"
MESSAGES_OUT="$ROOT/Sources/TritonProtos"
GRPC_OUT="$ROOT/Sources/GRPCFrontend/Generated"
PROTOS=(model_config.proto grpc_service.proto health.proto)
SERVICE_PROTOS=(grpc_service.proto health.proto)

log() { printf '[generate-protos] %s\n' "$*" >&2; }

# 1. protoc
if ! command -v protoc >/dev/null 2>&1; then
    log "protoc not found: installing protobuf-compiler"
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq protobuf-compiler >/dev/null
fi
log "using $(protoc --version)"

# 2. plugins, from a scratch package that only depends on the two generator packages.
mkdir -p "$PLUGINS"
MANIFEST="$PLUGINS/Package.swift"
NEW_MANIFEST="$(cat <<EOF
// swift-tools-version:6.2
// Scratch package written by petrel's scripts/generate-protos.sh: builds protoc plugins only.
import PackageDescription

let package = Package(
    name: "PetrelProtocPlugins",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "$SWIFT_PROTOBUF_VERSION", traits: []),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "$GRPC_SWIFT_PROTOBUF_VERSION"),
    ],
    targets: []
)
EOF
)"
if [ ! -f "$MANIFEST" ] || [ "$(cat "$MANIFEST")" != "$NEW_MANIFEST" ]; then
    printf '%s\n' "$NEW_MANIFEST" > "$MANIFEST"
fi
log "building protoc-gen-swift $SWIFT_PROTOBUF_VERSION and protoc-gen-grpc-swift-2 $GRPC_SWIFT_PROTOBUF_VERSION in $PLUGINS"
( cd "$PLUGINS" \
    && swift build -c release --product protoc-gen-swift \
    && swift build -c release --product protoc-gen-grpc-swift-2 )
BIN="$(cd "$PLUGINS" && swift build -c release --show-bin-path)"
for tool in protoc-gen-swift protoc-gen-grpc-swift-2; do
    [ -x "$BIN/$tool" ] || { log "missing $BIN/$tool"; exit 1; }
done

# 3. generate (into fresh temporary folders, then replace the old output)
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$TMP/messages" "$TMP/grpc"
cd "$ROOT/protos"
# Message code for every proto.
protoc -I . \
    --plugin="protoc-gen-swift=$BIN/protoc-gen-swift" \
    --swift_out="$TMP/messages" \
    --swift_opt=Visibility=Public \
    "${PROTOS[@]}"
# Service stubs for the protos that declare a service.
protoc -I . \
    --plugin="protoc-gen-grpc-swift-2=$BIN/protoc-gen-grpc-swift-2" \
    --grpc-swift-2_out="$TMP/grpc" \
    --grpc-swift-2_opt=Visibility=Public,Server=true,Client=true,ExtraModuleImports=TritonProtos \
    "${SERVICE_PROTOS[@]}"

mkdir -p "$MESSAGES_OUT" "$GRPC_OUT"
rm -f "$MESSAGES_OUT"/*.pb.swift "$GRPC_OUT"/*.grpc.swift
cp "$TMP/messages"/*.pb.swift "$MESSAGES_OUT/"
cp "$TMP/grpc"/*.grpc.swift "$GRPC_OUT/"
log "wrote $(cd "$ROOT" && ls Sources/TritonProtos/*.pb.swift Sources/GRPCFrontend/Generated/*.grpc.swift | tr '\n' ' ')"

# 4. wire goldens for the config fixtures
for fixture in "$ROOT"/Tests/Fixtures/pbtxt/*/config.pbtxt; do
    protoc -I . --encode=inference.ModelConfig model_config.proto < "$fixture" > "${fixture%.pbtxt}.binpb"
done
log "encoded $(ls "$ROOT"/Tests/Fixtures/pbtxt/*/config.binpb | wc -l) config fixtures to config.binpb"
