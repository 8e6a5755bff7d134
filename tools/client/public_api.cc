// Registration over the public HTTPS API: HTTP/1.1 over TlsStream, JSON parsed against
// schemas/public_api.fbs (the bodies the server itself is defined by).
#include "tools/client/public_api.h"

#include <cstdlib>
#include <fstream>
#include <string_view>

#include "flatbuffers/idl.h"
#include "platform/auth/session_token.h"
#include "schemas/public_api_fbs.h"
#include "schemas/public_api_generated.h"

namespace herald::tools {
namespace {

// Parses `json` as `root` of public_api.fbs; the parser owns the buffer.
absl::Status parse_body(flatbuffers::Parser& parser, const std::string& root,
                        const std::string& json) {
  const std::string schema(schemas::kPublicApiFbs);
  if (!parser.Parse(schema.c_str())) return absl::InternalError("public_api.fbs: " + parser.error_);
  if (!parser.SetRootType(root.c_str())) return absl::InternalError("no root " + root);
  if (!parser.ParseJson(json.c_str())) {
    return absl::DataLossError("response body is not a " + root + ": " + parser.error_);
  }
  return absl::OkStatus();
}

// A non-200 answer as a status carrying the server's error code and message.
absl::Status error_of(const HttpResponse& r) {
  std::string text = "HTTP " + std::to_string(r.status) + ": " + r.body;
  if (r.status == 429) return absl::ResourceExhaustedError(text);
  if (r.status == 401 || r.status == 403) return absl::PermissionDeniedError(text);
  if (r.status >= 500) return absl::UnavailableError(text);
  return absl::InvalidArgumentError(text);
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out + "\"";
}

}  // namespace

absl::StatusOr<HttpResponse> https_post_json(const TlsStreamOptions& server,
                                             const std::string& path, const std::string& json) {
  auto stream = TlsStream::connect(server);
  if (!stream.ok()) return stream.status();
  const std::string request =
      "POST " + path + " HTTP/1.1\r\nHost: " + server.host +
      "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(json.size()) +
      "\r\nConnection: close\r\n\r\n" + json;
  if (absl::Status s =
          (*stream)->write_all({reinterpret_cast<const uint8_t*>(request.data()), request.size()});
      !s.ok()) {
    return s;
  }
  std::string raw;
  uint8_t buffer[16 * 1024];
  for (;;) {
    auto n = (*stream)->read_some(buffer, server.connect_timeout_ms);
    if (!n.ok()) {
      if (n.status().code() == absl::StatusCode::kOutOfRange) break;  // the server closed
      return n.status();
    }
    if (*n == 0) return absl::DeadlineExceededError("no complete response from " + path);
    raw.append(reinterpret_cast<const char*>(buffer), *n);
    // Stop once the head and Content-Length bytes of body are in.
    const size_t head_end = raw.find("\r\n\r\n");
    if (head_end == std::string::npos) continue;
    const size_t cl = raw.find("Content-Length: ");
    if (cl != std::string::npos && cl < head_end) {
      const size_t length = std::strtoul(raw.c_str() + cl + 16, nullptr, 10);
      if (raw.size() >= head_end + 4 + length) break;
    }
  }
  (*stream)->close();
  const size_t head_end = raw.find("\r\n\r\n");
  if (raw.compare(0, 9, "HTTP/1.1 ") != 0 || head_end == std::string::npos) {
    return absl::DataLossError("not an HTTP/1.1 response");
  }
  HttpResponse response;
  response.status = std::atoi(raw.c_str() + 9);
  response.body = raw.substr(head_end + 4);
  return response;
}

absl::StatusOr<uint64_t> request_code(const TlsStreamOptions& server, const std::string& phone,
                                      const std::string& method) {
  auto r = https_post_json(
      server, "/v1/accounts/code",
      "{\"phone\": " + json_string(phone) + ", \"method\": " + json_string(method) + "}");
  if (!r.ok()) return r.status();
  if (r->status != 200) return error_of(*r);
  flatbuffers::Parser parser;
  if (absl::Status s = parse_body(parser, "herald.public_api.CodeResponse", r->body); !s.ok()) {
    return s;
  }
  return flatbuffers::GetRoot<public_api::CodeResponse>(parser.builder_.GetBufferPointer())
      ->expires_in();
}

absl::StatusOr<Registration> verify_code(const TlsStreamOptions& server, const std::string& phone,
                                         const std::string& code, const std::string& device_name) {
  auto r =
      https_post_json(server, "/v1/accounts/verify",
                      "{\"phone\": " + json_string(phone) + ", \"code\": " + json_string(code) +
                          ", \"device_name\": " + json_string(device_name) + "}");
  if (!r.ok()) return r.status();
  if (r->status != 200) return error_of(*r);
  flatbuffers::Parser parser;
  if (absl::Status s = parse_body(parser, "herald.public_api.VerifyResponse", r->body); !s.ok()) {
    return s;
  }
  const auto* v =
      flatbuffers::GetRoot<public_api::VerifyResponse>(parser.builder_.GetBufferPointer());
  if (v->account_id() == nullptr || v->credential() == nullptr) {
    return absl::DataLossError("verify response without account_id or credential");
  }
  return Registration{v->account_id()->str(), v->device_id(), v->credential()->str(),
                      v->new_account()};
}

absl::StatusOr<SessionToken> create_session(const TlsStreamOptions& server,
                                            const std::string& credential) {
  auto r =
      https_post_json(server, "/v1/sessions", "{\"credential\": " + json_string(credential) + "}");
  if (!r.ok()) return r.status();
  if (r->status != 200) return error_of(*r);
  flatbuffers::Parser parser;
  if (absl::Status s = parse_body(parser, "herald.public_api.SessionResponse", r->body); !s.ok()) {
    return s;
  }
  const auto* v =
      flatbuffers::GetRoot<public_api::SessionResponse>(parser.builder_.GetBufferPointer());
  if (v->token() == nullptr) return absl::DataLossError("session response without a token");
  const auto bytes = auth::parse_token_text(v->token()->string_view());
  if (!bytes.has_value()) return absl::DataLossError("session token is not a token");
  return SessionToken{std::vector<uint8_t>(bytes->begin(), bytes->end()), v->token()->str(),
                      v->expires_at_ms()};
}

absl::StatusOr<LinkCode> link_code(const TlsStreamOptions& server, const std::string& credential) {
  auto r = https_post_json(server, "/v1/devices/link-code",
                           "{\"credential\": " + json_string(credential) + "}");
  if (!r.ok()) return r.status();
  if (r->status != 200) return error_of(*r);
  flatbuffers::Parser parser;
  if (absl::Status s = parse_body(parser, "herald.public_api.LinkCodeResponse", r->body); !s.ok()) {
    return s;
  }
  const auto* v =
      flatbuffers::GetRoot<public_api::LinkCodeResponse>(parser.builder_.GetBufferPointer());
  if (v->link_code() == nullptr) return absl::DataLossError("link-code response without a code");
  return LinkCode{v->link_code()->str(), v->expires_in()};
}

absl::StatusOr<Registration> link_device(const TlsStreamOptions& server,
                                         const std::string& link_code,
                                         const std::string& device_name) {
  auto r = https_post_json(server, "/v1/devices/link",
                           "{\"link_code\": " + json_string(link_code) +
                               ", \"device_name\": " + json_string(device_name) + "}");
  if (!r.ok()) return r.status();
  if (r->status != 200) return error_of(*r);
  flatbuffers::Parser parser;
  if (absl::Status s = parse_body(parser, "herald.public_api.LinkResponse", r->body); !s.ok()) {
    return s;
  }
  const auto* v =
      flatbuffers::GetRoot<public_api::LinkResponse>(parser.builder_.GetBufferPointer());
  if (v->account_id() == nullptr || v->credential() == nullptr) {
    return absl::DataLossError("link response without account_id or credential");
  }
  return Registration{v->account_id()->str(), v->device_id(), v->credential()->str(), false};
}

absl::StatusOr<std::string> code_from_sms_log(const std::string& sms_log_path,
                                              const std::string& phone) {
  std::ifstream in(sms_log_path);
  if (!in) return absl::NotFoundError("cannot read " + sms_log_path);
  std::string line;
  std::string code;
  const std::string phone_field = "\"phone\":" + json_string(phone);
  const std::string phone_field_spaced = "\"phone\": " + json_string(phone);
  while (std::getline(in, line)) {
    if (line.find(phone_field) == std::string::npos &&
        line.find(phone_field_spaced) == std::string::npos) {
      continue;
    }
    const size_t at = line.find("\"code\":");
    if (at == std::string::npos) continue;
    const size_t open = line.find('"', at + 7);
    const size_t close = open == std::string::npos ? open : line.find('"', open + 1);
    if (close != std::string::npos) code = line.substr(open + 1, close - open - 1);
  }
  if (code.empty()) return absl::NotFoundError("no code for " + phone + " in " + sms_log_path);
  return code;
}

}  // namespace herald::tools
