// Names of the stack's drop reasons and counters, from the tables in net_stats.h.
#include "dataplane/net/net_stats.h"

namespace herald::net {
namespace {

constexpr std::string_view kDropNames[] = {
#define HERALD_NET_NAME(e, name, doc) name,
    HERALD_NET_DROPS(HERALD_NET_NAME)
#undef HERALD_NET_NAME
};
static_assert(std::size(kDropNames) == kDropReasonCount);

constexpr std::string_view kCounterNames[] = {
#define HERALD_NET_NAME(e, name, doc) name,
    HERALD_NET_COUNTERS(HERALD_NET_NAME)
#undef HERALD_NET_NAME
};
static_assert(std::size(kCounterNames) == kNetCounterCount);

}  // namespace

std::string_view drop_reason_name(DropReason reason) {
  const auto i = static_cast<size_t>(reason);
  return i < kDropReasonCount ? kDropNames[i] : "none";
}

std::string_view net_counter_name(NetCounter counter) {
  const auto i = static_cast<size_t>(counter);
  return i < kNetCounterCount ? kCounterNames[i] : "invalid";
}

}  // namespace herald::net
