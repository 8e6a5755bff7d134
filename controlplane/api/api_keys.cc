// Admin API keys: minting, hashed storage, Bearer authentication, the bootstrap key file and the
// /v1/api-keys routes (api_keys.h).
#include "controlplane/api/api_keys.h"

#include <fcntl.h>
#include <openssl/mem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>
#include <vector>

#include "platform/log/log.h"
#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"

namespace herald::api {
namespace {

// Stored value (kApiKeys, key = the 16-digit id): a format byte, then fixed fields little-endian,
// then the name. The format byte lets a later layout coexist with this one in the same table.
constexpr uint8_t kRecordFormat = 1;
constexpr size_t kRecordFixedBytes = 1 + 1 + 8 + 8 + registration::kDigestBytes;
constexpr std::string_view kKeyPrefix = "hk_";
constexpr size_t kKeyTextBytes = kKeyPrefix.size() + kApiKeyIdHexDigits + 1 +
                                 registration::base64url_encoded_size(kApiKeySecretBytes);
// The key file holds one key and a newline; anything longer is not ours.
constexpr size_t kMaxKeyFileBytes = 256;

void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint64_t get_u64(std::string_view in) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(in[static_cast<size_t>(i)]);
  return v;
}

bool is_lower_hex(std::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::string hex_u64(uint64_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = kHex[v & 0xf];
  return out;
}

// Names are for people: bounded, and free of control characters so they print safely in logs
// and terminals.
absl::Status check_name(std::string_view name) {
  if (name.empty()) return absl::InvalidArgumentError("empty_name");
  if (name.size() > kMaxApiKeyNameBytes) return absl::InvalidArgumentError("name_too_long");
  for (char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return absl::InvalidArgumentError("bad_name");
  }
  return absl::OkStatus();
}

std::optional<Scope> parse_scope(std::string_view text) {
  if (text == "read") return Scope::kRead;
  if (text == "admin") return Scope::kAdmin;
  return std::nullopt;
}

std::string scope_text(Scope scope) {
  return std::string(scope_name(scope));
}

std::string info_json(JsonCodec& codec, const ApiKeyRecord& r) {
  flatbuffers::FlatBufferBuilder b;
  auto id = b.CreateString(r.id);
  auto name = b.CreateString(r.name);
  auto scope = b.CreateString(scope_text(r.scope));
  b.Finish(admin::CreateApiKeyInfo(b, id, name, scope, r.created_unix_ms, r.revoked_unix_ms));
  return codec.to_json("herald.admin.ApiKeyInfo", b);
}

absl::Status fsync_directory(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "open " + dir);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) return absl::ErrnoToStatus(err, "fsync " + dir);
  return absl::OkStatus();
}

// Writes `text` to `path` atomically with mode 0600: temporary file, fsync, rename, directory
// fsync (a crash leaves the old file or the new one, never a torn one).
absl::Status write_secret_file(const std::string& dir, const std::string& path,
                               std::string_view text) {
  const std::string tmp = path + ".tmp";
  (void)::unlink(tmp.c_str());  // a leftover of an interrupted start
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return absl::ErrnoToStatus(errno, "create " + tmp);
  absl::Status status;
  // The umask can only narrow 0600; fchmod makes the mode exact whatever it is.
  if (::fchmod(fd, 0600) != 0) status = absl::ErrnoToStatus(errno, "fchmod " + tmp);
  size_t done = 0;
  while (status.ok() && done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      status = absl::ErrnoToStatus(n < 0 ? errno : EIO, "write " + tmp);
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (status.ok() && ::fsync(fd) != 0) status = absl::ErrnoToStatus(errno, "fsync " + tmp);
  if (::close(fd) != 0 && status.ok()) status = absl::ErrnoToStatus(errno, "close " + tmp);
  if (status.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) {
    status = absl::ErrnoToStatus(errno, "rename " + tmp);
  }
  if (!status.ok()) {
    (void)::unlink(tmp.c_str());
    return status;
  }
  return fsync_directory(dir);
}

// The key in an existing key file (trailing whitespace removed); nullopt when there is none.
absl::StatusOr<std::optional<std::string>> read_key_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) {
    if (errno == ENOENT) return std::optional<std::string>();
    return absl::ErrnoToStatus(errno, "open " + path);
  }
  std::string text(kMaxKeyFileBytes + 1, '\0');
  size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  return std::optional<std::string>(std::move(text));
}

