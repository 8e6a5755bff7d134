// Session-ticket key ring: sealing and opening keys for BoringSSL's ticket-key callback.
#include "platform/tls/ticket_keys.h"

#include <openssl/cipher.h>
#include <openssl/digest.h>
#include <openssl/hmac.h>
#include <openssl/mem.h>
#include <openssl/rand.h>

#include <cstring>

namespace herald::tls {

TicketKeyRing::TicketKeyRing() {
  fill(&current_);
}

TicketKeyRing::~TicketKeyRing() {
  wipe(&current_);
  wipe(&previous_);
}

void TicketKeyRing::fill(Key* key) {
  RAND_bytes(key->name.data(), key->name.size());
  RAND_bytes(key->aes_key.data(), key->aes_key.size());
  RAND_bytes(key->hmac_key.data(), key->hmac_key.size());
  key->valid = true;
}

void TicketKeyRing::wipe(Key* key) {
  OPENSSL_cleanse(key, sizeof(*key));
  key->valid = false;
}

void TicketKeyRing::rotate() {
  Key fresh;
  fill(&fresh);  // RAND_bytes outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  wipe(&previous_);
  previous_ = current_;
  current_ = fresh;
  ++rotations_;
  wipe(&fresh);
}

uint64_t TicketKeyRing::rotations() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rotations_;
}

int TicketKeyRing::seal(uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher_ctx,
                        HMAC_CTX* hmac_ctx) {
  Key key;
  {
    std::lock_guard<std::mutex> lock(mu_);
    key = current_;
  }
  std::memcpy(key_name, key.name.data(), kNameBytes);
  int result = 1;
  if (RAND_bytes(iv, 16) != 1 ||
      EVP_EncryptInit_ex(cipher_ctx, EVP_aes_256_cbc(), nullptr, key.aes_key.data(), iv) != 1 ||
      HMAC_Init_ex(hmac_ctx, key.hmac_key.data(), key.hmac_key.size(), EVP_sha256(), nullptr) !=
          1) {
    result = -1;
  }
  wipe(&key);
  return result;
}

int TicketKeyRing::open(const uint8_t* key_name, const uint8_t* iv, EVP_CIPHER_CTX* cipher_ctx,
                        HMAC_CTX* hmac_ctx) const {
  Key key;
  int found = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // Key names are public (they travel in the ticket), so a plain comparison is fine.
    if (current_.valid && std::memcmp(current_.name.data(), key_name, kNameBytes) == 0) {
      key = current_;
      found = 1;
    } else if (previous_.valid && std::memcmp(previous_.name.data(), key_name, kNameBytes) == 0) {
      key = previous_;
      found = 2;  // still good, but re-seal it under the current key
    }
  }
  if (found == 0) return 0;
  int result = found;
  if (HMAC_Init_ex(hmac_ctx, key.hmac_key.data(), key.hmac_key.size(), EVP_sha256(), nullptr) !=
          1 ||
      EVP_DecryptInit_ex(cipher_ctx, EVP_aes_256_cbc(), nullptr, key.aes_key.data(), iv) != 1) {
    result = -1;
  }
  wipe(&key);
  return result;
}

}  // namespace herald::tls
