// The admin API's account endpoints (see accounts_api.h).
#include "controlplane/api/accounts_api.h"

#include <charconv>
#include <vector>

#include "controlplane/api/page_scan.h"
#include "platform/log/log.h"
#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"
#include "schemas/public_api_fbs.h"
#include "schemas/public_api_generated.h"

namespace herald::api {

namespace {

std::optional<uint32_t> parse_device_id(std::string_view text) {
  uint32_t value = 0;
  if (text.empty() || text.size() > 10 || text[0] == '0') return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// kAccounts keys are the id's hi and lo halves, big-endian (catalog_store.h), so the table's
// byte order is the order of the ids' text form, and a cursor is simply the last id listed.
constexpr size_t kAccountKeyBytes = 16;

std::string account_key(const registration::AccountId& id) {
  std::string key(kAccountKeyBytes, '\0');
  for (size_t i = 0; i < 8; ++i) {
    key[i] = static_cast<char>((id.hi >> (56 - 8 * i)) & 0xff);
    key[8 + i] = static_cast<char>((id.lo >> (56 - 8 * i)) & 0xff);
  }
  return key;
}

registration::AccountId account_of_key(std::string_view key) {
  registration::AccountId id{0, 0};
  for (size_t i = 0; i < 8; ++i) {
    id.hi = (id.hi << 8) | static_cast<uint8_t>(key[i]);
    id.lo = (id.lo << 8) | static_cast<uint8_t>(key[8 + i]);
  }
  return id;
}

}  // namespace

AccountsApi::AccountsApi(storage::Tables& tables, registration::CatalogStore& store,
                         UnixClock clock)
    : tables_(tables),
      store_(store),
      clock_(std::move(clock)),
      codec_(schemas::kPublicApiFbs, "public_api.fbs"),
      admin_codec_(schemas::kAdminFbs, "admin.fbs") {}

void AccountsApi::add_routes(Router& router) {
  router.add(http::Method::kGet, "/v1/accounts", Scope::kRead,
             [this](Call& call) { handle_lookup(call); });
  router.add(http::Method::kGet, "/v1/accounts/{id}", Scope::kRead,
             [this](Call& call) { handle_get(call); });
  router.add(http::Method::kPost, "/v1/accounts/{id}/disable", Scope::kAdmin,
             [this](Call& call) { handle_disable(call); });
  router.add(http::Method::kGet, "/v1/accounts/{id}/devices", Scope::kRead,
             [this](Call& call) { handle_devices(call); });
  router.add(http::Method::kDelete, "/v1/accounts/{id}/devices/{device_id}", Scope::kAdmin,
             [this](Call& call) { handle_revoke(call); });
}

void AccountsApi::answer_after_barrier(const http::Responder& responder, int status,
                                       std::string body) {
  respond_json_when_durable(tables_, responder, status, std::move(body), 0,
                            [stats = stats_] { ++stats->store_unavailable; });
}

std::string AccountsApi::account_json(const registration::Account& account) {
  flatbuffers::FlatBufferBuilder fbb(256);
  auto id = fbb.CreateString(registration::format_account_id(account.id));
  auto phone = fbb.CreateString(account.phone.to_string());
  fbb.Finish(public_api::CreateAccountInfo(fbb, id, phone, account.primary_device_id,
                                           account.created_ms, account.disabled_ms != 0,
                                           account.disabled_ms));
  return codec_.to_json("herald.public_api.AccountInfo", fbb);
}

std::string AccountsApi::device_json(const registration::Device& device, bool primary) {
  flatbuffers::FlatBufferBuilder fbb(256);
  auto name = fbb.CreateString(device.name);
  fbb.Finish(public_api::CreateDeviceInfo(fbb, device.device_id, name, primary, device.created_ms,
                                          device.revoked_ms));
  return codec_.to_json("herald.public_api.DeviceInfo", fbb);
}

void AccountsApi::handle_lookup(Call& call) {
  const std::string_view query = call.request.query();
  if (!has_query_param(query, "phone")) {
    handle_list(call);
    return;
  }
  // A lookup is one account: paging it would mean nothing, and a client that sent both has
  // confused the two uses.
  if (has_query_param(query, "limit") || has_query_param(query, "after")) {
    ++stats_->bad_list_requests;
    call.respond_error(400, "invalid_request", "phone cannot be combined with limit or after",
                       "phone");
    return;
  }
  std::optional<std::string> phone_text = query_param(query, "phone");
  if (!phone_text) {
    call.respond_error(400, "invalid_phone", "the phone is not valid percent-encoding", "phone");
    return;
  }
  registration::PhoneParse phone = registration::parse_phone_number(*phone_text);
  if (phone.error != registration::PhoneError::kOk) {
    call.respond_error(
        400, "invalid_phone",
        std::string(registration::error_message(registration::RegistrationError::kInvalidPhone)) +
            " (" + std::string(registration::phone_error_name(phone.error)) + ")",
        "phone");
    return;
  }
  std::optional<registration::Account> account = store_.find_account_by_phone(phone.number);
  if (!account) {
    answer_after_barrier(call.responder, 404,
                         error_json("account_not_found", "no account has this number"));
    return;
  }
  answer_after_barrier(call.responder, 200, account_json(*account));
}

void AccountsApi::handle_list(Call& call) {
  const std::optional<PageQuery> page = page_query(call, kDefaultAccountsPage, kMaxAccountsPage);
  if (!page) {
    ++stats_->bad_list_requests;
    return;
  }
  std::string from;
  if (page->after) {
    const std::optional<registration::AccountId> after =
        registration::parse_account_id(*page->after);
    if (!after) {
      ++stats_->bad_list_requests;
      call.respond_error(400, "invalid_cursor",
                         "after must be an account id (the next cursor of a page)", "after");
      return;
    }
    from = account_key(*after);
  }

  auto [accounts, more, corrupt] = scan_page<registration::Account>(
      tables_, storage::TableId::kAccounts, from, page->limit,
      [](std::string_view key, std::string_view value) -> std::optional<registration::Account> {
        if (key.size() != kAccountKeyBytes) return std::nullopt;
        return registration::CatalogStore::decode_account(account_of_key(key), value);
      });
  if (corrupt != 0) {
    stats_->corrupt_records_skipped += corrupt;
    HLOG_WARN("accounts.list_skipped_corrupt").kv("records", corrupt);
  }

  flatbuffers::FlatBufferBuilder fbb(256 + accounts.size() * 160);
  std::vector<flatbuffers::Offset<admin::AccountSummary>> items;
  items.reserve(accounts.size());
  for (const registration::Account& a : accounts) {
    auto id = fbb.CreateString(registration::format_account_id(a.id));
    auto phone = fbb.CreateString(a.phone.to_string());
    items.push_back(admin::CreateAccountSummary(fbb, id, phone, a.primary_device_id, a.created_ms,
                                                a.disabled_ms != 0, a.disabled_ms));
  }
  const auto vector = fbb.CreateVector(items);
  flatbuffers::Offset<flatbuffers::String> next;
  if (more && !accounts.empty()) {
    next = fbb.CreateString(registration::format_account_id(accounts.back().id));
  }
  fbb.Finish(admin::CreateAccountList(fbb, vector, next));
  ++stats_->pages_listed;
  answer_after_barrier(call.responder, 200, admin_codec_.to_json("herald.admin.AccountList", fbb));
}

// The {id} path parameter; answers 400 and returns nullopt when it is not an account id.
std::optional<registration::AccountId> AccountsApi::account_param(Call& call) {
  std::optional<registration::AccountId> id = registration::parse_account_id(call.param(0));
  if (!id) call.respond_error(400, "invalid_account_id", "the account id must be a UUID", "id");
  return id;
}

void AccountsApi::handle_get(Call& call) {
  std::optional<registration::AccountId> id = account_param(call);
  if (!id) return;
  std::optional<registration::Account> account = store_.find_account(*id);
  if (!account) {
    answer_after_barrier(call.responder, 404, error_json("account_not_found", "no such account"));
    return;
  }
  answer_after_barrier(call.responder, 200, account_json(*account));
}

void AccountsApi::handle_disable(Call& call) {
  std::optional<registration::AccountId> id = account_param(call);
  if (!id) return;
  const uint64_t now_ms = clock_();
  std::optional<registration::Account> before = store_.find_account(*id);
  absl::StatusOr<registration::Account> account = store_.disable_account(*id, now_ms);
  if (!account.ok()) {
    if (absl::IsNotFound(account.status())) {
      answer_after_barrier(call.responder, 404, error_json("account_not_found", "no such account"));
    } else {
      ++stats_->store_unavailable;
      call.respond_error(503, "store_unavailable", "internal storage error; try again later");
    }
    return;
  }
  if (before && before->disabled_ms == 0) {
    ++stats_->disabled;
    HLOG_INFO("registration.account_disabled").kv("account", registration::format_account_id(*id));
    // Every token of every device, up to now (inclusive), stops working at the dataplane.
    if (revocation_hook_) revocation_hook_(*id, std::nullopt, account->disabled_ms + 1);
  }
  answer_after_barrier(call.responder, 200, account_json(*account));
}

void AccountsApi::handle_devices(Call& call) {
  std::optional<registration::AccountId> id = account_param(call);
  if (!id) return;
  std::optional<registration::Account> account = store_.find_account(*id);
  if (!account) {
    answer_after_barrier(call.responder, 404, error_json("account_not_found", "no such account"));
    return;
  }
  std::vector<registration::Device> devices = store_.list_devices(*id);
  flatbuffers::FlatBufferBuilder fbb(1024);
  std::vector<flatbuffers::Offset<public_api::DeviceInfo>> infos;
  infos.reserve(devices.size());
  for (const registration::Device& d : devices) {
    auto name = fbb.CreateString(d.name);
    infos.push_back(public_api::CreateDeviceInfo(
        fbb, d.device_id, name, d.device_id == account->primary_device_id && d.revoked_ms == 0,
        d.created_ms, d.revoked_ms));
  }
  auto account_id = fbb.CreateString(registration::format_account_id(*id));
  auto list = fbb.CreateVector(infos);
  fbb.Finish(public_api::CreateDeviceList(fbb, account_id, list));
  answer_after_barrier(call.responder, 200, codec_.to_json("herald.public_api.DeviceList", fbb));
}

void AccountsApi::handle_revoke(Call& call) {
  std::optional<registration::AccountId> id = account_param(call);
  if (!id) return;
  std::optional<uint32_t> device_id = parse_device_id(call.param(1));
  if (!device_id) {
    call.respond_error(400, "invalid_device_id", "the device id must be a positive integer",
                       "device_id");
    return;
  }
  const uint64_t now_ms = clock_();
  std::optional<registration::Device> before = store_.find_device(*id, *device_id);
  absl::StatusOr<registration::Device> device = store_.revoke_device(*id, *device_id, now_ms);
  if (!device.ok()) {
    if (absl::IsNotFound(device.status())) {
      bool no_account = !store_.find_account(*id).has_value();
      answer_after_barrier(call.responder, 404,
                           no_account
                               ? error_json("account_not_found", "no such account")
                               : error_json("device_not_found", "the account has no such device"));
    } else {
      ++stats_->store_unavailable;
      call.respond_error(503, "store_unavailable", "internal storage error; try again later");
    }
    return;
  }
  if (before && before->revoked_ms == 0) {
    ++stats_->devices_revoked;
    HLOG_INFO("registration.device_revoked")
        .kv("account", registration::format_account_id(*id))
        .kv("device", *device_id);
    if (revocation_hook_) revocation_hook_(*id, *device_id, device->revoked_ms + 1);
  }
  answer_after_barrier(call.responder, 200, device_json(*device, false));
}

}  // namespace herald::api