// A new key and its record, not applied. The id is 64 random bits (a handle, not a secret; a
// collision is retried); the secret 256 random bits, of which only the SHA-256 is kept.
CreatedApiKey mint(const storage::Tables& tables, std::string_view name, Scope scope,
                   uint64_t now_unix_ms) {
  CreatedApiKey created;
  ApiKeyRecord& r = created.record;
  do {
    r.id = hex_u64(registration::random_u64());
  } while (tables.find(storage::TableId::kApiKeys, r.id) != nullptr);
  std::array<uint8_t, kApiKeySecretBytes> secret;
  registration::random_bytes(secret);
  r.name = std::string(name);
  r.scope = scope;
  r.created_unix_ms = now_unix_ms;
  r.secret_sha256 = registration::sha256(secret);
  created.key = std::string(kKeyPrefix) + r.id + "_" + registration::base64url_encode(secret);
  return created;
}

}  // namespace

std::string encode_api_key_record(const ApiKeyRecord& record) {
  std::string out;
  out.reserve(kRecordFixedBytes + record.name.size());
  out.push_back(static_cast<char>(kRecordFormat));
  out.push_back(static_cast<char>(record.scope));
  put_u64(out, record.created_unix_ms);
  put_u64(out, record.revoked_unix_ms);
  out.append(reinterpret_cast<const char*>(record.secret_sha256.data()),
             record.secret_sha256.size());
  out.append(record.name);
  return out;
}

std::optional<ApiKeyRecord> decode_api_key_record(std::string_view id, std::string_view value) {
  // The store is ours, but a record that does not decode must never authenticate anyone.
  if (value.size() < kRecordFixedBytes || static_cast<uint8_t>(value[0]) != kRecordFormat) {
    return std::nullopt;
  }
  ApiKeyRecord r;
  const auto scope = static_cast<uint8_t>(value[1]);
  if (scope != static_cast<uint8_t>(Scope::kRead) && scope != static_cast<uint8_t>(Scope::kAdmin)) {
    return std::nullopt;
  }
  r.id = std::string(id);
  r.scope = static_cast<Scope>(scope);
  r.created_unix_ms = get_u64(value.substr(2, 8));
  r.revoked_unix_ms = get_u64(value.substr(10, 8));
  std::memcpy(r.secret_sha256.data(), value.data() + 18, registration::kDigestBytes);
  r.name = std::string(value.substr(kRecordFixedBytes));
  return r;
}

std::optional<ParsedApiKey> parse_api_key(std::string_view key) {
  if (key.size() != kKeyTextBytes || key.substr(0, kKeyPrefix.size()) != kKeyPrefix) {
    return std::nullopt;
  }
  ParsedApiKey parsed;
  parsed.id = key.substr(kKeyPrefix.size(), kApiKeyIdHexDigits);
  if (!is_lower_hex(parsed.id)) return std::nullopt;
  if (key[kKeyPrefix.size() + kApiKeyIdHexDigits] != '_') return std::nullopt;
  if (!registration::base64url_decode(key.substr(kKeyPrefix.size() + kApiKeyIdHexDigits + 1),
                                      parsed.secret)) {
    return std::nullopt;
  }
  return parsed;
}

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  // RFC 9110 §11.4: credentials = auth-scheme [ 1*SP token68 ].
  constexpr std::string_view kScheme = "bearer";
  if (authorization.size() <= kScheme.size() ||
      !http::equals_ignore_case(authorization.substr(0, kScheme.size()), kScheme) ||
      authorization[kScheme.size()] != ' ') {
    return std::nullopt;
  }
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (token.empty() || token.find_first_of(" \t,") != std::string_view::npos) return std::nullopt;
  return token;
}

