#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Make the TLS certificate of the Pebble ACME/management listeners, signed by a
# throw-away CA (Debian's pebble package ships no test certificates).
# Layout as upstream's test/certs: DIR/pebble.minica.pem (CA) and
# DIR/localhost/{cert,key}.pem.
set -eu
dir=$1
mkdir -p "$dir/localhost"
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=bmops pebble test CA" \
    -keyout pebble.minica.key.pem -out pebble.minica.pem \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign"
openssl req -newkey rsa:2048 -nodes -subj "/CN=pebble" \
    -keyout localhost/key.pem -out localhost/req.pem
printf 'subjectAltName=DNS:pebble,DNS:acme,DNS:localhost,IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >localhost/ext.cnf
openssl x509 -req -in localhost/req.pem -CA pebble.minica.pem -CAkey pebble.minica.key.pem \
    -CAcreateserial -days 3650 -extfile localhost/ext.cnf -out localhost/cert.pem
rm -f localhost/req.pem localhost/ext.cnf pebble.minica.srl
chmod 0644 pebble.minica.pem localhost/cert.pem localhost/key.pem
