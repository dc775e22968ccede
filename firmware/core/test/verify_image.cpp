// Verifies an ESP8266 signed image the way the device's Updater does, with BearSSL (the TLS
// and crypto library of the ESP8266 Arduino core): the trailer must equal the key's modulus
// length (firmware/core checkSignedLayout), SHA-256 over the payload (br_sha256), then
// br_rsa_pkcs1_vrfy with the SHA-256 OID and a comparison of the recovered hash.
//
// Usage: verify_image <public.key (PEM)> <signed image>
// Prints "ok <payload length>" (exit 0) or "fail: <reason>" (exit 1); exit 2 on usage/IO errors.
//
// The Arduino core reads public.key with its own BearSSL key decoder (BearSSL::PublicKey);
// upstream BearSSL has no SubjectPublicKeyInfo decoder, so this tool decodes the PEM with
// br_pem_decoder and walks the small DER structure itself.
extern "C" {
#include <bearssl.h>
}

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fleet_core.h"

namespace {

using Bytes = std::vector<unsigned char>;

bool readFile(const char* path, Bytes& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

// The DER of the first PEM object named `name`.
bool pemDecode(const Bytes& pem, const char* name, Bytes& der) {
  br_pem_decoder_context pc;
  br_pem_decoder_init(&pc);
  bool inside = false, done = false;
  br_pem_decoder_setdest(
      &pc, [](void* ctx, const void* data, size_t len) { static_cast<Bytes*>(ctx)->insert(static_cast<Bytes*>(ctx)->end(), static_cast<const unsigned char*>(data), static_cast<const unsigned char*>(data) + len); },
      &der);
  const unsigned char* p = pem.data();
  size_t left = pem.size();
  // A final newline lets the decoder see the END line even when the file lacks one.
  static const unsigned char newline = '\n';
  bool fedNewline = false;
  while (!done && (left > 0 || !fedNewline)) {
    size_t used;
    if (left > 0) {
      used = br_pem_decoder_push(&pc, p, left);
      p += used;
      left -= used;
    } else {
      br_pem_decoder_push(&pc, &newline, 1);
      fedNewline = true;
    }
    switch (br_pem_decoder_event(&pc)) {
      case BR_PEM_BEGIN_OBJ:
        inside = std::strcmp(br_pem_decoder_name(&pc), name) == 0;
        der.clear();
        break;
      case BR_PEM_END_OBJ:
        done = inside;
        break;
      case BR_PEM_ERROR:
        return false;
      default:
        break;
    }
  }
  return done && !der.empty();
}

// One DER element with the expected tag at p; moves p past it, gives its contents.
bool derTake(const unsigned char*& p, const unsigned char* end, unsigned char tag, const unsigned char*& body, size_t& len) {
  if (end - p < 2 || p[0] != tag) return false;
  size_t n = p[1];
  p += 2;
  if (n & 0x80) {
    const size_t bytes = n & 0x7f;
    if (bytes == 0 || bytes > 3 || static_cast<size_t>(end - p) < bytes) return false;
    n = 0;
    for (size_t i = 0; i < bytes; i++) n = n << 8 | *p++;
  }
  if (static_cast<size_t>(end - p) < n) return false;
  body = p;
  len = n;
  p += n;
  return true;
}

// SubjectPublicKeyInfo { { rsaEncryption, NULL }, BIT STRING { RSAPublicKey { n, e } } }.
bool rsaFromSpki(const Bytes& der, Bytes& n, Bytes& e) {
  static const unsigned char kRsaOid[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
  const unsigned char *p = der.data(), *end = p + der.size(), *body, *alg, *oid, *bits, *key, *integer;
  size_t len, algLen, oidLen, bitsLen, keyLen, intLen;
  if (!derTake(p, end, 0x30, body, len)) return false;
  p = body;
  end = body + len;
  if (!derTake(p, end, 0x30, alg, algLen) || !derTake(alg, alg + algLen, 0x06, oid, oidLen)) return false;
  if (oidLen != sizeof kRsaOid || std::memcmp(oid, kRsaOid, oidLen) != 0) return false;
  if (!derTake(p, end, 0x03, bits, bitsLen) || bitsLen < 1 || bits[0] != 0) return false;
  const unsigned char* q = bits + 1;
  if (!derTake(q, bits + bitsLen, 0x30, key, keyLen)) return false;
  const unsigned char* k = key;
  Bytes* parts[2] = {&n, &e};
  for (Bytes* part : parts) {
    if (!derTake(k, key + keyLen, 0x02, integer, intLen)) return false;
    while (intLen > 1 && integer[0] == 0) integer++, intLen--;  // BearSSL keys carry no leading zeros
    part->assign(integer, integer + intLen);
  }
  return true;
}

int fail(const char* reason) {
  std::printf("fail: %s\n", reason);
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <public.key> <signed image>\n", argv[0]);
    return 2;
  }
  Bytes pem, image, der, n, e;
  if (!readFile(argv[1], pem) || !readFile(argv[2], image)) {
    std::fprintf(stderr, "cannot read %s or %s\n", argv[1], argv[2]);
    return 2;
  }
  if (!pemDecode(pem, "PUBLIC KEY", der) || !rsaFromSpki(der, n, e)) return fail("public.key is not a PEM RSA public key");
  const br_rsa_public_key pk{n.data(), n.size(), e.data(), e.size()};

  if (image.size() < 4) return fail("image too short for a signature trailer");
  size_t payloadLength = 0;
  const char* reason = nullptr;
  if (!fleet::checkSignedLayout(image.size(), image.data() + image.size() - 4, pk.nlen, payloadLength, &reason)) return fail(reason);

  br_sha256_context sha;
  br_sha256_init(&sha);
  br_sha256_update(&sha, image.data(), payloadLength);
  unsigned char hash[br_sha256_SIZE];
  br_sha256_out(&sha, hash);

  unsigned char recovered[br_sha256_SIZE];
  const br_rsa_pkcs1_vrfy vrfy = br_rsa_pkcs1_vrfy_get_default();
  if (!vrfy(image.data() + payloadLength, pk.nlen, BR_HASH_OID_SHA256, sizeof recovered, &pk, recovered) ||
      std::memcmp(recovered, hash, sizeof hash) != 0) {
    return fail("RSA signature does not verify (image altered, or signed with another key)");
  }
  std::printf("ok %zu\n", payloadLength);
  return 0;
}
