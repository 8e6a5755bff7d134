// heraldctl: the operator's command line for a Herald node's admin API.
//
//   heraldctl health
//   heraldctl config set node.json --comment "raise limits" && heraldctl config commit 7
//   --confirm-timeout 120 heraldctl keys create ci-reader --scope read
//   heraldctl accounts list --limit 500 --after <id>     (one page; its "next" is the cursor)
//   heraldctl groups list --all                          (every page, printed as one list)
//   heraldctl prof capture --interval 10ms --duration 30s -o run.hprof
//   heraldctl prof report run.hprof   |   heraldctl prof csv run.hprof [--rates] [-o run.csv]
//   heraldctl prof plot run.hprof -o run.html [--series 'os.cpu*'] [--width 1200]   (or .svg)
//   heraldctl prof flame run.hprof -o flame.svg   |   heraldctl prof flame run.hprof --folded
//
// The API key comes from --key-file, else $HERALD_API_KEY, else <data-dir>/admin.key (the key
// the control plane writes at first start). The address comes from --url, else the node
// config's controlplane.admin_address/admin_port (--config), else the embedded defaults.
// Exit status: 0 for a 2xx answer, 1 for an error answer (its error code and message go to
// stderr), 2 when the node cannot be reached or the command line is wrong.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "flatbuffers/idl.h"
#include "platform/config/config.h"
#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"
#include "tools/heraldctl/admin_client.h"
#include "tools/heraldctl/flame_graph.h"
#include "tools/heraldctl/prof.h"
#include "tools/heraldctl/prof_plot.h"

namespace {

using herald::tools::AdminEndpoint;
using herald::tools::AdminResponse;

std::string url_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    }
  }
  return out;
}

// A JSON string literal (names and account ids on the command line).
std::string json_string(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (u < 0x20) {
      out += "\\u00";
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 0xf]);
    } else {
      out.push_back(c);
    }
  }
  return out + "\"";
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream text;
  text << in.rdbuf();
  out = text.str();
  return true;
}

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.pop_back();
  }
  return text;
}

// Pulls "error" and "message" out of an error body for a one-line report; the body itself is
// printed when it is not the usual shape.
std::string field_of(const std::string& json, const std::string& name) {
  const std::string key = "\"" + name + "\":";
  size_t at = json.find(key);
  if (at == std::string::npos) return {};
  at += key.size();
  while (at < json.size() && json[at] == ' ') ++at;
  if (at >= json.size() || json[at] != '"') return {};
  std::string value;
  for (size_t i = at + 1; i < json.size() && json[i] != '"'; ++i) {
    if (json[i] == '\\' && i + 1 < json.size()) ++i;
    value.push_back(json[i]);
  }
  return value;
}

// Reports an answer that is not 2xx on stderr; returns the exit status (1).
int report_error(const AdminResponse& response);

int run(const AdminEndpoint& endpoint, const std::string& method, const std::string& target,
        const std::string& body = {}) {
  absl::StatusOr<AdminResponse> response =
      herald::tools::admin_request(endpoint, method, target, body);
  if (!response.ok()) {
    std::cerr << "heraldctl: " << response.status().message() << " (" << endpoint.host << ":"
              << endpoint.port << ")\n";
    return 2;
  }
  if (response->status >= 200 && response->status < 300) {
    std::cout << response->body;
    if (!response->body.empty() && response->body.back() != '\n') std::cout << '\n';
    return 0;
  }
  return report_error(*response);
}

int report_error(const AdminResponse& response) {
  const std::string error = field_of(response.body, "error");
  if (error.empty()) {
    std::cerr << "heraldctl: HTTP " << response.status << ": " << response.body << "\n";
  } else {
    std::cerr << "heraldctl: HTTP " << response.status << " " << error << ": "
              << field_of(response.body, "message");
    if (const std::string field = field_of(response.body, "field"); !field.empty()) {
      std::cerr << " (field " << field << ")";
    }
    std::cerr << "\n";
  }
  return 1;
}

// A page limit and cursor as a query string ("?limit=5&after=..."; "" for neither).
std::string page_query(uint32_t limit, const std::string& after) {
  std::string query;
  if (limit != 0) query += "limit=" + std::to_string(limit);
  if (!after.empty())
    query += (query.empty() ? "" : "&") + std::string("after=") + url_encode(after);
  return query.empty() ? query : "?" + query;
}

