#!/bin/sh
# One-shot (compose `certs` service, apache/kafka image: it has the JDK's keytool): a CA, the
# broker's keystore for the names "kafka" and "localhost", the passwords, written once into the
# kafka-secrets volume. Nothing here is committed: every run of a fresh volume makes new ones.
set -eu
cd /secrets
if [ -f broker.p12 ] && [ -f ca.pem ]; then echo "certificates already made"; exit 0; fi
umask 077
rand() { head -c 24 /dev/urandom | base64 | tr -d '/+=\n'; }
[ -f store.password ] || rand > store.password
[ -f client.password ] || rand > client.password
[ -f gateway-api-keys ] || echo "chatbot:sk-$(rand)" > gateway-api-keys
PW=$(cat store.password)
SAN="SAN=dns:kafka,dns:localhost,ip:127.0.0.1"
rm -f ca.p12 broker.p12
keytool -genkeypair -alias ca -keyalg RSA -keysize 2048 -dname "CN=Continuum compose CA" \
  -ext bc:c -validity 3650 -keystore ca.p12 -storetype PKCS12 -storepass "$PW"
keytool -exportcert -rfc -alias ca -keystore ca.p12 -storepass "$PW" -file ca.pem
keytool -genkeypair -alias broker -keyalg RSA -keysize 2048 -dname "CN=kafka" -ext "$SAN" \
  -validity 3650 -keystore broker.p12 -storetype PKCS12 -storepass "$PW"
keytool -certreq -alias broker -keystore broker.p12 -storepass "$PW" -file broker.csr
keytool -gencert -rfc -alias ca -keystore ca.p12 -storepass "$PW" -infile broker.csr \
  -outfile broker.pem -ext "$SAN" -validity 3650
keytool -importcert -noprompt -alias ca -file ca.pem -keystore broker.p12 -storepass "$PW"
keytool -importcert -alias broker -file broker.pem -keystore broker.p12 -storepass "$PW"
# The broker reads the keystore password through Kafka's FileConfigProvider, not a literal.
printf 'store.password=%s\n' "$PW" > broker.properties
chmod 0644 ca.pem
echo "made ca.pem, broker.p12, client.password, gateway-api-keys"
