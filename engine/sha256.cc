#include "engine/sha256.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/escaping.h"

namespace loyalty {
namespace {

void CheckOk(int rc) {
  // OpenSSL digest calls fail only on allocation failure or misuse; neither is
  // something the engine can continue past with a correct hash.
  if (rc != 1) std::abort();
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr) std::abort();
  CheckOk(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr));
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::Update(std::string_view bytes) {
  CheckOk(EVP_DigestUpdate(ctx_, bytes.data(), bytes.size()));
}

Sha256Digest Sha256::Finish() {
  Sha256Digest out;
  unsigned int len = 0;
  CheckOk(EVP_DigestFinal_ex(ctx_, out.data(), &len));
  CheckOk(EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr));
  return out;
}

Sha256Digest Sha256::Peek() const {
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  if (copy == nullptr) std::abort();
  CheckOk(EVP_MD_CTX_copy_ex(copy, ctx_));
  Sha256Digest out;
  unsigned int len = 0;
  CheckOk(EVP_DigestFinal_ex(copy, out.data(), &len));
  EVP_MD_CTX_free(copy);
  return out;
}

Sha256Digest Sha256Of(std::string_view bytes) {
  Sha256Digest out;
  unsigned int len = 0;
  CheckOk(EVP_Digest(bytes.data(), bytes.size(), out.data(), &len, EVP_sha256(),
                     nullptr));
  return out;
}

Sha256Digest Sha256Of2(std::string_view a, std::string_view b) {
  thread_local Sha256 hasher;
  hasher.Update(a);
  hasher.Update(b);
  return hasher.Finish();
}

std::string DigestHex(std::string_view digest_bytes) {
  return absl::BytesToHexString(absl::string_view(digest_bytes.data(), digest_bytes.size()));
}

}  // namespace loyalty
