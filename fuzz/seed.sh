#!/usr/bin/env bash
# Seeds corpus/<target>/ for every fuzz target from ../fixtures/*.bin: each whole capture,
# plus the parts each parser starts on (the PROXY header alone, the bytes after it).
# Idempotent; the corpora are not in git (see .gitignore).
set -euo pipefail
cd "$(dirname "$0")"
fixtures=../fixtures
targets="${*:-proxy_v1 proxy_v2 proxy_detect tls emit_roundtrip http_request connect_reply session first_bytes}"

hex() { head -c "$1" "$2" | od -An -tx1 | tr -d ' \n'; }

# Length of the PROXY header a capture starts with, 0 if none. v1: the first line (up to
# LF, so a line without CRLF in its first bytes is kept whole); v2: 16 + the length field.
header_len() {
  local f=$1
  if [ "$(hex 6 "$f")" = "50524f585920" ]; then
    head -n 1 "$f" | wc -c
  elif [ "$(hex 12 "$f")" = "0d0a0d0a000d0a515549540a" ]; then
    set -- $(od -An -tu1 -j 14 -N 2 "$f")
    echo $((16 + $1 * 256 + $2))
  else
    echo 0
  fi
}

for t in $targets; do mkdir -p "corpus/$t"; done
for f in "$fixtures"/*.bin; do
  name=$(basename "$f" .bin)
  size=$(wc -c <"$f")
  hdr=$(header_len "$f")
  # A header longer than the capture (a truncated one): the capture is its own seed.
  [ "$hdr" -ge "$size" ] && hdr=0
  for t in $targets; do
    [ "$t" = session ] && continue # scripts, not captures: see below
    if [ "$t" = first_bytes ]; then
      # One knob byte first (sluice_fuzz::first_bytes): 6 required + trusted, 7 optional +
      # trusted, 5 off, 14 required + trusted + LOCAL.
      for k in 6 7 5 14; do
        { printf "\\$(printf %03o "$k")"; cat "$f"; } >"corpus/$t/$name.k$k.bin"
      done
      continue
    fi
    cp "$f" "corpus/$t/$name.bin"
    case $t in
      proxy_v1 | proxy_v2 | proxy_detect)
        if [ "$hdr" -gt 0 ]; then head -c "$hdr" "$f" >"corpus/$t/$name.header.bin"; fi ;;
      tls)
        if [ "$hdr" -gt 0 ]; then tail -c +"$((hdr + 1))" "$f" >"corpus/$t/$name.hello.bin"; fi ;;
    esac
  done
done
for t in $targets; do [ "$t" = session ] || echo "corpus/$t: $(ls "corpus/$t" | wc -l) files"; done

# Hand-made seeds for the HTTP parsers: a curl request head, tinyproxy's CONNECT reply, refusals.
if [ -d corpus/http_request ]; then
  printf 'GET / HTTP/1.1\r\nHost: example.test\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n' >corpus/http_request/curl-get.bin
  printf 'GET /x HTTP/1.0\r\nHost: [2001:db8::1]:8443\r\n\r\n' >corpus/http_request/ipv6-host.bin
fi
if [ -d corpus/connect_reply ]; then
  printf 'HTTP/1.0 200 Connection established\r\nProxy-agent: tinyproxy/1.11.1\r\n\r\n' >corpus/connect_reply/tinyproxy-200.bin
  printf 'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="x"\r\n\r\nearly' >corpus/connect_reply/407.bin
fi

# The session target reads scripts (fuzz/src/session.rs): per capture, on each worker (copy,
# splice): open a client, send the capture in writes of at most 255 bytes, the upstream
# reads and answers a CONNECT reply and 64 bytes, both read, the client half-closes, then the
# upstream. The same script as seed_from_capture() there.
if [ -d corpus/session ]; then
  answer="HTTP/1.1 200 Connection established\r\n\r\n$(printf 'a%.0s' $(seq 64))"
  tmp=$(mktemp -d)
  for f in "$fixtures"/*.bin; do
    rm -f "$tmp"/p.*
    split -b 255 -d -a 3 "$f" "$tmp/p."
    for worker in 0 1; do
      {
        printf "\\$(printf %03o "$worker")\\000"
        for p in "$tmp"/p.*; do
          printf '\001'
          printf "\\$(printf %03o "$(wc -c <"$p")")"
          cat "$p"
        done
        printf '\012\006'
        printf "\\$(printf %03o "$(printf "$answer" | wc -c)")"
        printf "$answer"
        printf '\012\005\003\012\010\005'
      } >"corpus/session/$(basename "$f" .bin).w$worker.bin"
    done
  done
  rm -rf "$tmp"
  echo "corpus/session: $(ls corpus/session | wc -l) files"
fi
