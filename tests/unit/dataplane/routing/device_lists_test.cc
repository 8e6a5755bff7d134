// DeviceListCache on its own: requests and waiters, answers, pushes crossing answers, timeouts,
// every limit at its edge, LRU eviction, negative caching, stale and foreign responses.
#include "dataplane/routing/device_lists.h"

#include <gtest/gtest.h>

#include <vector>

namespace herald::dataplane::routing {
namespace {

constexpr uint64_t kInstance = 77;
constexpr uint64_t kMs = 1'000'000;

struct Answer {
  uint64_t waiter;
  uint64_t account;
  DeviceListResult result;
  std::vector<uint32_t> devices;
};

struct FakeSink : DeviceListSink {
  struct Request {
    uint64_t id;
    uint64_t account;
  };
  std::vector<Request> requests;
  std::vector<Answer> answers;
  bool refuse = false;
  bool send_device_list_request(uint64_t request_id, const wire::AccountId& account) override {
    if (refuse) return false;
    requests.push_back({request_id, account.hi()});
    return true;
  }
  void device_list_answer(uint64_t waiter, const wire::AccountId& account, DeviceListResult result,
                          std::span<const uint32_t> devices) override {
    answers.push_back({waiter, account.hi(), result, {devices.begin(), devices.end()}});
  }
};

wire::AccountId acc(uint64_t a) {
  return wire::AccountId(a, a ^ 0x55);
}

struct Records {
  flatbuffers::FlatBufferBuilder fbb;
  const ipc::DeviceListResponse* response(uint64_t request_id, uint64_t account,
                                          const std::vector<uint32_t>& devices, uint64_t version,
                                          ipc::DeviceListStatus status = ipc::DeviceListStatus::Ok,
                                          uint64_t instance = kInstance) {
    fbb.Clear();
    const wire::AccountId id = acc(account);
    fbb.Finish(ipc::CreateDeviceListResponse(fbb, request_id, &id, fbb.CreateVector(devices),
                                             version, status, instance));
    return flatbuffers::GetRoot<ipc::DeviceListResponse>(fbb.GetBufferPointer());
  }
  const ipc::DeviceListPush* push(uint64_t account, const std::vector<uint32_t>& devices,
                                  uint64_t version) {
    fbb.Clear();
    const wire::AccountId id = acc(account);
    fbb.Finish(ipc::CreateDeviceListPush(fbb, &id, fbb.CreateVector(devices), version));
    return flatbuffers::GetRoot<ipc::DeviceListPush>(fbb.GetBufferPointer());
  }
};

DeviceListOptions options() {
  DeviceListOptions o;
  o.max_accounts = 4;
  o.max_devices_per_account = 3;
  o.max_pending_requests = 2;
  o.max_waiters = 4;
  o.request_timeout_ns = 100 * kMs;
  o.unknown_ttl_ns = 1000 * kMs;
  o.instance_id = kInstance;
  return o;
}

TEST(DeviceLists, MissAsksOnceAndAnswersEveryWaiterThenHits) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);
  Records r;
  EXPECT_EQ(cache.lookup(acc(1), 10, 0).status, LookupStatus::kWaiting);
  EXPECT_EQ(cache.lookup(acc(1), 11, 0).status, LookupStatus::kWaiting);
  ASSERT_EQ(sink.requests.size(), 1u);  // one request for both waiters
  EXPECT_EQ(sink.requests[0].account, 1u);
  cache.on_response(*r.response(sink.requests[0].id, 1, {3, 1, 2}, 5), 0);
  ASSERT_EQ(sink.answers.size(), 2u);
  EXPECT_EQ(sink.answers[0].waiter, 10u);
  EXPECT_EQ(sink.answers[1].waiter, 11u);
  EXPECT_EQ(sink.answers[0].result, DeviceListResult::kOk);
  EXPECT_EQ(sink.answers[0].devices, (std::vector<uint32_t>{1, 2, 3}));  // sorted
  const DeviceListLookup hit = cache.lookup(acc(1), 12, 0);
  ASSERT_EQ(hit.status, LookupStatus::kHit);
  EXPECT_EQ(std::vector<uint32_t>(hit.devices.begin(), hit.devices.end()),
            (std::vector<uint32_t>{1, 2, 3}));
  EXPECT_EQ(cache.pending_requests(), 0u);
  EXPECT_EQ(cache.waiters(), 0u);
  // The same answer again is stale (its request is finished).
  cache.on_response(*r.response(sink.requests[0].id, 1, {1}, 6), 0);
  EXPECT_EQ(cache.stats().responses_stale, 1u);
  EXPECT_EQ(cache.lookup(acc(1), 13, 0).devices.size(), 3u);
}

