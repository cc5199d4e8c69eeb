#!/bin/sh
# Regenerates the signature test data with the kernel's own signing tool
# (sign-file from Debian's linux-kbuild package) and openssl: a signing key
# and its certificate, a second certificate the signature does not name,
# and a small ELF object signed as the kernel build signs modules. The
# private keys are thrown away: the tests only verify.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
signfile=$(ls /usr/lib/linux-kbuild-*/scripts/sign-file | head -1)
for name in signing other; do
    openssl req -new -x509 -newkey rsa:2048 -nodes -days 36500 -outform DER \
        -subj "/CN=modscope test $name key" -keyout "$tmp/$name.key" -out "$name-cert.der" \
        -addext "keyUsage=digitalSignature" 2>/dev/null
done
# An ECDSA P-384 key, as Debian's 6.12 kernels sign with.
openssl req -new -x509 -newkey ec -pkeyopt ec_paramgen_curve:secp384r1 -nodes -days 36500 \
    -outform DER -subj "/CN=modscope test ecdsa key" -keyout "$tmp/ecdsa.key" \
    -out ecdsa-cert.der 2>/dev/null
printf 'int modscope_signed_fixture = 42;\n' | gcc -c -x c - -o "$tmp/object.o"
cp "$tmp/object.o" unsigned.o
"$signfile" sha256 "$tmp/signing.key" signing-cert.der "$tmp/object.o" signed.o
"$signfile" sha256 "$tmp/ecdsa.key" ecdsa-cert.der "$tmp/object.o" signed-ecdsa.o