ApiKeys::ApiKeys(storage::Tables& tables, NowMs now_unix_ms)
    : tables_(tables),
      now_unix_ms_(std::move(now_unix_ms)),
      codec_(schemas::kAdminFbs, "admin.fbs") {
  if (!now_unix_ms_) {
    now_unix_ms_ = [] {
      return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count());
    };
  }
}

std::optional<ApiKeyRecord> ApiKeys::find(std::string_view id) const {
  const std::string* value = tables_.find(storage::TableId::kApiKeys, id);
  if (value == nullptr) return std::nullopt;
  return decode_api_key_record(id, *value);
}

ApiKeys::Check ApiKeys::check(std::string_view key, Scope needed) const {
  const std::optional<ParsedApiKey> parsed = parse_api_key(key);
  if (!parsed) return Check::kMalformed;
  const std::optional<ApiKeyRecord> record = find(parsed->id);
  if (!record) return Check::kUnknown;
  const registration::Digest hash = registration::sha256(parsed->secret);
  // CRYPTO_memcmp: the time does not depend on where the digests differ.
  if (CRYPTO_memcmp(hash.data(), record->secret_sha256.data(), hash.size()) != 0) {
    return Check::kBadSecret;
  }
  if (record->revoked_unix_ms != 0) return Check::kRevoked;
  if (static_cast<uint8_t>(record->scope) < static_cast<uint8_t>(needed)) return Check::kForbidden;
  return Check::kAllowed;
}

bool ApiKeys::verify(std::string_view key, Scope needed) const {
  return check(key, needed) == Check::kAllowed;
}

AuthOutcome ApiKeys::authenticate(const http::Request& request, Scope needed) {
  const http::HeaderField* field = request.find("authorization");
  if (field == nullptr) {
    ++stats_.missing;
    return AuthOutcome::kUnauthenticated;
  }
  const std::optional<std::string_view> token = bearer_token(field->value);
  if (!token) {
    ++stats_.malformed;
    return AuthOutcome::kUnauthenticated;
  }
  switch (check(*token, needed)) {
    case Check::kAllowed: ++stats_.allowed; return AuthOutcome::kAllowed;
    case Check::kMalformed: ++stats_.malformed; return AuthOutcome::kUnauthenticated;
    case Check::kUnknown: ++stats_.unknown; return AuthOutcome::kUnauthenticated;
    case Check::kBadSecret: ++stats_.bad_secret; return AuthOutcome::kUnauthenticated;
    case Check::kRevoked: ++stats_.revoked; return AuthOutcome::kUnauthenticated;
    case Check::kForbidden: ++stats_.forbidden; return AuthOutcome::kForbidden;
  }
  return AuthOutcome::kUnauthenticated;
}

std::string ApiKeys::principal(const http::Request& request) const {
  const http::HeaderField* field = request.find("authorization");
  if (field == nullptr) return {};
  const std::optional<std::string_view> token = bearer_token(field->value);
  if (!token) return {};
  const std::optional<ParsedApiKey> parsed = parse_api_key(*token);
  if (!parsed) return {};
  const std::optional<ApiKeyRecord> record = find(parsed->id);
  if (!record) return {};
  return record->name.empty() ? "key:" + record->id : record->name;
}

absl::StatusOr<CreatedApiKey> ApiKeys::create(std::string_view name, Scope scope) {
  if (absl::Status s = check_name(name); !s.ok()) return s;
  if (scope != Scope::kRead && scope != Scope::kAdmin) {
    return absl::InvalidArgumentError("bad_scope");
  }
  CreatedApiKey created = mint(tables_, name, scope, now_unix_ms_());
  const ApiKeyRecord& r = created.record;
  if (absl::Status s = tables_.put(storage::TableId::kApiKeys, r.id, encode_api_key_record(r));
      !s.ok()) {
    return absl::UnavailableError(s.message());
  }
  ++stats_.created;
  return created;
}

