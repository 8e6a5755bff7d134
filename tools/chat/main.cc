// herald-chat: a small interactive client for a person.
//   herald-chat register --phone +15551234567 [--code 123456 | --sms-log FILE]
//   herald-chat chat     --phone +15551234567 [--to ACCOUNT_ID]
// `register` asks the node for a code (sent by its gateway; with the `log` gateway it is in
// <data-dir>/sms.log, which --sms-log reads), verifies it and keeps the device credential in a
// profile (~/.herald-chat/<phone>, mode 0600). `chat` logs in with a fresh session token and
// sends each line typed to the current peer ("/to ACCOUNT_ID" changes it, "/quit" leaves);
// messages, ServerAcks and receipts are printed as they come, and every message received is
// acknowledged and answered with a Delivered receipt.
// Exit status: 0 on success, 1 on failure, 2 for a bad command line.
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>

#include "CLI/CLI.hpp"
#include "platform/auth/account_id.h"
#include "tools/client/chat_client.h"
#include "tools/client/public_api.h"

namespace herald::tools {
namespace {

struct Profile {
  std::string phone;
  std::string account_id;
  uint32_t device_id = 0;
  std::string credential;
};

std::string profile_path(const std::string& dir, const std::string& phone) {
  return dir + "/" + phone;
}

bool save_profile(const std::string& dir, const Profile& p) {
  mkdir(dir.c_str(), 0700);
  const std::string path = profile_path(dir, p.phone);
  std::ofstream out(path, std::ios::trunc);
  out << p.phone << "\n" << p.account_id << "\n" << p.device_id << "\n" << p.credential << "\n";
  out.close();
  chmod(path.c_str(), 0600);
  return static_cast<bool>(out);
}

std::optional<Profile> load_profile(const std::string& dir, const std::string& phone) {
  std::ifstream in(profile_path(dir, phone));
  Profile p;
  std::string device;
  if (!std::getline(in, p.phone) || !std::getline(in, p.account_id) || !std::getline(in, device) ||
      !std::getline(in, p.credential)) {
    return std::nullopt;
  }
  p.device_id = static_cast<uint32_t>(std::strtoul(device.c_str(), nullptr, 10));
  return p;
}

// "host:port" into the stream options, trusting the node's certificate file.
bool endpoint(const std::string& address, const std::string& cert_file, TlsStreamOptions* out) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  out->host = address.substr(0, colon);
  if (out->host.size() > 2 && out->host.front() == '[') {
    out->host = out->host.substr(1, out->host.size() - 2);
  }
  out->port = static_cast<uint16_t>(std::strtoul(address.c_str() + colon + 1, nullptr, 10));
  auto pem = read_pem_file(cert_file);
  if (!pem.ok()) {
    std::fprintf(stderr, "herald-chat: %s\n", std::string(pem.status().message()).c_str());
    return false;
  }
  out->trust = Trust::pinned(*pem);
  return out->port != 0;
}

std::string text_of(const std::vector<uint8_t>& body) {
  return {body.begin(), body.end()};
}

std::string account_text(const wire::AccountId& a) {
  return auth::format_account_id(auth::AccountId{a.hi(), a.lo()});
}

int run_register(const TlsStreamOptions& api, const std::string& profiles, const std::string& phone,
                 std::string code, const std::string& sms_log, const std::string& device_name) {
  auto expires = request_code(api, phone);
  if (!expires.ok()) {
    std::fprintf(stderr, "herald-chat: code request: %s\n", expires.status().ToString().c_str());
    return 1;
  }
  if (code.empty() && !sms_log.empty()) {
    auto from_log = code_from_sms_log(sms_log, phone);
    if (!from_log.ok()) {
      std::fprintf(stderr, "herald-chat: %s\n", from_log.status().ToString().c_str());
      return 1;
    }
    code = *from_log;
  }
  if (code.empty()) {
    std::printf("code sent (valid %llu s); type it: ", static_cast<unsigned long long>(*expires));
    std::fflush(stdout);
    if (!std::getline(std::cin, code)) return 1;
  }
  auto reg = verify_code(api, phone, code, device_name);
  if (!reg.ok()) {
    std::fprintf(stderr, "herald-chat: verify: %s\n", reg.status().ToString().c_str());
    return 1;
  }
  if (!save_profile(profiles, {phone, reg->account_id, reg->device_id, reg->credential})) {
    std::fprintf(stderr, "herald-chat: cannot write the profile under %s\n", profiles.c_str());
    return 1;
  }
  std::printf("registered %s: account %s, device %u%s\n", phone.c_str(), reg->account_id.c_str(),
              reg->device_id, reg->new_account ? " (new account)" : "");
  return 0;
}

uint64_t unix_now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// When to renew a session whose token expires at `expires_ms`: 5 minutes ahead, or halfway
// for short-lived tokens.
uint64_t refresh_time_ms(uint64_t expires_ms) {
  const uint64_t now_ms = unix_now_ms();
  if (expires_ms <= now_ms) return now_ms;
  return expires_ms - std::min<uint64_t>(300'000, (expires_ms - now_ms) / 2);
}

int run_chat(const TlsStreamOptions& api, const TlsStreamOptions& chat, const Profile& me,
             std::string peer) {
  auto token = create_session(api, me.credential);
  if (!token.ok()) {
    std::fprintf(stderr, "herald-chat: session: %s\n", token.status().ToString().c_str());
    return 1;
  }
  // A node that just started may not have handed its signing key to the dataplane yet:
  // AuthError UnknownKey says to retry shortly (docs/PROTOCOL.md), on a new connection.
  std::unique_ptr<ChatClient> client;
  absl::StatusOr<wire::AuthOkT> ok = absl::UnavailableError("not tried");
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto connected = ChatClient::connect({.stream = chat});
    if (!connected.ok()) {
      std::fprintf(stderr, "herald-chat: connect: %s\n", connected.status().ToString().c_str());
      return 1;
    }
    client = std::move(*connected);
    ok = client->login(token->token);
    if (ok.ok() || ok.status().message().find("UnknownKey") == std::string_view::npos) break;
    usleep(250'000);
  }
  if (!ok.ok()) {
    std::fprintf(stderr, "herald-chat: login: %s\n", ok.status().ToString().c_str());
    return 1;
  }
  std::printf("logged in as %s (account %s, device %u); %u queued\n", me.phone.c_str(),
              me.account_id.c_str(), me.device_id, ok->queued_messages);
  std::printf("type a line to send it; /to ACCOUNT_ID picks the peer; /quit leaves\n");
  uint64_t next_client_id = static_cast<uint64_t>(time(nullptr)) << 20;
  std::string line_buffer;
  // The session ends when its token expires unless a newer token comes first: fetch one with
  // the credential a few minutes ahead and send it as Auth on this connection.
  uint64_t refresh_at_ms = refresh_time_ms(ok->token_expires_ms);
  for (;;) {
    if (unix_now_ms() >= refresh_at_ms) {
      auto fresh = create_session(api, me.credential);
      if (fresh.ok()) {
        wire::AuthT auth;
        auth.token = fresh->token;
        wire::FrameT frame;
        frame.payload.Set(std::move(auth));
        (void)client->send(frame);
        refresh_at_ms = refresh_time_ms(fresh->expires_at_ms);
      } else {
        std::printf("  (could not renew the session: %s; retrying)\n",
                    fresh.status().ToString().c_str());
        refresh_at_ms = unix_now_ms() + 30'000;
      }
    }
    // Frames already here first, then wait for either the keyboard or the server.
    for (;;) {
      auto frame = client->next(0);
      if (!frame.ok()) {
        std::printf("connection closed: %s\n", frame.status().ToString().c_str());
        return frame.status().code() == absl::StatusCode::kOutOfRange ? 0 : 1;
      }
      if (!frame->has_value()) break;
      const wire::FrameT& f = **frame;
      if (const auto* d = f.payload.AsDeliver(); d != nullptr) {
        std::printf("[%s:%u] %s\n", d->sender ? account_text(d->sender->account()).c_str() : "?",
                    d->sender ? d->sender->device() : 0, text_of(d->body).c_str());
        if (d->server_msg_id != nullptr) {
          (void)client->ack(std::span<const wire::ServerMsgId>(d->server_msg_id.get(), 1));
          if (d->sender != nullptr) {
            (void)client->receipt(wire::ReceiptKind::Delivered, d->sender->account(),
                                  std::span<const wire::ServerMsgId>(d->server_msg_id.get(), 1));
          }
        }
      } else if (const auto* a = f.payload.AsServerAck(); a != nullptr) {
        std::printf("  (sent #%llu)\n",
                    static_cast<unsigned long long>(a->client_msg_id & 0xfffff));
      } else if (const auto* r = f.payload.AsReceipt(); r != nullptr) {
        // A stored one was kept while this device was offline (the client library acked it).
        std::printf("  (%s by %s%s)\n", wire::EnumNameReceiptKind(r->kind),
                    r->from ? account_text(r->from->account()).c_str() : "?",
                    r->stored ? ", while you were away" : "");
      } else if (const auto* e = f.payload.AsError(); e != nullptr) {
        std::printf("  error %s: %s\n", wire::EnumNameErrorCode(e->code), e->message.c_str());
        if (e->fatal) return 1;
      } else if (const auto* ae = f.payload.AsAuthError(); ae != nullptr) {
        std::printf("  session renewal refused: %s\n", ae->message.c_str());
        return 1;
      }
    }
    std::fflush(stdout);
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {client->stream().fd(), POLLIN, 0}};
    if (poll(fds, 2, 1000) <= 0) continue;
    if ((fds[0].revents & (POLLIN | POLLHUP)) == 0) continue;
    char chunk[4096];
    const ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n <= 0) return 0;  // end of input
    line_buffer.append(chunk, static_cast<size_t>(n));
    size_t newline;
    while ((newline = line_buffer.find('\n')) != std::string::npos) {
      const std::string line = line_buffer.substr(0, newline);
      line_buffer.erase(0, newline + 1);
      if (line == "/quit") return 0;
      if (line.rfind("/to ", 0) == 0) {
        peer = line.substr(4);
        std::printf("  (talking to %s)\n", peer.c_str());
        continue;
      }
      if (line.empty()) continue;
      const auto account = auth::parse_account_id(peer);
      if (!account.has_value()) {
        std::printf("  (pick a peer first: /to ACCOUNT_ID)\n");
        continue;
      }
      const absl::Status sent =
          client->send_to_account(wire::AccountId(account->hi, account->lo), ++next_client_id,
                                  {reinterpret_cast<const uint8_t*>(line.data()), line.size()});
      if (!sent.ok()) {
        std::printf("  send failed: %s\n", sent.ToString().c_str());
        return 1;
      }
    }
  }
}

}  // namespace
}  // namespace herald::tools

