// The device's enrollment codecs (firmware/core) with BearSSL, the crypto of the ESP8266 core, for
// test/firmware/enroll-core.test.ts, which checks the results with openssl:
//   enroll_tool csr <id> <out.der>     makes a P-256 key (br_ec_keygen, HMAC-DRBG seeded by the
//                                      system), builds the CSR through buildCsr, signs it with
//                                      br_ecdsa_i31_sign_asn1; writes DER and <out.der>.b64,
//                                      prints "point <hex>"
//   enroll_tool pkcs7 <answer.b64>     prints "ok <notBefore> <notAfter> <certificate hex>" or "fail: <reason>"
//   enroll_tool fuzz <answer.b64> <seed> <count>
//                                      every truncation and <count> mutations of the answer's DER,
//                                      each read from an exact-size heap copy (ASan): prints
//                                      "fuzz <count> accepted <n> refused <n> truncations <n>"
// Exit 0 on success, 1 on a refusal or a failed property, 2 on usage or I/O errors.
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

using Bytes = std::vector<uint8_t>;

bool readFile(const char* path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  out.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

bool writeFile(const std::string& path, const void* data, size_t n) {
  std::ofstream out(path, std::ios::binary);
  out.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
  return static_cast<bool>(out);
}

std::string hex(const uint8_t* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; i++) s += std::string{digits[p[i] >> 4], digits[p[i] & 15]};
  return s;
}

const br_ec_impl* curve() { return &br_ec_p256_m31; }

// The CsrSigner: SHA-256, then ECDSA with the key, DER signature (as the sketch does it).
size_t sign(void* context, const uint8_t* data, size_t length, uint8_t* signature, size_t capacity) {
  const auto* key = static_cast<const br_ec_private_key*>(context);
  br_sha256_context sha;
  uint8_t hash[32];
  br_sha256_init(&sha);
  br_sha256_update(&sha, data, length);
  br_sha256_out(&sha, hash);
  if (capacity < fleet::kEcdsaDerMax) return 0;
  return br_ecdsa_i31_sign_asn1(curve(), &br_sha256_vtable, hash, key, signature);
}

int csr(const char* id, const char* path) {
  br_prng_seeder seeder = br_prng_seeder_system(nullptr);
  br_hmac_drbg_context rng;
  br_hmac_drbg_init(&rng, &br_sha256_vtable, nullptr, 0);
  if (!seeder || !seeder(&rng.vtable)) return std::fprintf(stderr, "no system seed\n"), 2;
  uint8_t secret[BR_EC_KBUF_PRIV_MAX_SIZE], point[BR_EC_KBUF_PUB_MAX_SIZE];
  br_ec_private_key sk;
  br_ec_public_key pk;
  if (br_ec_keygen(&rng.vtable, curve(), &sk, secret, BR_EC_secp256r1) == 0) return std::printf("fail: keygen\n"), 1;
  if (br_ec_compute_pub(curve(), &pk, point, &sk) != fleet::kEcP256PointSize) return std::printf("fail: public key\n"), 1;
  uint8_t der[fleet::kCsrMax];
  const char* reason = nullptr;
  const size_t n = fleet::buildCsr(id, pk.q, sign, &sk, der, sizeof der, &reason);
  if (n == 0) return std::printf("fail: %s\n", reason), 1;
  char text[2 * fleet::kCsrMax];
  const size_t t = fleet::base64Encode(der, n, text, sizeof text);
  if (t == 0 || !writeFile(path, der, n) || !writeFile(std::string(path) + ".b64", text, t)) return 2;
  std::printf("point %s\n", hex(pk.q, pk.qlen).c_str());
  return 0;
}

int pkcs7(const char* path) {
  std::string text;
  if (!readFile(path, text)) return 2;
  std::vector<uint8_t> buffer(text.size());
  fleet::CertificateInfo info;
  const char* reason = nullptr;
  if (!fleet::readCertsOnlyBase64(text.data(), text.size(), buffer.data(), buffer.size(), info, &reason)) return std::printf("fail: %s\n", reason), 1;
  std::printf("ok %lld %lld %s\n", static_cast<long long>(info.notBefore), static_cast<long long>(info.notAfter), hex(info.der, info.length).c_str());
  return 0;
}

bool readExact(const Bytes& input, fleet::CertificateInfo& info) {
  Bytes exact(input);  // its own allocation of exactly input.size() bytes
  const char* reason = nullptr;
  const bool ok = fleet::readCertsOnly(exact.data(), exact.size(), info, &reason);
  if (ok && (info.der < exact.data() || info.der + info.length > exact.data() + exact.size())) {
    std::printf("fail: certificate outside the buffer\n");
    std::exit(1);
  }
  if (!ok && (!reason || !*reason)) {
    std::printf("fail: a refusal without a reason\n");
    std::exit(1);
  }
  return ok;
}

int fuzz(const char* path, uint32_t seed, uint32_t count) {
  std::string text;
  if (!readFile(path, text)) return 2;
  Bytes der(text.size());
  size_t n = 0;
  if (!fleet::base64Decode(text.data(), text.size(), der.data(), der.size(), n)) return std::printf("fail: not base64\n"), 1;
  der.resize(n);
  fleet::CertificateInfo info;
  if (!readExact(der, info)) return std::printf("fail: the answer itself is refused\n"), 1;
  uint32_t truncations = 0;
  for (size_t cut = 0; cut < der.size(); cut++, truncations++) {
    if (readExact(Bytes(der.begin(), der.begin() + static_cast<long>(cut)), info)) return std::printf("fail: truncated to %zu bytes and accepted\n", cut), 1;
  }
  fleet::Jitter g(seed);
  uint32_t accepted = 0, refused = 0;
  for (uint32_t i = 0; i < count; i++) {
    Bytes m(der);
    const uint32_t edits = 1 + g.upTo(3);
    for (uint32_t e = 0; e < edits && !m.empty(); e++) {
      const size_t at = g.upTo(static_cast<uint32_t>(m.size() - 1));
      switch (g.upTo(5)) {
        case 0: m[at] = static_cast<uint8_t>(m[at] ^ (1u << g.upTo(7))); break;     // flip a bit
        case 1: m[at] = static_cast<uint8_t>(g.next()); break;                      // any byte
        case 2: m[at] = static_cast<uint8_t>(0x80 | g.upTo(0x7f)); break;           // a long-form length byte
        case 3: m.erase(m.begin() + static_cast<long>(at)); break;                  // drop a byte
        case 4: m.insert(m.begin() + static_cast<long>(at), static_cast<uint8_t>(g.next())); break;
        default: m.resize(at); break;                                               // cut
      }
    }
    if (readExact(m, info)) accepted++;
    else refused++;
  }
  std::printf("fuzz %u accepted %u refused %u truncations %u\n", count, accepted, refused, truncations);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 4 && std::strcmp(argv[1], "csr") == 0) return csr(argv[2], argv[3]);
  if (argc == 3 && std::strcmp(argv[1], "pkcs7") == 0) return pkcs7(argv[2]);
  if (argc == 5 && std::strcmp(argv[1], "fuzz") == 0)
    return fuzz(argv[2], static_cast<uint32_t>(std::strtoul(argv[3], nullptr, 10)), static_cast<uint32_t>(std::strtoul(argv[4], nullptr, 10)));
  std::fprintf(stderr, "usage: %s csr <id> <out.der> | pkcs7 <answer.b64> | fuzz <answer.b64> <seed> <count>\n", argv[0]);
  return 2;
}