// More pages than this in one --all is a server that keeps answering `next`: stop rather than
// loop (10^4 pages of the largest size is 10^7 items).
constexpr size_t kMaxPagesPerListing = 10'000;

// Moves a page's items to the end of `all`.
void append_items(herald::admin::AccountListT& all, herald::admin::AccountListT& page) {
  for (auto& item : page.accounts) all.accounts.push_back(std::move(item));
}
void append_items(herald::admin::GroupListT& all, herald::admin::GroupListT& page) {
  for (auto& item : page.groups) all.groups.push_back(std::move(item));
}

// The merged list as the node writes a page: the item vector always there (the object API's
// Pack leaves an empty one out), `next` never.
template <typename Item, typename ItemT>
flatbuffers::Offset<flatbuffers::Vector<flatbuffers::Offset<Item>>> pack_items(
    flatbuffers::FlatBufferBuilder& builder, const std::vector<std::unique_ptr<ItemT>>& items) {
  std::vector<flatbuffers::Offset<Item>> offsets;
  offsets.reserve(items.size());
  for (const auto& item : items) offsets.push_back(Item::Pack(builder, item.get()));
  return builder.CreateVector(offsets);
}
void pack_list(flatbuffers::FlatBufferBuilder& builder, const herald::admin::AccountListT& all) {
  builder.Finish(herald::admin::CreateAccountList(
      builder, pack_items<herald::admin::AccountSummary>(builder, all.accounts)));
}
void pack_list(flatbuffers::FlatBufferBuilder& builder, const herald::admin::GroupListT& all) {
  builder.Finish(herald::admin::CreateGroupList(
      builder, pack_items<herald::admin::GroupSummary>(builder, all.groups)));
}