int main(int argc, char** argv) {
  using namespace herald::tools;
  CLI::App app{"herald-chat: register a phone number and chat through a Herald node"};
  app.require_subcommand(1);
  std::string phone;
  std::string public_address = "127.0.0.1:8443";
  std::string chat_address = "127.0.0.1:5222";
  std::string data_dir = "/var/lib/herald";
  std::string public_cert;
  std::string chat_cert;
  const char* home = std::getenv("HOME");
  std::string profiles = std::string(home != nullptr ? home : ".") + "/.herald-chat";
  app.add_option("--public", public_address, "the node's public API host:port");
  app.add_option("--chat", chat_address, "the node's chat host:port");
  app.add_option("--data-dir", data_dir, "the node's data dir (its certificates, sms.log)");
  app.add_option("--public-cert", public_cert,
                 "public API certificate to trust (default: in --data-dir)");
  app.add_option("--chat-cert", chat_cert, "chat certificate to trust (default: in --data-dir)");
  app.add_option("--profiles", profiles, "where profiles are kept");
  std::string code;
  std::string sms_log;
  std::string device_name = "herald-chat";
  auto* reg = app.add_subcommand("register", "get a code, verify it, keep the credential");
  reg->add_option("--phone", phone, "E.164 number")->required();
  reg->add_option("--code", code, "the code received (else read from --sms-log, else asked)");
  reg->add_option("--sms-log", sms_log, "read the code from the node's log gateway file");
  reg->add_option("--device-name", device_name, "a name for this device");
  std::string peer;
  auto* chat = app.add_subcommand("chat", "log in and chat");
  chat->add_option("--phone", phone, "the registered number whose profile to use")->required();
  chat->add_option("--to", peer, "the peer's account id");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (public_cert.empty()) public_cert = data_dir + "/tls/public.crt";
  if (chat_cert.empty()) chat_cert = data_dir + "/tls/chat.crt";
  TlsStreamOptions api;
  if (!endpoint(public_address, public_cert, &api)) return 2;
  if (reg->parsed()) return run_register(api, profiles, phone, code, sms_log, device_name);
  auto me = load_profile(profiles, phone);
  if (!me.has_value()) {
    std::fprintf(stderr, "herald-chat: no profile for %s: register first\n", phone.c_str());
    return 1;
  }
  TlsStreamOptions chat_endpoint;
  if (!endpoint(chat_address, chat_cert, &chat_endpoint)) return 2;
  return run_chat(api, chat_endpoint, *me, peer);
}