TEST(DeviceLists, PushReplacesNewerOnlyAndIgnoresUncachedAccounts) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);
  Records r;
  (void)cache.lookup(acc(1), 1, 0);
  cache.on_response(*r.response(sink.requests[0].id, 1, {1}, 5), 0);
  cache.on_push(*r.push(1, {1, 2}, 6), 0);
  EXPECT_EQ(cache.lookup(acc(1), 2, 0).devices.size(), 2u);
  cache.on_push(*r.push(1, {1}, 6), 0);  // not newer
  cache.on_push(*r.push(1, {1}, 4), 0);  // older
  EXPECT_EQ(cache.lookup(acc(1), 3, 0).devices.size(), 2u);
  cache.on_push(*r.push(9, {1}, 1), 0);  // nobody here asked for account 9
  EXPECT_EQ(cache.cached(), 1u);
  EXPECT_EQ(cache.stats().pushes_applied, 1u);
  EXPECT_EQ(cache.stats().pushes_stale, 2u);
  EXPECT_EQ(cache.stats().pushes_uncached, 1u);
}

TEST(DeviceLists, PushAnswersAPendingRequestAndANewerPushBeatsTheLateResponse) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);
  Records r;
  (void)cache.lookup(acc(1), 1, 0);
  cache.on_push(*r.push(1, {1, 4}, 8), 0);  // crossed the request on the rings
  ASSERT_EQ(sink.answers.size(), 1u);
  EXPECT_EQ(sink.answers[0].devices, (std::vector<uint32_t>{1, 4}));
  cache.on_response(*r.response(sink.requests[0].id, 1, {1}, 7), 0);  // late, older
  EXPECT_EQ(cache.lookup(acc(1), 2, 0).devices.size(), 2u);
  // A response older than the cached list (a push landed between request and answer) answers
  // with the cached, newer list.
  (void)cache.lookup(acc(2), 3, 0);
  const uint64_t id = sink.requests.back().id;
  cache.on_response(*r.response(id, 2, {1}, 3), 0);
  cache.on_push(*r.push(2, {1, 2}, 4), 0);
  EXPECT_EQ(cache.lookup(acc(2), 4, 0).devices.size(), 2u);
}

TEST(DeviceLists, TimeoutAnswersWaitersWithAnError) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);
  Records r;
  (void)cache.lookup(acc(1), 1, 0);
  cache.poll(99 * kMs);
  EXPECT_TRUE(sink.answers.empty());
  cache.poll(100 * kMs);  // the deadline itself
  ASSERT_EQ(sink.answers.size(), 1u);
  EXPECT_EQ(sink.answers[0].result, DeviceListResult::kTimeout);
  EXPECT_EQ(cache.stats().timeouts, 1u);
  // The late answer is stale and installs nothing; the next lookup asks again.
  cache.on_response(*r.response(sink.requests[0].id, 1, {1}, 1), 0);
  EXPECT_EQ(cache.stats().responses_stale, 1u);
  EXPECT_EQ(cache.lookup(acc(1), 2, 200 * kMs).status, LookupStatus::kWaiting);
  EXPECT_EQ(sink.requests.size(), 2u);
  EXPECT_NE(sink.requests[0].id, sink.requests[1].id);  // same slot, new generation
}

// poll() skips its scan until the earliest deadline (a busy worker calls it every turn): each
// request still times out at its own deadline, including one made while poll() answers another.
TEST(DeviceLists, EveryRequestTimesOutAtItsOwnDeadline) {
  struct LookUpOnTimeout : FakeSink {
    DeviceListCache* cache = nullptr;
    uint64_t now_ns = 0;
    void device_list_answer(uint64_t waiter, const wire::AccountId& account,
                            DeviceListResult result, std::span<const uint32_t> devices) override {
      FakeSink::device_list_answer(waiter, account, result, devices);
      if (waiter == 1) (void)cache->lookup(acc(3), 3, now_ns);  // asked during poll()
    }
  } sink;
  DeviceListCache cache(options(), sink);
  sink.cache = &cache;
  (void)cache.lookup(acc(1), 1, 0);         // deadline 100 ms
  (void)cache.lookup(acc(2), 2, 50 * kMs);  // deadline 150 ms
  cache.poll(99 * kMs);
  EXPECT_TRUE(sink.answers.empty());
  sink.now_ns = 100 * kMs;
  cache.poll(100 * kMs);  // times out 1, whose answer asks for 3 (deadline 200 ms)
  ASSERT_EQ(sink.answers.size(), 1u);
  EXPECT_EQ(sink.answers[0].waiter, 1u);
  EXPECT_EQ(sink.requests.size(), 3u);
  cache.poll(149 * kMs);
  EXPECT_EQ(sink.answers.size(), 1u);
  cache.poll(150 * kMs);
  ASSERT_EQ(sink.answers.size(), 2u);
  EXPECT_EQ(sink.answers[1].waiter, 2u);
  cache.poll(199 * kMs);
  EXPECT_EQ(sink.answers.size(), 2u);
  cache.poll(200 * kMs);
  ASSERT_EQ(sink.answers.size(), 3u);
  EXPECT_EQ(sink.answers[2].waiter, 3u);
  EXPECT_EQ(cache.stats().timeouts, 3u);
  EXPECT_EQ(cache.pending_requests(), 0u);
  // Nothing pending: a later request made after an idle stretch times out too.
  (void)cache.lookup(acc(4), 4, 1000 * kMs);
  cache.poll(1099 * kMs);
  EXPECT_EQ(sink.answers.size(), 3u);
  cache.poll(1100 * kMs);
  EXPECT_EQ(sink.answers.size(), 4u);
}