// --all: GETs `path` page after page, following each answer's `next` as ?after=, and prints
// every page's items as one `List` (admin.fbs AccountList or GroupList) without a `next`. Each
// page is parsed against the schema, so an answer of another shape is an error, not a guess.
template <typename List>
int list_all(const AdminEndpoint& endpoint, const std::string& path, const char* root_type,
             uint32_t limit, std::string after) {
  flatbuffers::IDLOptions options;
  options.strict_json = true;
  options.output_default_scalars_in_json = true;
  options.output_enum_identifiers = true;
  options.indent_step = -1;
  // Fields a newer node appends to the summaries are dropped rather than refused.
  options.skip_unexpected_fields_in_json = true;
  flatbuffers::Parser parser(options);
  if (!parser.Parse(std::string(herald::schemas::kAdminFbs).c_str(), nullptr, "admin.fbs") ||
      !parser.SetRootType(root_type)) {
    std::cerr << "heraldctl: the embedded admin schema does not parse\n";
    return 2;
  }
  typename List::NativeTableType all;
  for (size_t pages = 0;; ++pages) {
    if (pages == kMaxPagesPerListing) {
      std::cerr << "heraldctl: more than " << kMaxPagesPerListing << " pages; stopped\n";
      return 1;
    }
    const std::string target = path + page_query(limit, after);
    absl::StatusOr<AdminResponse> response = herald::tools::admin_request(endpoint, "GET", target);
    if (!response.ok()) {
      std::cerr << "heraldctl: " << response.status().message() << " (" << endpoint.host << ":"
                << endpoint.port << ")\n";
      return 2;
    }
    if (response->status < 200 || response->status >= 300) return report_error(*response);
    if (!parser.ParseJson(response->body.c_str())) {
      std::cerr << "heraldctl: " << target << ": unexpected answer: " << parser.error_ << "\n";
      return 1;
    }
    typename List::NativeTableType page;
    flatbuffers::GetRoot<List>(parser.builder_.GetBufferPointer())->UnPackTo(&page);
    append_items(all, page);
    // A cursor must move forward; one that does not would repeat the same page for ever.
    if (page.next.empty()) break;
    if (page.next <= after) {
      std::cerr << "heraldctl: " << target << ": the next cursor does not advance\n";
      return 1;
    }
    after = page.next;
  }
  flatbuffers::FlatBufferBuilder builder;
  pack_list(builder, all);
  std::string json;
  if (!flatbuffers::GenerateText(parser, builder.GetBufferPointer(), &json)) {
    std::cerr << "heraldctl: cannot print the list\n";
    return 2;
  }
  std::cout << json << '\n';
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"heraldctl: manage a Herald node through its admin API"};
  app.require_subcommand(1);
  std::string url;
  std::string key_file;
  std::string config_path;
  std::string data_dir;
  uint32_t timeout_s = 10;
  app.add_option("--url", url, "admin API address, e.g. http://127.0.0.1:8080");
  app.add_option("--key-file", key_file, "file holding the API key (else $HERALD_API_KEY)");
  app.add_option("--config", config_path, "node config (admin address and data dir)");
  app.add_option("--data-dir", data_dir, "data directory holding admin.key");
  app.add_option("--timeout", timeout_s, "seconds to wait for an answer")
      ->check(CLI::Range(1, 3600));

  std::string method;
  std::string target;
  std::string body;
  auto simple = [&](const char* name, const char* help, const char* path) {
    return app.add_subcommand(name, help)->callback([&, path] {
      method = "GET";
      target = path;
    });
  };
  simple("health", "component health", "/v1/health");
  simple("node", "version, uptime, roles, listeners", "/v1/node");
  simple("stats", "every counter, as JSON", "/v1/stats");
  simple("metrics", "every counter, Prometheus text", "/metrics");

  // config
  CLI::App* config = app.add_subcommand("config", "config revisions")->require_subcommand(1);
  config->add_subcommand("show", "the active config")->callback([&] {
    method = "GET";
    target = "/v1/config";
  });
  uint32_t limit = 0;
  auto* revisions = config->add_subcommand("revisions", "stored revisions, newest first");
  revisions->add_option("--limit", limit, "at most this many");
  revisions->callback([&] {
    method = "GET";
    target = "/v1/config/revisions" + (limit ? "?limit=" + std::to_string(limit) : "");
  });
  uint64_t revision = 0;
  config->add_subcommand("get", "one revision")
      ->callback([&] {
        method = "GET";
        target = "/v1/config/revisions/" + std::to_string(revision);
      })
      ->add_option("revision", revision)
      ->required();
  std::string config_file;
  std::string comment;
  auto* set = config->add_subcommand("set", "store a config file as a new candidate revision");
  set->add_option("file", config_file, "config JSON")->required()->check(CLI::ExistingFile);
  set->add_option("--comment", comment, "why");
  set->callback([&] {
    method = "POST";
    target = "/v1/config" + (comment.empty() ? "" : "?comment=" + url_encode(comment));
    if (!read_file(config_file, body)) throw CLI::ValidationError("cannot read " + config_file);
  });
  uint32_t confirm_timeout_s = 0;
  auto* commit = config->add_subcommand("commit", "activate a revision (also: roll back to one)");
  commit->add_option("revision", revision)->required();
  commit->add_option("--confirm-timeout", confirm_timeout_s,
                     "revert by itself unless confirmed within this many seconds");
  commit->callback([&] {
    method = "POST";
    target = "/v1/config/" + std::to_string(revision) + "/commit";
    if (confirm_timeout_s)
      body = "{\"confirm_timeout_s\": " + std::to_string(confirm_timeout_s) + "}";
  });
  config->add_subcommand("confirm", "confirm a commit made with --confirm-timeout")
      ->callback([&] {
        method = "POST";
        target = "/v1/config/" + std::to_string(revision) + "/confirm";
      })
      ->add_option("revision", revision)
      ->required();

  // keys
  CLI::App* keys = app.add_subcommand("keys", "admin API keys")->require_subcommand(1);
  keys->add_subcommand("list", "keys (never their secrets)")->callback([&] {
    method = "GET";
    target = "/v1/api-keys";
  });
  std::string name;
  std::string scope = "read";
  auto* create = keys->add_subcommand("create", "a new key, shown once");
  create->add_option("name", name)->required();
  create->add_option("--scope", scope)->check(CLI::IsMember({"read", "admin"}));
  create->callback([&] {
    method = "POST";
    target = "/v1/api-keys";
    body = "{\"name\": " + json_string(name) + ", \"scope\": " + json_string(scope) + "}";
  });
  std::string id;
  keys->add_subcommand("revoke", "revoke a key by id")
      ->callback([&] {
        method = "DELETE";
        target = "/v1/api-keys/" + url_encode(id);
      })
      ->add_option("id", id)
      ->required();

  // accounts
  CLI::App* accounts =
      app.add_subcommand("accounts", "accounts and devices")->require_subcommand(1);
  accounts->add_subcommand("show", "an account by phone number (+...) or id")
      ->callback([&] {
        method = "GET";
        target = id.starts_with("+") ? "/v1/accounts?phone=" + url_encode(id)
                                     : "/v1/accounts/" + url_encode(id);
      })
      ->add_option("phone-or-id", id)
      ->required();
  // `list` (accounts and groups): one page, or with --all every page as one list.
  uint32_t page_limit = 0;
  std::string page_after;
  bool all_pages = false;
  std::string list_all_of;  // "accounts" or "groups" when --all was given
  auto add_list = [&](CLI::App* parent, const char* path, const char* what) {
    auto* list = parent->add_subcommand("list", what);
    list->add_option("--limit", page_limit, "items per page (1-1000; the node's default: 100)")
        ->check(CLI::Range(1, 1000));
    list->add_option("--after", page_after, "start after this id (a page's \"next\")");
    list->add_flag("--all", all_pages, "follow \"next\" through every page; print one list");
    list->callback([&, path, parent] {
      method = "GET";
      target = path + page_query(page_limit, page_after);
      if (all_pages) list_all_of = parent->get_name();
    });
  };
  add_list(accounts, "/v1/accounts", "accounts in id order, a page at a time");
  accounts->add_subcommand("devices", "an account's devices")
      ->callback([&] {
        method = "GET";
        target = "/v1/accounts/" + url_encode(id) + "/devices";
      })
      ->add_option("id", id)
      ->required();
  accounts->add_subcommand("disable", "disable an account")
      ->callback([&] {
        method = "POST";
        target = "/v1/accounts/" + url_encode(id) + "/disable";
      })
      ->add_option("id", id)
      ->required();
  uint32_t device = 0;
  auto* revoke = accounts->add_subcommand("revoke", "revoke one device");
  revoke->add_option("id", id)->required();
  revoke->add_option("device", device)->required();
  revoke->callback([&] {
    method = "DELETE";
    target = "/v1/accounts/" + url_encode(id) + "/devices/" + std::to_string(device);
  });

  // groups
  CLI::App* groups = app.add_subcommand("groups", "groups and members")->require_subcommand(1);
  std::vector<std::string> members;
  auto members_json = [&] {
    std::string out = "[";
    for (size_t i = 0; i < members.size(); ++i) out += (i ? ", " : "") + json_string(members[i]);
    return out + "]";
  };
  add_list(groups, "/v1/groups", "groups in id order, a page at a time");
  auto* gcreate = groups->add_subcommand("create", "a group with its first members");
  gcreate->add_option("name", name)->required();
  gcreate->add_option("members", members, "account ids");
  gcreate->callback([&] {
    method = "POST";
    target = "/v1/groups";
    body = "{\"name\": " + json_string(name) + ", \"members\": " + members_json() + "}";
  });
  groups->add_subcommand("show", "a group and its members")
      ->callback([&] {
        method = "GET";
        target = "/v1/groups/" + url_encode(id);
      })
      ->add_option("id", id)
      ->required();
  auto* gadd = groups->add_subcommand("add", "add members");
  gadd->add_option("id", id)->required();
  gadd->add_option("members", members, "account ids")->required();
  gadd->callback([&] {
    method = "POST";
    target = "/v1/groups/" + url_encode(id) + "/members";
    body = "{\"accounts\": " + members_json() + "}";
  });
  std::string member;
  auto* gremove = groups->add_subcommand("remove", "remove one member");
  gremove->add_option("id", id)->required();
  gremove->add_option("account", member)->required();
  gremove->callback([&] {
    method = "DELETE";
    target = "/v1/groups/" + url_encode(id) + "/members/" + url_encode(member);
  });
  groups->add_subcommand("delete", "delete a group")
      ->callback([&] {
        method = "DELETE";
        target = "/v1/groups/" + url_encode(id);
      })
      ->add_option("id", id)
      ->required();

  // raw
  std::string raw_method;
  std::string raw_path;
  std::string raw_body;
  auto* raw = app.add_subcommand("raw", "any request: heraldctl raw GET /v1/node");
  raw->add_option("method", raw_method)->required();
  raw->add_option("path", raw_path)->required();
  raw->add_option("body", raw_body);
  raw->callback([&] {
    method = raw_method;
    target = raw_path;
    body = raw_body;
  });

  // prof: capture needs the node; report and csv read a file and never touch the network.
  std::function<int()> offline;
  std::function<int(const AdminEndpoint&)> online;
  CLI::App* prof = app.add_subcommand("prof", "profiler captures")->require_subcommand(1);
  std::string prof_interval = "100ms";
  std::string prof_duration = "10s";
  std::string prof_out;
  std::string prof_in;
  size_t prof_top = 10;
  bool prof_rates = false;
  // Counter rates span at least this much (report and plot: 100 ms; csv: each sample).
  std::string prof_rate_window;
  const auto rate_window_ns = [&](uint64_t fallback_ns) -> std::optional<uint64_t> {
    if (prof_rate_window.empty()) return fallback_ns;
    if (prof_rate_window == "0") return 0;
    const auto ms = herald::tools::parse_duration_ms(prof_rate_window);
    if (!ms) return std::nullopt;
    return *ms * 1'000'000;
  };
  const char* kRateWindowHelp =
      "counter rates over at least this window (e.g. 100ms, 1s; 0: each sample against the "
      "previous)";
  const auto bad_rate_window = [] {
    std::cerr << "heraldctl: --rate-window takes 0, 10ms, 1s, 2m\n";
    return 2;
  };
  auto* prof_capture = prof->add_subcommand("capture", "take a capture and download it");
  prof_capture->add_option("--interval", prof_interval, "sampling interval (10ms..60s)");
  prof_capture->add_option("--duration", prof_duration, "how long to capture (e.g. 30s)");
  prof_capture->add_option("-o,--output", prof_out, "the .hprof file to write")->required();
  std::string prof_flame;
  CLI::Option* prof_flame_opt =
      prof_capture
          ->add_option("--flame", prof_flame,
                       "also a perf CPU profile of the dataplane, at HZ samples/s (default 499)")
          ->expected(0, 1);
  prof_capture->callback([&] {
    online = [&](const AdminEndpoint& endpoint) {
      const auto interval = herald::tools::parse_duration_ms(prof_interval);
      const auto duration = herald::tools::parse_duration_ms(prof_duration);
      if (!interval || !duration) {
        std::cerr << "heraldctl: --interval and --duration take 10ms, 30s, 2m\n";
        return 2;
      }
      AdminEndpoint e = endpoint;
      // The download comes after the capture: wait for the capture plus the usual timeout.
      const uint64_t wait_ms = uint64_t{e.timeout_ms} + *duration;
      e.timeout_ms = static_cast<uint32_t>(std::min<uint64_t>(wait_ms, UINT32_MAX));
      std::optional<uint32_t> flame_hz;
      if (prof_flame_opt->count() > 0) {
        flame_hz = 0;  // the node's default frequency
        if (!prof_flame.empty()) {
          uint32_t hz = 0;
          const auto [ptr, ec] =
              std::from_chars(prof_flame.data(), prof_flame.data() + prof_flame.size(), hz);
          if (ec != std::errc() || ptr != prof_flame.data() + prof_flame.size() || hz == 0) {
            std::cerr << "heraldctl: --flame takes a frequency in Hz (e.g. 499)\n";
            return 2;
          }
          flame_hz = hz;
        }
      }
      const absl::Status s =
          herald::tools::capture_to_file(e, *interval, *duration, prof_out, std::cerr, flame_hz);
      if (!s.ok()) {
        std::cerr << "heraldctl: " << s.message() << "\n";
        return s.code() == absl::StatusCode::kUnavailable ? 2 : 1;
      }
      return 0;
    };
  });
  auto* prof_report = prof->add_subcommand("report", "min/median/p99/max per series, top movers");
  prof_report->add_option("file", prof_in)->required();
  prof_report->add_option("--top", prof_top, "how many top movers");
  prof_report->add_option("--rate-window", prof_rate_window, kRateWindowHelp);
  prof_report->callback([&] {
    offline = [&] {
      const auto window = rate_window_ns(herald::tools::kDefaultRateWindowNs);
      if (!window) return bad_rate_window();
      auto c = herald::tools::read_capture_file(prof_in);
      if (!c.ok()) {
        std::cerr << "heraldctl: " << c.status().message() << "\n";
        return 1;
      }
      herald::tools::write_report(*c, prof_top, std::cout, prof_in, *window);
      return 0;
    };
  });
  auto* prof_csv = prof->add_subcommand("csv", "the capture as CSV, one row per sample");
  prof_csv->add_option("file", prof_in)->required();
  prof_csv->add_option("-o,--output", prof_out, "CSV file (else standard output)");
  prof_csv->add_flag("--rates", prof_rates, "counters as per-second rates");
  prof_csv->add_option("--rate-window", prof_rate_window, kRateWindowHelp);
  prof_csv->callback([&] {
    offline = [&] {
      const auto window = rate_window_ns(0);
      if (!window) return bad_rate_window();
      auto c = herald::tools::read_capture_file(prof_in);
      if (!c.ok()) {
        std::cerr << "heraldctl: " << c.status().message() << "\n";
        return 1;
      }
      if (prof_out.empty()) {
        herald::tools::write_csv(*c, prof_rates, std::cout, *window);
        return 0;
      }
      std::ofstream out(prof_out, std::ios::trunc);
      herald::tools::write_csv(*c, prof_rates, out, *window);
      out.close();
      if (!out) {
        std::cerr << "heraldctl: cannot write " << prof_out << "\n";
        return 2;
      }
      return 0;
    };
  });

  // plot and flame: documents written whole to -o (a failed write is reported, exit 2).
  auto write_output = [](const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) {
      std::cerr << "heraldctl: cannot write " << path << "\n";
      return 2;
    }
    return 0;
  };
  std::vector<std::string> prof_series;
  int prof_width = 0;
  auto* prof_plot =
      prof->add_subcommand("plot", "charts grouped by subsystem, as one .svg or .html file");
  prof_plot->add_option("file", prof_in)->required();
  prof_plot->add_option("-o,--output", prof_out, "run.svg or run.html")->required();
  prof_plot->add_option("--series", prof_series, "only series matching this glob (repeatable)");
  prof_plot->add_option("--width", prof_width, "chart width in pixels")
      ->check(CLI::Range(400, 4000));
  prof_plot->add_option("--rate-window", prof_rate_window, kRateWindowHelp);
  prof_plot->callback([&] {
    offline = [&] {
      const auto window = rate_window_ns(herald::tools::kDefaultRateWindowNs);
      if (!window) return bad_rate_window();
      const auto ends_with = [&](std::string_view suffix) {
        return prof_out.size() >= suffix.size() &&
               prof_out.compare(prof_out.size() - suffix.size(), suffix.size(), suffix) == 0;
      };
      const bool svg = ends_with(".svg");
      if (!svg && !ends_with(".html") && !ends_with(".htm")) {
        std::cerr << "heraldctl: -o takes a .svg or .html file name\n";
        return 2;
      }
      auto c = herald::tools::read_capture_file(prof_in);
      if (!c.ok()) {
        std::cerr << "heraldctl: " << c.status().message() << "\n";
        return 1;
      }
      if (herald::tools::select_series(*c, prof_series).empty()) {
        std::cerr << "heraldctl: no series of " << prof_in << " matches --series\n";
        return 1;
      }
      herald::tools::PlotOptions options;
      if (prof_width != 0) options.width_px = prof_width;
      options.series_globs = prof_series;
      options.source = prof_in;
      options.rate_window_ns = *window;
      return write_output(prof_out, svg ? herald::tools::render_plot_svg(*c, options)
                                        : herald::tools::render_plot_html(*c, options));
    };
  });
  bool prof_folded = false;
  double prof_min_width = 0.1;
  auto* prof_flame_cmd =
      prof->add_subcommand("flame", "the capture's CPU profile as a flame graph");
  prof_flame_cmd->add_option("file", prof_in)->required();
  prof_flame_cmd->add_option("-o,--output", prof_out,
                             "flame.svg (with --folded: text, else stdout)");
  prof_flame_cmd->add_flag("--folded", prof_folded, "folded stacks for flamegraph.pl/speedscope");
  prof_flame_cmd->add_option("--width", prof_width, "width in pixels")
      ->check(CLI::Range(400, 4000));
  prof_flame_cmd->add_option("--min-width", prof_min_width, "hide frames under this % of samples")
      ->check(CLI::Range(0.0, 100.0));
  prof_flame_cmd->callback([&] {
    offline = [&] {
      if (!prof_folded && prof_out.empty()) {
        std::cerr << "heraldctl: prof flame needs -o flame.svg (or --folded)\n";
        return 2;
      }
      auto c = herald::tools::read_capture_file(prof_in);
      if (!c.ok()) {
        std::cerr << "heraldctl: " << c.status().message() << "\n";
        return 1;
      }
      if (!c->flame) {
        std::cerr << "heraldctl: " << prof_in << " has no CPU profile (none was asked for)\n";
        return 1;
      }
      if (c->flame->status != "ok") {
        std::cerr << "heraldctl: " << prof_in << " has no CPU profile: " << c->flame->status
                  << "\n";
        return 1;
      }
      if (prof_folded) {
        if (prof_out.empty()) {
          herald::tools::write_folded(c->flame->stacks, std::cout);
          return 0;
        }
        std::ostringstream folded;
        herald::tools::write_folded(c->flame->stacks, folded);
        return write_output(prof_out, folded.str());
      }
      herald::tools::FlameOptions options;
      if (prof_width != 0) options.width_px = prof_width;
      options.min_fraction = prof_min_width / 100;
      options.title = "CPU flame graph: " + prof_in;
      options.subtitle = "node " + c->meta.node + ", pid " + std::to_string(c->flame->pid) + ", " +
                         std::to_string(c->flame->frequency_hz) + " Hz";
      return write_output(prof_out, herald::tools::render_flame_svg(c->flame->stacks, options));
    };
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (offline) return offline();

  // Where the node is and which key to use.
  herald::config::Config node_config = herald::config::default_config();
  if (!config_path.empty()) {
    absl::StatusOr<herald::config::Config> loaded = herald::config::load_config(config_path);
    if (!loaded.ok()) {
      std::cerr << "heraldctl: " << loaded.status().message() << "\n";
      return 2;
    }
    node_config = *std::move(loaded);
  }
  AdminEndpoint endpoint;
  endpoint.timeout_ms = timeout_s * 1000;
  const auto* cp = node_config->controlplane();
  const std::string admin_url =
      url.empty() ? "http://" + cp->admin_address()->str() + ":" + std::to_string(cp->admin_port())
                  : url;
  if (absl::Status s = herald::tools::parse_admin_url(admin_url, endpoint); !s.ok()) {
    std::cerr << "heraldctl: " << s.message() << "\n";
    return 2;
  }
  std::string key;
  if (!key_file.empty()) {
    if (!read_file(key_file, key)) {
      std::cerr << "heraldctl: cannot read the key file " << key_file << "\n";
      return 2;
    }
  } else if (const char* env = std::getenv("HERALD_API_KEY"); env != nullptr && *env != '\0') {
    key = env;
  } else {
    const std::string dir = data_dir.empty() ? node_config->node()->data_dir()->str() : data_dir;
    (void)read_file(dir + "/admin.key", key);  // absent: the node answers 401, which says why
  }
  endpoint.api_key = trim(key);
  if (online) return online(endpoint);
  if (list_all_of == "accounts") {
    return list_all<herald::admin::AccountList>(endpoint, "/v1/accounts",
                                                "herald.admin.AccountList", page_limit, page_after);
  }
  if (list_all_of == "groups") {
    return list_all<herald::admin::GroupList>(endpoint, "/v1/groups", "herald.admin.GroupList",
                                              page_limit, page_after);
  }
  return run(endpoint, method, target, body);
}
