#!/usr/bin/env sh
# A self-signed certificate for trying the compose stack (browsers will warn). In production put
# the hospital's certificate chain and key in deploy/tls/ as fullchain.pem and privkey.pem.
#   deploy/self-signed-cert.sh [HOSTNAME]      (TLS_DIR=... writes elsewhere)
set -eu
host="${1:-localhost}"
dir="${TLS_DIR:-$(dirname "$0")/tls}"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:3072 -sha256 -days 365 -nodes \
    -keyout "$dir/privkey.pem" -out "$dir/fullchain.pem" \
    -subj "/CN=$host" -addext "subjectAltName=DNS:$host,DNS:localhost,IP:127.0.0.1" 2>/dev/null
chmod 600 "$dir/privkey.pem"
echo "wrote $dir/fullchain.pem and $dir/privkey.pem for $host (self-signed)"