size_t ApiKeys::active_admin_keys() const {
  size_t count = 0;
  tables_.scan(storage::TableId::kApiKeys, "", [&](std::string_view id, std::string_view value) {
    const std::optional<ApiKeyRecord> r = decode_api_key_record(id, value);
    if (r && r->scope == Scope::kAdmin && r->revoked_unix_ms == 0) ++count;
    return true;
  });
  return count;
}

absl::Status ApiKeys::revoke(std::string_view id) {
  std::optional<ApiKeyRecord> r = find(id);
  if (!r) return absl::NotFoundError("no such key");
  if (r->revoked_unix_ms != 0) return absl::AlreadyExistsError("already revoked");
  if (r->scope == Scope::kAdmin && active_admin_keys() <= 1) {
    return absl::FailedPreconditionError("the last active admin key");
  }
  r->revoked_unix_ms = std::max<uint64_t>(now_unix_ms_(), 1);
  if (absl::Status s = tables_.put(storage::TableId::kApiKeys, id, encode_api_key_record(*r));
      !s.ok()) {
    // Unavailable whatever the store said, so a caller never mistakes it for the refusals above.
    return absl::UnavailableError(s.message());
  }
  ++stats_.revocations;
  return absl::OkStatus();
}

absl::Status ApiKeys::ensure_bootstrap_key(const std::string& data_dir) {
  const std::string path = data_dir + "/" + std::string(kAdminKeyFileName);
  absl::StatusOr<std::optional<std::string>> existing = read_key_file(path);
  if (!existing.ok()) return existing.status();
  const bool file_valid = existing->has_value() && verify(**existing, Scope::kAdmin);
  if (active_admin_keys() > 0) {
    if (existing->has_value() && !file_valid) {
      // Another admin key exists, so the node is manageable; minting one more on every start
      // would be worse than a stale file, which the operator can delete.
      HLOG_WARN("api_keys.admin_key_file_stale").kv("path", path);
    }
    return absl::OkStatus();
  }
  // Minted, not applied yet: the file goes first (see the header).
  const CreatedApiKey created = mint(tables_, kBootstrapKeyName, Scope::kAdmin, now_unix_ms_());
  if (absl::Status s = write_secret_file(data_dir, path, created.key + "\n"); !s.ok()) return s;
  if (absl::Status s = tables_.put(storage::TableId::kApiKeys, created.record.id,
                                   encode_api_key_record(created.record));
      !s.ok()) {
    return s;
  }
  ++stats_.bootstrap_created;
  HLOG_INFO("api_keys.bootstrap_key_written")
      .kv("path", path)
      .kv("id", created.record.id)
      .kv("replaced_stale_file", existing->has_value());
  return absl::OkStatus();
}

void ApiKeys::add_routes(Router& router) {
  router.add(http::Method::kGet, "/v1/api-keys", Scope::kRead,
             [this](Call& call) { handle_list(call); });
  router.add(http::Method::kPost, "/v1/api-keys", Scope::kAdmin,
             [this](Call& call) { handle_create(call); });
  router.add(http::Method::kDelete, "/v1/api-keys/{id}", Scope::kAdmin,
             [this](Call& call) { handle_revoke(call); });
}

void ApiKeys::handle_list(Call& call) {
  flatbuffers::FlatBufferBuilder b;
  std::vector<flatbuffers::Offset<admin::ApiKeyInfo>> keys;
  tables_.scan(storage::TableId::kApiKeys, "", [&](std::string_view id, std::string_view value) {
    const std::optional<ApiKeyRecord> r = decode_api_key_record(id, value);
    if (!r) return true;
    keys.push_back(admin::CreateApiKeyInfo(b, b.CreateString(r->id), b.CreateString(r->name),
                                           b.CreateString(scope_text(r->scope)), r->created_unix_ms,
                                           r->revoked_unix_ms));
    return true;
  });
  b.Finish(admin::CreateApiKeyList(b, b.CreateVector(keys)));
  // A read answers after a barrier too: it may show a key created a moment ago, not yet durable.
  respond_json_when_durable(tables_, call.responder, 200,
                            codec_.to_json("herald.admin.ApiKeyList", b));
}

