// heraldctl: the operator's command line for a Herald node's admin API.
//
//   heraldctl health
//   heraldctl config set node.json --comment "raise limits" && heraldctl config commit 7
//   --confirm-timeout 120 heraldctl keys create ci-reader --scope read
//
// The API key comes from --key-file, else $HERALD_API_KEY, else <data-dir>/admin.key (the key
// the control plane writes at first start). The address comes from --url, else the node
// config's controlplane.admin_address/admin_port (--config), else the embedded defaults.
// Exit status: 0 for a 2xx answer, 1 for an error answer (its error code and message go to
// stderr), 2 when the node cannot be reached or the command line is wrong.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "platform/config/config.h"
#include "tools/heraldctl/admin_client.h"

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
  const std::string error = field_of(response->body, "error");
  if (error.empty()) {
    std::cerr << "heraldctl: HTTP " << response->status << ": " << response->body << "\n";
  } else {
    std::cerr << "heraldctl: HTTP " << response->status << " " << error << ": "
              << field_of(response->body, "message");
    if (const std::string field = field_of(response->body, "field"); !field.empty()) {
      std::cerr << " (field " << field << ")";
    }
    std::cerr << "\n";
  }
  return 1;
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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }

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
  return run(endpoint, method, target, body);
}
