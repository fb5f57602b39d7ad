#!/usr/bin/env bash
# Writes a test PKI into DIR: ca.pem, server.pem/server.key (for 127.0.0.1), client.pem/client.key
# (signed by ca.pem), and other-ca.pem with other.pem/other.key (a chain nobody trusts).
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
q() { "$@" >/dev/null 2>&1; }
q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj "/CN=sluice test CA"
q openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj "/CN=other CA"
sign() {  # name ca subject-alt-name
  q openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1"
  printf 'subjectAltName=%s\n' "$3" > "$1.ext"
  q openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" \
    -days 2 -extfile "$1.ext"
}
sign server ca "IP:127.0.0.1,DNS:localhost"
sign client ca "DNS:client"
sign other other-ca "IP:127.0.0.1"
