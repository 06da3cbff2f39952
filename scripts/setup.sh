#!/usr/bin/env bash
# Installs what building and testing Petrel needs and is missing on a fresh machine.
# Swift comes with the machine image (/opt/swift); Swift packages resolve from the local mirror.
set -euo pipefail
if ! command -v swift >/dev/null 2>&1; then
  if [ -x /opt/swift/usr/bin/swift ]; then export PATH="/opt/swift/usr/bin:$PATH";
  else echo "error: no Swift toolchain found (expected swift on PATH or /opt/swift)" >&2; exit 1; fi
fi
need=()
command -v python3 >/dev/null 2>&1 || need+=(python3 python3-pip)
command -v unzip >/dev/null 2>&1 || need+=(unzip)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO apt-get install -y -qq "${need[@]}"
fi