TEST(DeviceLists, RefusedRequestIsSentAgainOnPoll) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);
  sink.refuse = true;
  EXPECT_EQ(cache.lookup(acc(1), 1, 0).status, LookupStatus::kWaiting);
  EXPECT_EQ(cache.stats().request_send_failed, 1u);
  sink.refuse = false;
  cache.poll(10 * kMs);
  ASSERT_EQ(sink.requests.size(), 1u);
  cache.poll(20 * kMs);
  EXPECT_EQ(sink.requests.size(), 1u);  // sent once only
}

TEST(DeviceLists, PendingAndWaiterLimitsAtTheirEdges) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);  // 2 requests, 4 waiters
  EXPECT_EQ(cache.lookup(acc(1), 1, 0).status, LookupStatus::kWaiting);
  EXPECT_EQ(cache.lookup(acc(2), 2, 0).status, LookupStatus::kWaiting);
  EXPECT_EQ(cache.lookup(acc(3), 3, 0).status, LookupStatus::kBusy);  // third account
  EXPECT_EQ(cache.stats().busy_requests, 1u);
  EXPECT_EQ(cache.lookup(acc(1), 4, 0).status, LookupStatus::kWaiting);
  EXPECT_EQ(cache.lookup(acc(2), 5, 0).status, LookupStatus::kWaiting);
  EXPECT_EQ(cache.lookup(acc(2), 6, 0).status, LookupStatus::kBusy);  // fifth waiter
  EXPECT_EQ(cache.stats().busy_waiters, 1u);
  EXPECT_EQ(cache.waiters(), 4u);
  cache.poll(1000 * kMs);
  EXPECT_EQ(sink.answers.size(), 4u);  // kBusy lookups are never answered
  EXPECT_EQ(cache.waiters(), 0u);
  EXPECT_EQ(cache.pending_requests(), 0u);
}

TEST(DeviceLists, ListOverTheDeviceLimitIsAnErrorNeverTruncated) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);  // 3 devices per account
  Records r;
  (void)cache.lookup(acc(1), 1, 0);
  cache.on_response(*r.response(sink.requests[0].id, 1, {1, 2, 3, 4}, 1), 0);
  ASSERT_EQ(sink.answers.size(), 1u);
  EXPECT_EQ(sink.answers[0].result, DeviceListResult::kError);
  EXPECT_EQ(cache.cached(), 0u);
  (void)cache.lookup(acc(2), 2, 0);
  cache.on_response(*r.response(sink.requests[1].id, 2, {1, 2, 3}, 1), 0);  // == limit
  EXPECT_EQ(sink.answers[1].result, DeviceListResult::kOk);
  // A push over the limit drops the cached (now outdated) list.
  cache.on_push(*r.push(2, {1, 2, 3, 4}, 2), 0);
  EXPECT_EQ(cache.cached(), 0u);
  EXPECT_EQ(cache.stats().too_many_devices, 2u);
}

TEST(DeviceLists, LeastRecentlyUsedIsEvicted) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);  // 4 accounts
  Records r;
  auto fill = [&](uint64_t a) {
    (void)cache.lookup(acc(a), a, 0);
    cache.on_response(*r.response(sink.requests.back().id, a, {1}, 1), 0);
  };
  for (uint64_t a = 1; a <= 4; ++a) fill(a);
  EXPECT_EQ(cache.lookup(acc(1), 0, 0).status, LookupStatus::kHit);  // 2 is now the oldest
  fill(5);
  EXPECT_EQ(cache.cached(), 4u);
  EXPECT_EQ(cache.stats().evictions, 1u);
  EXPECT_EQ(cache.lookup(acc(1), 0, 0).status, LookupStatus::kHit);
  EXPECT_EQ(cache.lookup(acc(3), 0, 0).status, LookupStatus::kHit);
  EXPECT_EQ(cache.lookup(acc(2), 0, 0).status, LookupStatus::kWaiting);
}

