# Sourced by scripts/fetch-*.sh: where the cache is, and the checks each fetch makes.
#   fetch_init DIR NAME SHA256  sets DEST ($PETREL_CACHE or ~/.cache/petrel, then DIR/NAME) and
#                               TMP (removed at exit); prints DEST and exits if the file is
#                               already there with that sha256.
#   fetch_install               checks $DEST.part against the sha256, moves it to DEST, prints DEST.
CACHE="${PETREL_CACHE:-$HOME/.cache/petrel}"

fetch_init() {
  NAME="$2"; SHA="$3"; DEST="$CACHE/$1/$NAME"
  mkdir -p "$CACHE/$1"
  if [ -f "$DEST" ] && echo "$SHA  $DEST" | sha256sum -c --status; then
    echo "$DEST"; exit 0
  fi
  TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT
}

fetch_install() {
  if ! echo "$SHA  $DEST.part" | sha256sum -c --status; then
    echo "error: sha256 of $NAME does not match $SHA" >&2; rm -f "$DEST.part"; exit 1
  fi
  mv "$DEST.part" "$DEST"
  echo "$DEST"
}
