// The admin API's config endpoints over config_revisions::Revisions:
//   GET  /v1/config                       read   the active config, its revision, restart fields
//   POST /v1/config[?comment=]            admin  a full config JSON -> a candidate revision (201),
//                                                authored by the caller's API key name
//   GET  /v1/config/revisions[?limit=&before=]  read  newest first, paged
//   GET  /v1/config/revisions/{rev}       read   one revision with its config
//   POST /v1/config/{rev}/commit          admin  optional {"confirm_timeout_s": N}; also rollback
//   POST /v1/config/{rev}/confirm         admin  confirms a commit made with a timeout
// Every answer goes out after tables.barrier() (503 store_unavailable when it fails).
//
//   ConfigApi config_api(*revisions, tables);
//   config_api.add_routes(admin_router);
#pragma once

#include <cstddef>

#include "controlplane/api/json_codec.h"
#include "controlplane/api/router.h"
#include "controlplane/config/revisions.h"
#include "controlplane/storage/tables.h"

namespace herald::config_revisions {

// Page size of GET /v1/config/revisions: default and largest.
inline constexpr size_t kDefaultPageSize = 50;
inline constexpr size_t kMaxPageSize = 500;

class ConfigApi {
 public:
  ConfigApi(Revisions& revisions, storage::Tables& tables);
  ConfigApi(const ConfigApi&) = delete;
  ConfigApi& operator=(const ConfigApi&) = delete;

  void add_routes(api::Router& router);

 private:
  void get_config(api::Call& call);
  void post_config(api::Call& call);
  void list_revisions(api::Call& call);
  void get_revision(api::Call& call);
  void commit(api::Call& call);
  void confirm(api::Call& call);

  // Answers `status`/`json` once everything applied so far is durable, 503 if it is not.
  void respond_after_barrier(api::Call& call, int status, std::string json);

  Revisions& revisions_;
  storage::Tables& tables_;
  api::JsonCodec codec_;
};

}  // namespace herald::config_revisions