TEST(DeviceLists, UnknownAccountIsRememberedForItsTtl) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);
  Records r;
  (void)cache.lookup(acc(1), 1, 0);
  cache.on_response(
      *r.response(sink.requests[0].id, 1, {}, 0, ipc::DeviceListStatus::UnknownAccount), 0);
  EXPECT_EQ(sink.answers[0].result, DeviceListResult::kUnknownAccount);
  EXPECT_EQ(cache.lookup(acc(1), 2, 999 * kMs).status, LookupStatus::kUnknownAccount);
  EXPECT_EQ(sink.requests.size(), 1u);
  EXPECT_EQ(cache.lookup(acc(1), 3, 1000 * kMs).status, LookupStatus::kWaiting);  // expired
  EXPECT_EQ(sink.requests.size(), 2u);
  // The account registers meanwhile: a push replaces a cached "unknown" too.
  cache.on_response(
      *r.response(sink.requests[1].id, 1, {}, 0, ipc::DeviceListStatus::UnknownAccount),
      1000 * kMs);
  cache.on_push(*r.push(1, {1}, 1), 1000 * kMs);
  EXPECT_EQ(cache.lookup(acc(1), 4, 1000 * kMs).status, LookupStatus::kHit);
}

TEST(DeviceLists, ForeignRejectedAndMismatchedResponses) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);
  Records r;
  (void)cache.lookup(acc(1), 1, 0);
  const uint64_t id = sink.requests[0].id;
  cache.on_response(*r.response(id, 1, {1}, 1, ipc::DeviceListStatus::Ok, kInstance + 1), 0);
  EXPECT_EQ(cache.stats().responses_other_instance, 1u);
  EXPECT_TRUE(sink.answers.empty());
  cache.on_response(*r.response(id ^ (uint64_t{1} << 40), 1, {1}, 1), 0);  // other generation
  EXPECT_EQ(cache.stats().responses_stale, 1u);
  cache.on_response(*r.response(id, 2, {1}, 1), 0);  // names another account
  ASSERT_EQ(sink.answers.size(), 1u);
  EXPECT_EQ(sink.answers[0].result, DeviceListResult::kError);
  EXPECT_EQ(cache.stats().malformed, 1u);
  (void)cache.lookup(acc(1), 2, 0);
  cache.on_response(*r.response(sink.requests[1].id, 1, {}, 0, ipc::DeviceListStatus::Rejected), 0);
  EXPECT_EQ(sink.answers[1].result, DeviceListResult::kError);
  EXPECT_EQ(cache.stats().responses_rejected, 1u);
  EXPECT_EQ(cache.cached(), 0u);
}

TEST(DeviceLists, ClearDropsCachedListsButKeepsRequestsInFlight) {
  FakeSink sink;
  DeviceListCache cache(options(), sink);
  Records r;
  (void)cache.lookup(acc(1), 1, 0);
  cache.on_response(*r.response(sink.requests[0].id, 1, {1}, 1), 0);
  (void)cache.lookup(acc(2), 2, 0);
  cache.clear();
  EXPECT_EQ(cache.cached(), 0u);
  EXPECT_EQ(cache.stats().cleared, 1u);
  EXPECT_EQ(cache.pending_requests(), 1u);
  cache.on_response(*r.response(sink.requests[1].id, 2, {2}, 1), 0);
  ASSERT_EQ(sink.answers.size(), 2u);
  EXPECT_EQ(sink.answers[1].devices, (std::vector<uint32_t>{2}));
  EXPECT_EQ(cache.lookup(acc(1), 3, 0).status, LookupStatus::kWaiting);  // asked again
}

// An answer that looks the same account up again from inside the callback.
struct ReentrantSink : FakeSink {
  DeviceListCache* cache = nullptr;
  int hits = 0;
  void device_list_answer(uint64_t waiter, const wire::AccountId& account, DeviceListResult result,
                          std::span<const uint32_t> devices) override {
    FakeSink::device_list_answer(waiter, account, result, devices);
    if (cache->lookup(account, waiter + 100, 0).status == LookupStatus::kHit) ++hits;
  }
};

TEST(DeviceLists, AnswerMayLookUpAgain) {
  ReentrantSink sink;
  DeviceListCache cache(options(), sink);
  sink.cache = &cache;
  Records r;
  (void)cache.lookup(acc(1), 1, 0);
  (void)cache.lookup(acc(1), 2, 0);
  cache.on_response(*r.response(sink.requests[0].id, 1, {1, 2}, 1), 0);
  EXPECT_EQ(sink.hits, 2);
  EXPECT_EQ(sink.answers[1].devices, (std::vector<uint32_t>{1, 2}));
}

}  // namespace
}  // namespace herald::dataplane::routing
