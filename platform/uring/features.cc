// Features::summary(): the one-line account of what io_uring the loop runs on.
#include "platform/uring/features.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace herald::uring {
namespace {

void add_flag(std::string* out, bool on, const char* name) {
  if (!on) return;
  if (!out->empty() && out->back() != '=') out->push_back('|');
  out->append(name);
}

}  // namespace

std::string Features::summary() const {
  std::string setup = "setup=";
  add_flag(&setup, single_issuer, "single_issuer");
  add_flag(&setup, defer_taskrun, "defer_taskrun");
  add_flag(&setup, coop_taskrun, "coop_taskrun");
  add_flag(&setup, taskrun_flag, "taskrun_flag");
  add_flag(&setup, submit_all, "submit_all");
  if (setup.back() == '=') setup.append("none");

  std::string feat = "feat=";
  add_flag(&feat, single_mmap, "single_mmap");
  add_flag(&feat, nodrop, "nodrop");
  add_flag(&feat, submit_stable, "submit_stable");
  add_flag(&feat, fast_poll, "fast_poll");
  add_flag(&feat, ext_arg, "ext_arg");
  add_flag(&feat, cqe_skip, "cqe_skip");
  if (feat.back() == '=') feat.append("none");

  auto mode = [](bool multishot) { return multishot ? "multishot" : "single_shot"; };
  return absl::StrCat(setup, " ", feat, " sq=", sq_entries, " cq=", cq_entries,
                      " accept=", mode(use_multishot_accept), " recv=", mode(use_multishot_recv),
                      " poll=", mode(use_multishot_poll), " buf_ring=", buf_ring ? "yes" : "no",
                      " cancel_any=", cancel_any ? "yes" : "no",
                      " send_zc=", send_zc ? "yes" : "no", " last_opcode=", last_opcode);
}

}  // namespace herald::uring
