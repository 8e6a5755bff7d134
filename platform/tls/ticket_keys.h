// Session-ticket keys that rotate: the current key seals new tickets, the current and the
// previous key open them, and older tickets fall back to a full handshake.
#pragma once

#include <openssl/base.h>

#include <array>
#include <cstdint>
#include <mutex>

namespace herald::tls {

// A two-slot key ring for RFC 5077 / RFC 8446 §4.6.1 session tickets (AES-256-CBC +
// HMAC-SHA256 under BoringSSL's ticket-key callback).
//
// Lifetime: the owner calls rotate() every R seconds (R = ServerOptions::ticket_lifetime_s),
// and the server also tells clients, and enforces, a session lifetime of R. So a ticket opens
// for at most R; a ticket sealed just before a rotation still opens after it (the previous
// key), and is re-sealed under the current key when used. A key lives 2R in total, after which
// it is wiped: a stolen key exposes at most 2R of sessions (forward secrecy for resumption is
// bounded by rotation, as RFC 8446 §8.1 warns).
//
// Thread-safe: handshakes on several threads seal and open while the owner rotates. The lock
// is held for a table lookup and a key copy, once per full handshake or resumption.
class TicketKeyRing {
 public:
  static constexpr size_t kNameBytes = 16;

  TicketKeyRing();  // starts with a fresh random current key and no previous key
  ~TicketKeyRing();
  TicketKeyRing(const TicketKeyRing&) = delete;
  TicketKeyRing& operator=(const TicketKeyRing&) = delete;

  // previous = current; current = fresh random key; the old previous key is wiped.
  void rotate();
  uint64_t rotations() const;

  // The BoringSSL callback halves (see SSL_CTX_set_tlsext_ticket_key_cb). seal: 1 or -1.
  // open: 1 (current key), 2 (previous key: renew the ticket), 0 (unknown key: full
  // handshake), -1 (error).
  int seal(uint8_t* key_name, uint8_t* iv, EVP_CIPHER_CTX* cipher_ctx, HMAC_CTX* hmac_ctx);
  int open(const uint8_t* key_name, const uint8_t* iv, EVP_CIPHER_CTX* cipher_ctx,
           HMAC_CTX* hmac_ctx) const;

 private:
  struct Key {
    std::array<uint8_t, kNameBytes> name{};
    std::array<uint8_t, 32> aes_key{};
    std::array<uint8_t, 32> hmac_key{};
    bool valid = false;
  };
  static void fill(Key* key);
  static void wipe(Key* key);

  mutable std::mutex mu_;
  Key current_;
  Key previous_;
  uint64_t rotations_ = 0;
};

}  // namespace herald::tls
