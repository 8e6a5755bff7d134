// Names and statuses of the request parser's rejection reasons, from the X-macro table.
#include "controlplane/http/parse_error.h"

#include <array>

namespace herald::http {
namespace {

struct ReasonEntry {
  std::string_view name;
  int status;
};

constexpr std::array<ReasonEntry, kParseErrorCount + 1> kReasons = {
    {{"none", 0},
#define HERALD_HTTP_X(e, name, status) {#name, status},
     HERALD_HTTP_PARSE_ERRORS(HERALD_HTTP_X)
#undef HERALD_HTTP_X
    }};

}  // namespace

std::string_view parse_error_name(ParseError error) {
  const size_t index = static_cast<size_t>(error);
  return index < kReasons.size() ? kReasons[index].name : std::string_view("unknown");
}

int parse_error_status(ParseError error) {
  const size_t index = static_cast<size_t>(error);
  return index < kReasons.size() ? kReasons[index].status : 400;
}

}  // namespace herald::http
