// SHA-256 through OpenSSL's EVP interface.
#ifndef LOYALTY_ENGINE_SHA256_H_
#define LOYALTY_ENGINE_SHA256_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace loyalty {

using Sha256Digest = std::array<uint8_t, 32>;

// An incremental SHA-256. Thread-compatible; reusable after Finish().
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view bytes);
  // The digest of everything passed to Update since construction or the last
  // Finish(); then starts over.
  Sha256Digest Finish();
  // The digest of everything so far, without ending the running hash.
  Sha256Digest Peek() const;

 private:
  EVP_MD_CTX* ctx_;
};

// One-shot helpers.
Sha256Digest Sha256Of(std::string_view bytes);
// SHA-256(a || b): the hash chain's step.
Sha256Digest Sha256Of2(std::string_view a, std::string_view b);

inline std::string_view DigestView(const Sha256Digest& d) {
  return std::string_view(reinterpret_cast<const char*>(d.data()), d.size());
}
std::string DigestHex(std::string_view digest_bytes);

}  // namespace loyalty

#endif  // LOYALTY_ENGINE_SHA256_H_