void ApiKeys::handle_create(Call& call) {
  absl::StatusOr<const admin::ApiKeyCreateRequest*> req =
      codec_.parse<admin::ApiKeyCreateRequest>("herald.admin.ApiKeyCreateRequest", call.body);
  if (!req.ok()) {
    call.respond_error(400, "bad_json", std::string(req.status().message()));
    return;
  }
  if ((*req)->name() == nullptr) {
    call.respond_error(400, "missing_field", "name is required", "name");
    return;
  }
  if ((*req)->scope() == nullptr) {
    call.respond_error(400, "missing_field", "scope is required", "scope");
    return;
  }
  const std::optional<Scope> scope = parse_scope((*req)->scope()->string_view());
  if (!scope) {
    call.respond_error(400, "bad_scope", "scope must be \"read\" or \"admin\"", "scope");
    return;
  }
  absl::StatusOr<CreatedApiKey> created = create((*req)->name()->string_view(), *scope);
  if (!created.ok()) {
    if (absl::IsInvalidArgument(created.status())) {
      const std::string code(created.status().message());
      call.respond_error(400, code,
                         code == "name_too_long" ? "name is longer than 64 bytes"
                         : code == "empty_name"  ? "name is empty"
                                                 : "name holds a control character",
                         "name");
    } else {
      call.respond_error(503, "store_unavailable", std::string(created.status().message()));
    }
    return;
  }
  const ApiKeyRecord& r = created->record;
  flatbuffers::FlatBufferBuilder b;
  auto id = b.CreateString(r.id);
  auto name = b.CreateString(r.name);
  auto scope_str = b.CreateString(scope_text(r.scope));
  auto key = b.CreateString(created->key);
  b.Finish(admin::CreateApiKeyCreated(b, id, name, scope_str, r.created_unix_ms, key));
  HLOG_INFO("api_keys.created").kv("id", r.id).kv("scope", scope_name(r.scope));
  respond_json_when_durable(tables_, call.responder, 201,
                            codec_.to_json("herald.admin.ApiKeyCreated", b));
}

void ApiKeys::handle_revoke(Call& call) {
  const std::string id(call.param(0));
  if (id.size() != kApiKeyIdHexDigits || !is_lower_hex(id)) {
    call.respond_error(400, "bad_id", "a key id is 16 lower-case hex digits", "id");
    return;
  }
  const absl::Status s = revoke(id);
  if (absl::IsNotFound(s)) {
    call.respond_error(404, "not_found", "no API key with this id");
    return;
  }
  if (absl::IsFailedPrecondition(s)) {
    call.respond_error(409, "last_admin_key",
                       "revoking the last active admin key would leave the node unmanageable; "
                       "create another admin key first");
    return;
  }
  // Revoking a revoked key is answered like the first revocation (DELETE is idempotent,
  // RFC 9110 §9.2.2), after a barrier like any answer that read the tables.
  if (!s.ok() && !absl::IsAlreadyExists(s)) {
    call.respond_error(503, "store_unavailable", std::string(s.message()));
    return;
  }
  if (!absl::IsAlreadyExists(s)) {
    HLOG_INFO("api_keys.revoked").kv("id", id);
  }
  const std::optional<ApiKeyRecord> record = find(id);
  if (!record) {
    call.respond_error(500, "corrupt_record", "the key's record does not decode");
    return;
  }
  respond_json_when_durable(tables_, call.responder, 200, info_json(codec_, *record));
}

}  // namespace herald::api
