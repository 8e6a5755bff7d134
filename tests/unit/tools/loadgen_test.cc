// herald-loadgen's pure parts: the Poisson schedule, the verdict merge (lost, duplicates,
// redeliveries, group fan-out), the result pipe format, percentiles across workers, the flags,
// the message body, and the Herald protocol adapter fed frames in arbitrary pieces.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "schemas/codec/frame_builder.h"
#include "tools/loadgen/herald_protocol.h"
#include "tools/loadgen/message_body.h"
#include "tools/loadgen/mqtt_protocol.h"
#include "tools/loadgen/options.h"
#include "tools/loadgen/results.h"
#include "tools/loadgen/schedule.h"

namespace herald::tools::loadgen {
namespace {

// ---- schedule -----------------------------------------------------------------------------

TEST(PoissonSchedule, GapsAreExponentialAtTheRate) {
  constexpr double kRate = 1000;  // per second: mean gap 1 ms
  constexpr int kArrivals = 200'000;
  PoissonSchedule s(kRate, 0, 42);
  std::vector<double> gaps;
  int64_t last = 0;
  for (int i = 0; i < kArrivals; ++i) {
    gaps.push_back(static_cast<double>(s.next_ns() - last));
    last = s.next_ns();
    s.advance();
  }
  const double mean = std::accumulate(gaps.begin(), gaps.end(), 0.0) / kArrivals;
  double var = 0;
  for (double g : gaps) var += (g - mean) * (g - mean);
  var /= kArrivals;
  EXPECT_NEAR(mean, 1e6, 1e6 * 0.01);
  // Exponential: the standard deviation equals the mean; P(gap > 2 mean) = e^-2.
  EXPECT_NEAR(std::sqrt(var) / mean, 1.0, 0.02);
  const double over = std::count_if(gaps.begin(), gaps.end(), [](double g) { return g > 2e6; });
  EXPECT_NEAR(over / kArrivals, std::exp(-2.0), 0.005);
  // Counts per 1 s window are Poisson(1000): mean and variance both about 1000.
  std::vector<int> counts(static_cast<size_t>(last / 1'000'000'000) + 1, 0);
  double t = 0;
  for (double g : gaps) {
    t += g;
    ++counts[static_cast<size_t>(t / 1e9)];
  }
  counts.pop_back();  // the last window is partial
  const double cm = std::accumulate(counts.begin(), counts.end(), 0.0) / counts.size();
  double cv = 0;
  for (int c : counts) cv += (c - cm) * (c - cm);
  cv /= counts.size();
  EXPECT_NEAR(cm, 1000, 15);
  EXPECT_NEAR(cv / cm, 1.0, 0.35);
}

TEST(PoissonSchedule, SameSeedSameScheduleAndStartsAfterStart) {
  PoissonSchedule a(50'000, 1'000'000, 7), b(50'000, 1'000'000, 7), c(50'000, 1'000'000, 8);
  bool differs = false;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(a.next_ns(), b.next_ns());
    EXPECT_GE(a.next_ns(), 1'000'000);
    differs |= a.next_ns() != c.next_ns();
    a.advance();
    b.advance();
    c.advance();
  }
  EXPECT_TRUE(differs);
}

// ---- merge and verdict --------------------------------------------------------------------

Topology one_to_one(uint32_t accounts) {
  return Topology{false, 0, accounts};
}

TEST(Merge, CleanRunIsExitZero) {
  WorkerResult a, b;
  a.acks = {{0, 3, 1}, {0, 3, 2}, {1, 2, 1}};
  a.acked = 3;
  b.deliveries = {{0, 3, 1}, {0, 3, 2}, {1, 2, 1}};
  b.delivered = 3;
  const Summary s = merge({a, b}, one_to_one(4));
  EXPECT_EQ(s.expected, 3u);
  EXPECT_EQ(s.lost, 0u);
  EXPECT_EQ(s.delivered, 3u);
  EXPECT_EQ(exit_code_of(s), 0);
}

TEST(Merge, AckedButNotDeliveredIsLost) {
  WorkerResult a, b;
  a.acks = {{0, 3, 1}, {0, 3, 2}};
  b.deliveries = {{0, 3, 1}, {0, 2, 2}};  // sequence 2 reached the wrong account
  const Summary s = merge({a, b}, one_to_one(4));
  EXPECT_EQ(s.lost, 1u);
  ASSERT_EQ(s.lost_examples.size(), 1u);
  EXPECT_EQ(s.lost_examples[0].sequence, 2u);
  EXPECT_EQ(s.lost_examples[0].target, 3u);
  // The stray delivery was never acked to its sender for that recipient pair... but the
  // message (0, 2) was acked, so it is not "delivered unacked".
  EXPECT_EQ(s.delivered_unacked, 0u);
  EXPECT_EQ(exit_code_of(s), 1);
}

TEST(Merge, DuplicatesAndRedeliveriesAreSummedAndDuplicatesExitTwo) {
  WorkerResult a, b;
  a.acks = {{0, 1, 1}};
  b.deliveries = {{0, 1, 1}};
  b.duplicates = 2;
  b.redeliveries = 5;
  a.redeliveries = 1;
  Summary s = merge({a, b}, one_to_one(2));
  EXPECT_EQ(s.duplicates, 2u);
  EXPECT_EQ(s.redeliveries, 6u);
  EXPECT_EQ(exit_code_of(s), 2);
  EXPECT_EQ(exit_code_of(s, /*restarts_expected=*/true), 0);  // reported, not fatal
  // Loss outranks duplicates.
  a.acks.push_back({0, 1, 2});
  s = merge({a, b}, one_to_one(2));
  EXPECT_EQ(exit_code_of(s), 1);
  EXPECT_EQ(exit_code_of(s, /*restarts_expected=*/true), 1);
}

TEST(Merge, DuplicatesOfResentMessagesAreRetryDuplicates) {
  // Sender 0's sequence 1 was resent after its connection dropped (across a dataplane restart
  // that is allowed to show twice); sequence 2 was sent once and still shown twice.
  WorkerResult sender, recipient;
  sender.acks = {{0, 1, 1}, {0, 1, 2}};
  sender.resent_messages = {{0, 0, 1}};
  recipient.deliveries = {{0, 1, 1}, {0, 1, 2}};
  recipient.duplicates = 2;
  recipient.duplicate_deliveries = {{0, 1, 1}, {0, 1, 2}};
  Summary s = merge({sender, recipient}, one_to_one(2));
  EXPECT_EQ(s.retry_duplicates, 1u);
  EXPECT_EQ(s.duplicates, 1u);
  EXPECT_EQ(exit_code_of(s), 2);
  EXPECT_NE(to_json(s).find("\"retry_duplicates\": 1"), std::string::npos);
  // Only the retry's: still 2 without a restart (the live dedup window should have caught it),
  // 0 when restarts are expected.
  recipient.duplicates = 1;
  recipient.duplicate_deliveries = {{0, 1, 1}};
  s = merge({sender, recipient}, one_to_one(2));
  EXPECT_EQ(s.duplicates, 0u);
  EXPECT_EQ(s.retry_duplicates, 1u);
  EXPECT_EQ(exit_code_of(s), 2);
  EXPECT_EQ(exit_code_of(s, /*restarts_expected=*/true), 0);
  // The records travel the pipe.
  auto back = deserialize(serialize(sender));
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->resent_messages.size(), 1u);
  EXPECT_EQ(back->resent_messages[0].sequence, 1u);
  back = deserialize(serialize(recipient));
  ASSERT_TRUE(back.ok());
  ASSERT_EQ(back->duplicate_deliveries.size(), 1u);
  EXPECT_EQ(back->duplicate_deliveries[0].recipient, 1u);
}

TEST(Merge, RedeliveriesAloneAreClean) {
  WorkerResult a;
  a.acks = {{0, 1, 1}};
  a.deliveries = {{0, 1, 1}};
  a.redeliveries = 3;
  EXPECT_EQ(exit_code_of(merge({a}, one_to_one(2))), 0);
}

TEST(Merge, DeliveredButNeverAckedIsCountedNotLost) {
  WorkerResult a;
  a.deliveries = {{0, 1, 9}};
  const Summary s = merge({a}, one_to_one(2));
  EXPECT_EQ(s.delivered_unacked, 1u);
  EXPECT_EQ(s.lost, 0u);
}

TEST(Merge, GroupMessagesExpectEveryOtherMember) {
  // Groups of 3 over 7 accounts: {0,1,2} {3,4,5} {6}.
  const Topology t{true, 3, 7};
  EXPECT_EQ(t.group_count(), 3u);
  EXPECT_EQ(t.group_of(5), 1u);
  EXPECT_EQ(t.group_end(2), 7u);
  WorkerResult a, b;
  a.acks = {{4, 1, 1}, {6, 2, 1}};  // 4 -> group 1 (3 and 5); 6 alone in group 2
  b.deliveries = {{4, 3, 1}};
  Summary s = merge({a, b}, t);
  EXPECT_EQ(s.expected, 2u);
  EXPECT_EQ(s.lost, 1u);
  EXPECT_EQ(s.lost_examples[0].target, 5u);
  b.deliveries.push_back({4, 5, 1});
  s = merge({a, b}, t);
  EXPECT_EQ(s.lost, 0u);
  EXPECT_EQ(exit_code_of(s), 0);
}

// ---- the pipe format and percentiles ------------------------------------------------------

TEST(Results, SerializeRoundTripsAndRejectsTruncation) {
  WorkerResult r;
  r.sent = 10;
  r.acked = 9;
  r.delivered = 8;
  r.redeliveries = 2;
  r.connect_start_ns = -5;
  r.connect_end_ns = 77;
  r.error("send_Overloaded", 3);
  r.error("server_closed");
  r.acks = {{1, 2, 3}, {4, 5, 6}};
  r.deliveries = {{7, 8, 9}};
  for (uint64_t v : {10, 200, 3000}) r.latency_us.record(v);
  r.ack_latency_us.record(5);
  const std::string bytes = serialize(r);
  auto back = deserialize(bytes);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->sent, 10u);
  EXPECT_EQ(back->acked, 9u);
  EXPECT_EQ(back->redeliveries, 2u);
  EXPECT_EQ(back->connect_start_ns, -5);
  EXPECT_EQ(back->errors.at("send_Overloaded"), 3u);
  EXPECT_EQ(back->errors.at("server_closed"), 1u);
  ASSERT_EQ(back->acks.size(), 2u);
  EXPECT_EQ(back->acks[1].sequence, 6u);
  ASSERT_EQ(back->deliveries.size(), 1u);
  EXPECT_EQ(back->deliveries[0].recipient, 8u);
  EXPECT_EQ(back->latency_us.count(), 3u);
  EXPECT_EQ(back->latency_us.max(), 3000u);
  EXPECT_EQ(back->ack_latency_us.count(), 1u);
  for (size_t cut : {size_t{0}, size_t{7}, bytes.size() / 2, bytes.size() - 1}) {
    EXPECT_FALSE(deserialize(std::string_view(bytes).substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(deserialize(bytes + "x").ok());
}

// ---- a dataplane restart (DPDK mode's link loss) ------------------------------------------

TEST(Results, LinkLossTravelsThePipe) {
  WorkerResult r;
  r.link_downs = 2;
  r.link_dropped = 5000;
  r.link_outage_ns = 1'500'000'000;
  r.relogin_ns = 3'250'000'000;
  auto back = deserialize(serialize(r));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->link_downs, 2u);
  EXPECT_EQ(back->link_dropped, 5000u);
  EXPECT_EQ(back->link_outage_ns, 1'500'000'000);
  EXPECT_EQ(back->relogin_ns, 3'250'000'000);
  // None: -1 both ways.
  back = deserialize(serialize(WorkerResult{}));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->link_outage_ns, -1);
  EXPECT_EQ(back->relogin_ns, -1);
}

TEST(Merge, RestartFigureIsTheSlowestWorkerAndNoneIfOneNeverCameBack) {
  WorkerResult a, b, idle;
  a.link_downs = b.link_downs = 1;
  a.link_dropped = 10;
  b.link_dropped = 20;
  a.link_outage_ns = 2'000'000'000;
  b.link_outage_ns = 1'000'000'000;
  a.relogin_ns = 1'000'000'000;
  b.relogin_ns = 4'000'000'000;
  Summary s = merge({a, b, idle}, one_to_one(2));
  EXPECT_EQ(s.link_downs, 2u);
  EXPECT_EQ(s.link_dropped, 30u);
  EXPECT_DOUBLE_EQ(s.link_outage_s, 2.0);
  EXPECT_DOUBLE_EQ(s.restart_relogin_s, 4.0);
  EXPECT_NE(to_json(s).find("\"restart_relogin_s\": 4.000"), std::string::npos) << to_json(s);
  EXPECT_NE(to_text(s).find("logged in again 4.000 s after"), std::string::npos);
  // A worker whose link went down and whose clients did not all come back: no figure.
  b.relogin_ns = -1;
  s = merge({a, b}, one_to_one(2));
  EXPECT_LT(s.restart_relogin_s, 0);
  EXPECT_EQ(to_json(s).find("restart_relogin_s"), std::string::npos);
  EXPECT_NE(to_json(s).find("\"link_dropped\": 30"), std::string::npos);
  // No link loss at all: nothing about links in the output.
  s = merge({idle}, one_to_one(2));
  EXPECT_EQ(to_json(s).find("link_"), std::string::npos);
  EXPECT_EQ(to_text(s).find("dataplane restart"), std::string::npos);
}

TEST(Backoff, DoublesFromMinToMaxAndJittersWithinHalfToFull) {
  EXPECT_EQ(Backoff::next_ms(0), Backoff::kMinMs);
  uint32_t ms = 0;
  std::vector<uint32_t> seen;
  for (int i = 0; i < 10; ++i) seen.push_back(ms = Backoff::next_ms(ms));
  EXPECT_EQ(seen[0], 100u);
  EXPECT_EQ(seen[1], 200u);
  EXPECT_EQ(seen[5], 3200u);
  EXPECT_EQ(seen[6], Backoff::kMaxMs);  // 6400 capped
  EXPECT_EQ(seen[9], Backoff::kMaxMs);
  // No overflow from a huge current value.
  EXPECT_EQ(Backoff::next_ms(0xffffffffu), Backoff::kMaxMs);
  // The wait is in [delay / 2, delay], both edges reachable.
  EXPECT_EQ(Backoff::jittered_ms(100, 0), 50);
  EXPECT_EQ(Backoff::jittered_ms(100, 50), 100);
  EXPECT_EQ(Backoff::jittered_ms(100, 51), 50);
  std::mt19937_64 rng(3);
  int64_t lo = 1 << 30, hi = 0;
  for (int i = 0; i < 10'000; ++i) {
    const int64_t w = Backoff::jittered_ms(5000, rng());
    lo = std::min(lo, w);
    hi = std::max(hi, w);
  }
  EXPECT_GE(lo, 2500);
  EXPECT_LE(hi, 5000);
  EXPECT_LT(lo, 2600);  // spread over the range: a storm's clients come back apart
  EXPECT_GT(hi, 4900);
}

TEST(Results, PercentilesMergeAcrossWorkers) {
  WorkerResult a, b;
  for (uint64_t v = 1; v <= 1000; ++v) a.latency_us.record(v);
  for (uint64_t v = 1001; v <= 2000; ++v) b.latency_us.record(v);
  const Summary s = merge({a, b}, one_to_one(2));
  ASSERT_EQ(s.latency_us.count(), 2000u);
  const double tolerance = 1.0 / 32;  // 16 sub-buckets: half a bucket
  EXPECT_NEAR(s.latency_us.percentile(0.5), 1000, 1000 * tolerance);
  EXPECT_NEAR(s.latency_us.percentile(0.99), 1980, 1980 * tolerance);
  EXPECT_NEAR(s.latency_us.percentile(0.999), 1998, 1998 * tolerance);
  EXPECT_EQ(s.latency_us.max(), 2000u);
  const std::string json = to_json(s);
  EXPECT_NE(json.find("\"latency_us\": {\"p50\": "), std::string::npos) << json;
  for (const char* key :
       {"\"sent\"", "\"acked\"", "\"delivered\"", "\"lost\"", "\"duplicates\"", "\"redeliveries\"",
        "\"msgs_per_s\"", "\"p999\"", "\"connects\"", "\"connect_per_s\"", "\"handshakes_per_s\"",
        "\"errors\"", "\"ack_latency_us\""}) {
    EXPECT_NE(json.find(key), std::string::npos) << key;
  }
}

// ---- flags --------------------------------------------------------------------------------

ParseOutcome parse(std::vector<std::string> args) {
  args.insert(args.begin(), "herald-loadgen");
  return parse_options(args);
}

TEST(Options, DefaultsAndDerivedProcesses) {
  ParseOutcome p = parse({"--connections", "100000", "--data-dir", "/d"});
  ASSERT_FALSE(p.exit_code.has_value()) << p.message;
  EXPECT_EQ(p.options.processes, 7u);  // ceil(100000 / 15000)
  EXPECT_EQ(p.options.scenario, Scenario::kOneToOne);
  EXPECT_EQ(p.options.admin_key_file, "/d/admin.key");
  EXPECT_EQ(p.options.chat_cert, "/d/tls/chat.crt");
  p = parse({"--connections", "15000"});
  EXPECT_EQ(p.options.processes, 1u);
  p = parse({"--connections", "15001"});
  EXPECT_EQ(p.options.processes, 2u);
}

TEST(Options, BadFlagsExit64WithTheFlagNamed) {
  struct Case {
    std::vector<std::string> args;
    const char* mentions;
  };
  const Case cases[] = {
      {{"--scenario", "burst"}, "--scenario"},
      {{"--no-such-flag"}, "no-such-flag"},
      {{"--connections", "1"}, "--connections"},
      {{"--connections", "40000", "--processes", "2"}, "--processes"},
      {{"--connections", "10", "--processes", "11"}, "--processes"},
      {{"--processes", "65"}, "--processes"},
      {{"--rate", "0"}, "--rate"},
      {{"--rate", "-5"}, "--rate"},
      {{"--duration", "-1"}, "--duration"},
      {{"--scenario", "group", "--group-size", "1"}, "--group-size"},
      {{"--scenario", "group", "--connections", "5", "--group-size", "6"}, "--group-size"},
      {{"--scenario", "offline-drain", "--connections", "11"}, "--connections"},
      {{"--scenario", "offline-drain", "--messages", "0"}, "--messages"},
      {{"--body-bytes", "31"}, "--body-bytes"},
      {{"--body-bytes", "60001"}, "--body-bytes"},
      {{"--window", "0"}, "--window"},
      {{"--target", "localhost"}, "--target"},
      {{"--target", "127.0.0.1:0"}, "--target"},
      {{"--target", "127.0.0.1:70000"}, "--target"},
      {{"--source-addresses", "127.0.0.9-127.0.0.1"}, "--source-addresses"},
      {{"--source-addresses", "127.0.0.1,,127.0.0.2"}, "--source-addresses"},
      {{"--source-addresses", "10.0.0.0-10.1.0.0"}, "--source-addresses"},
      {{"--phone-prefix", "1555"}, "--phone-prefix"},
      {{"--protocol", "xmpp"}, "--protocol"},
      {{"--protocol", "mqtt", "--scenario", "group"}, "--protocol"},
      {{"--provision", "magic"}, "--provision"},
      {{"--connect-concurrency", "0"}, "--connect-concurrency"},
      {{"--dpdk-port", "net_memif0"}, "--dpdk-address"},
      {{"--dpdk-port", "net_memif0", "--dpdk-address", "10.0.0.2/24", "--processes", "2"},
       "--processes"},
      {{"--dpdk-port", "net_memif0", "--dpdk-address", "10.0.0.2/24", "--source-addresses",
        "127.0.0.1"},
       "--source-addresses"},
      {{"--dpdk-port", "net_memif0", "--dpdk-address", "10.0.0.2/24", "--dpdk-lcores", "0"},
       "--dpdk-lcores"},
      {{"--dpdk-port", "net_memif0", "--dpdk-address", "10.0.0.2/24", "--dpdk-queues", "0"},
       "--dpdk-queues"},
      {{"--dpdk-port", "net_memif0", "--dpdk-address", "10.0.0.2/24", "--dpdk-queues", "17"},
       "--dpdk-queues"},
      {{"--dpdk-address", "10.0.0.2/33"}, "--dpdk-address"},
      {{"--dpdk-address", "10.0.0.2/0"}, "--dpdk-address"},
      {{"--dpdk-address", "10.0.0.2/x"}, "--dpdk-address"},
      {{"--dpdk-address", "0.0.0.0/24"}, "--dpdk-address"},
      {{"--dpdk-address", "host/24"}, "--dpdk-address"},
  };
  for (const Case& c : cases) {
    const ParseOutcome p = parse(c.args);
    ASSERT_TRUE(p.exit_code.has_value()) << c.args[0];
    EXPECT_EQ(*p.exit_code, kExitUsage) << c.args[0];
    EXPECT_NE(p.message.find(c.mentions), std::string::npos) << p.message;
  }
}

// DPDK mode: one process whatever the count (no file descriptor per connection), past the
// kernel mode's per-process bound.
TEST(Options, DpdkModeIsOneProcessWithoutTheFdBound) {
  const ParseOutcome p = parse({"--dpdk-port", "net_memif0,role=client,socket=/tmp/m.sock",
                                "--dpdk-address", "10.78.0.2/16", "--connections", "1000000"});
  ASSERT_FALSE(p.exit_code.has_value()) << p.message;
  EXPECT_EQ(p.options.processes, 1u);
  EXPECT_EQ(p.options.dpdk_queues, 1u);  // one queue pair unless the dataplane has more workers
  const ParseOutcome sixteen =
      parse({"--dpdk-port", "net_memif0", "--dpdk-address", "10.0.0.2/24", "--dpdk-queues", "16"});
  ASSERT_FALSE(sixteen.exit_code.has_value()) << sixteen.message;
  EXPECT_EQ(sixteen.options.dpdk_queues, 16u);
  EXPECT_EQ(ntohl(p.options.dpdk_address.s_addr), 0x0a4e0002u);
  EXPECT_EQ(p.options.dpdk_prefix_length, 16);
  auto plain = parse_address_prefix("10.1.2.3");
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->second, 24);
  // The same count on kernel sockets needs many processes.
  EXPECT_EQ(parse({"--connections", "1000000", "--processes", "1"}).exit_code, kExitUsage);
}

TEST(Options, HelpExitsZero) {
  const ParseOutcome p = parse({"--help"});
  ASSERT_TRUE(p.exit_code.has_value());
  EXPECT_EQ(*p.exit_code, 0);
  EXPECT_NE(p.message.find("--scenario"), std::string::npos);
}

TEST(Options, SourceAddressesAndPhones) {
  auto a = parse_source_addresses("127.0.0.1-127.0.0.3,10.0.0.1");
  ASSERT_TRUE(a.ok()) << a.status();
  ASSERT_EQ(a->size(), 4u);
  EXPECT_EQ(ntohl((*a)[2].s_addr), 0x7f000003u);
  EXPECT_EQ(ntohl((*a)[3].s_addr), 0x0a000001u);
  Options o;
  EXPECT_EQ(phone_of(o, 1), "+15550000001");
  EXPECT_EQ(phone_of(o, 1234567), "+15551234567");
  o.phone_offset = 100;
  EXPECT_EQ(phone_of(o, 5), "+15550000105");
  o.phone_prefix = "+44";
  EXPECT_EQ(phone_of(o, 5), "+44000000105");
  auto hp = parse_host_port("[::1]:5222");
  ASSERT_TRUE(hp.ok());
  EXPECT_EQ(hp->host, "::1");
  EXPECT_EQ(hp->port, 5222);
}

// ---- the message body ---------------------------------------------------------------------

TEST(MessageBody, RoundTripsAndRejectsForeignBodies) {
  std::vector<uint8_t> body(64, 0xee);
  encode_body_header({0xabcdef01, 77, 123456789012ull, -3}, body);
  auto h = decode_body_header(body);
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->run_id, 0xabcdef01u);
  EXPECT_EQ(h->sender, 77u);
  EXPECT_EQ(h->sequence, 123456789012ull);
  EXPECT_EQ(h->send_time_ns, -3);
  EXPECT_FALSE(decode_body_header(std::span<const uint8_t>(body).first(31)).has_value());
  body[0] ^= 1;
  EXPECT_FALSE(decode_body_header(body).has_value());
  EXPECT_EQ(client_msg_id_of(5, 9), (uint64_t{5} << 32) | 9);
}

// ---- the Herald protocol adapter ----------------------------------------------------------

struct Recorder : ProtocolEvents {
  int ready = 0;
  uint32_t max_unacked = 0;
  uint32_t ping_ms = 0;
  std::vector<uint64_t> acks;
  std::vector<std::vector<uint8_t>> bodies;
  std::vector<ServerId> ids;
  std::vector<std::string> send_errors;
  std::vector<std::pair<std::string, bool>> session_errors;
  void on_ready(uint32_t m, uint32_t p) override {
    ++ready;
    max_unacked = m;
    ping_ms = p;
  }
  void on_ack(uint64_t id) override { acks.push_back(id); }
  void on_deliver(std::span<const uint8_t> body, const ServerId& id) override {
    bodies.emplace_back(body.begin(), body.end());
    ids.push_back(id);
  }
  void on_send_error(uint64_t, std::string_view code, bool retry, uint32_t) override {
    send_errors.push_back(std::string(code) + (retry ? "/retry" : ""));
  }
  void on_session_error(std::string_view code, bool retry, uint32_t) override {
    session_errors.emplace_back(std::string(code), retry);
  }
  void on_pong() override {}
};

std::vector<uint8_t> frame_bytes(wire::PayloadUnion payload) {
  wire::FrameT frame;
  frame.payload = std::move(payload);
  codec::FrameBuilder b;
  auto bytes = b.finish(frame);
  return {bytes.begin(), bytes.end()};
}

// The frames in `bytes` (a client's output), decoded.
std::vector<wire::FrameT> decode_all(const std::vector<uint8_t>& bytes) {
  codec::OwnedFrameDecoder d(codec::DecoderLimits{}, bytes.size() + 64);
  EXPECT_EQ(d.feed(bytes), bytes.size());
  std::vector<wire::FrameT> out;
  for (codec::DecodeResult r = d.next_frame(); r.status == codec::DecodeStatus::kFrame;
       r = d.next_frame()) {
    wire::FrameT f;
    r.frame.frame->UnPackTo(&f);
    out.push_back(std::move(f));
  }
  return out;
}

class HeraldProtocolTest : public ::testing::Test {
 protected:
  HeraldProtocolTest() : codec_(directory_, 1u << 20), protocol_(codec_, token_) {
    directory_.devices.emplace_back(wire::AccountId(1, 2), 3);
    directory_.devices.emplace_back(wire::AccountId(4, 5), 6);
    directory_.groups.emplace_back(0, 99);
  }
  // Feeds `bytes` one piece of `step` bytes at a time.
  void feed(const std::vector<uint8_t>& bytes, size_t step) {
    for (size_t at = 0; at < bytes.size(); at += step) {
      const size_t n = std::min(step, bytes.size() - at);
      ASSERT_TRUE(
          protocol_.feed(std::span<const uint8_t>(bytes).subspan(at, n), out_, events_).ok());
    }
  }
  void log_in(size_t step) {
    protocol_.start(out_);
    auto frames = decode_all(out_);
    ASSERT_EQ(frames.size(), 1u);
    ASSERT_NE(frames[0].payload.AsHello(), nullptr);
    out_.clear();
    wire::HelloOkT ok;
    ok.version = 1;
    ok.limits = std::make_unique<wire::LimitsT>();
    ok.limits->max_unacked_messages = 500;
    ok.limits->idle_timeout_ms = 60'000;
    ok.limits->max_ids_per_ack = 2;
    wire::PayloadUnion p;
    p.Set(std::move(ok));
    feed(frame_bytes(std::move(p)), step);
    frames = decode_all(out_);
    ASSERT_EQ(frames.size(), 1u);
    ASSERT_NE(frames[0].payload.AsAuth(), nullptr);
    EXPECT_EQ(frames[0].payload.AsAuth()->token, token_);
    out_.clear();
    wire::AuthOkT auth_ok;
    auth_ok.device = std::make_unique<wire::DeviceAddress>(wire::AccountId(1, 2), 3);
    wire::PayloadUnion a;
    a.Set(std::move(auth_ok));
    feed(frame_bytes(std::move(a)), step);
    ASSERT_EQ(events_.ready, 1);
    EXPECT_EQ(events_.max_unacked, 500u);
    EXPECT_EQ(events_.ping_ms, 20'000u);
  }

  Directory directory_;
  HeraldCodec codec_;
  std::vector<uint8_t> token_ = std::vector<uint8_t>(73, 0x5a);
  HeraldProtocol protocol_;
  Recorder events_;
  std::vector<uint8_t> out_;
};

TEST_F(HeraldProtocolTest, LogsInAndDeliversWithFramesSplitAnywhere) {
  for (size_t step : {size_t{1}, size_t{3}, size_t{1000}}) {
    events_ = Recorder{};
    out_.clear();
    log_in(step);
    // Three deliveries and an ack in one stream, cut in `step`-byte pieces.
    std::vector<uint8_t> stream;
    for (uint64_t i = 1; i <= 3; ++i) {
      wire::DeliverT d;
      d.server_msg_id = std::make_unique<wire::ServerMsgId>(10, i);
      d.body = {uint8_t(i), 2, 3};
      d.sender = std::make_unique<wire::DeviceAddress>(wire::AccountId(4, 5), 6);
      wire::ToDeviceT to;
      to.device = std::make_unique<wire::DeviceAddress>(wire::AccountId(1, 2), 3);
      d.to.Set(std::move(to));
      wire::PayloadUnion p;
      p.Set(std::move(d));
      auto f = frame_bytes(std::move(p));
      stream.insert(stream.end(), f.begin(), f.end());
    }
    wire::ServerAckT ack;
    ack.client_msg_id = 42;
    ack.server_msg_id = std::make_unique<wire::ServerMsgId>(10, 9);
    wire::PayloadUnion p;
    p.Set(std::move(ack));
    auto f = frame_bytes(std::move(p));
    stream.insert(stream.end(), f.begin(), f.end());
    feed(stream, step);
    ASSERT_EQ(events_.bodies.size(), 3u) << step;
    EXPECT_EQ(events_.bodies[2][0], 3);
    EXPECT_EQ(events_.ids[1], (ServerId{10, 2}));
    EXPECT_EQ(events_.acks, std::vector<uint64_t>{42});
    // The acks go out at flush, max_ids_per_ack (2) per DeliveryAck.
    EXPECT_TRUE(out_.empty());
    protocol_.flush(out_);
    auto frames = decode_all(out_);
    ASSERT_EQ(frames.size(), 2u);
    ASSERT_NE(frames[0].payload.AsDeliveryAck(), nullptr);
    EXPECT_EQ(frames[0].payload.AsDeliveryAck()->server_msg_ids.size(), 2u);
    EXPECT_EQ(frames[1].payload.AsDeliveryAck()->server_msg_ids[0].lo(), 3u);
  }
}

TEST_F(HeraldProtocolTest, SendsToDevicesAndGroups) {
  log_in(1000);
  const std::vector<uint8_t> body(40, 1);
  protocol_.send({Target::Kind::kAccount, 1}, 7, body, out_);
  protocol_.send({Target::Kind::kGroup, 0}, 8, body, out_);
  auto frames = decode_all(out_);
  ASSERT_EQ(frames.size(), 2u);
  const wire::MessageT* m = frames[0].payload.AsMessage();
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->client_msg_id, 7u);
  ASSERT_NE(m->to.AsToDevice(), nullptr);
  EXPECT_EQ(m->to.AsToDevice()->device->account().lo(), 5u);
  EXPECT_EQ(m->to.AsToDevice()->device->device(), 6u);
  EXPECT_EQ(m->body, body);
  ASSERT_NE(frames[1].payload.AsMessage()->to.AsToGroup(), nullptr);
  EXPECT_EQ(frames[1].payload.AsMessage()->to.AsToGroup()->group->lo(), 99u);
}

TEST_F(HeraldProtocolTest, ErrorsAreSortedIntoRetryAndGiveUp) {
  log_in(1000);
  auto error = [&](wire::ErrorCode code, std::optional<uint64_t> id, bool fatal) {
    wire::ErrorT e;
    e.code = code;
    e.client_msg_id = id;
    e.fatal = fatal;
    wire::PayloadUnion p;
    p.Set(std::move(e));
    feed(frame_bytes(std::move(p)), 1000);
  };
  error(wire::ErrorCode::Overloaded, 5, false);
  error(wire::ErrorCode::BodyTooLarge, 6, false);
  error(wire::ErrorCode::InvalidRequest, std::nullopt, false);
  error(wire::ErrorCode::SessionReplaced, std::nullopt, true);
  error(wire::ErrorCode::IdleTimeout, std::nullopt, true);
  EXPECT_EQ(events_.send_errors,
            (std::vector<std::string>{"Overloaded/retry", "BodyTooLarge", "InvalidRequest"}));
  ASSERT_EQ(events_.session_errors.size(), 2u);
  EXPECT_EQ(events_.session_errors[0], std::make_pair(std::string("fatal_SessionReplaced"), false));
  EXPECT_EQ(events_.session_errors[1], std::make_pair(std::string("fatal_IdleTimeout"), true));
}

TEST_F(HeraldProtocolTest, AuthErrorsAndGarbage) {
  protocol_.start(out_);
  wire::AuthErrorT e;
  e.code = wire::AuthErrorCode::UnknownKey;
  wire::PayloadUnion p;
  p.Set(std::move(e));
  // AuthError before HelloOk is still reported (the server closes after it).
  feed(frame_bytes(std::move(p)), 1000);
  ASSERT_EQ(events_.session_errors.size(), 1u);
  EXPECT_EQ(events_.session_errors[0], std::make_pair(std::string("auth_UnknownKey"), true));
  // A length beyond the limit, and a frame that is not a FlatBuffer: errors, not crashes.
  const std::vector<uint8_t> huge = {0xff, 0xff, 0xff, 0x7f};
  EXPECT_FALSE(protocol_.feed(huge, out_, events_).ok());
  HeraldProtocol other(codec_, token_);
  std::vector<uint8_t> junk = {20, 0, 0, 0};
  junk.resize(24, 0xab);
  EXPECT_FALSE(other.feed(junk, out_, events_).ok());
  // AuthOk without Hello first is out of turn.
  HeraldProtocol third(codec_, token_);
  third.start(out_);
  wire::AuthOkT auth_ok;
  auth_ok.device = std::make_unique<wire::DeviceAddress>(wire::AccountId(1, 2), 3);
  wire::PayloadUnion a;
  a.Set(std::move(auth_ok));
  EXPECT_FALSE(third.feed(frame_bytes(std::move(a)), out_, events_).ok());
}

}  // namespace
}  // namespace herald::tools::loadgen

namespace herald::tools::loadgen {
namespace {

// ---- the MQTT protocol adapter ------------------------------------------------------------

// Broker packets, by hand (MQTT 3.1.1 §3.2, §3.9, §3.4, §3.3).
std::vector<uint8_t> connack(uint8_t code) {
  return {0x20, 0x02, 0x00, code};
}
std::vector<uint8_t> suback(uint16_t id, uint8_t granted) {
  return {0x90, 0x03, uint8_t(id >> 8), uint8_t(id), granted};
}
std::vector<uint8_t> puback(uint16_t id) {
  return {0x40, 0x02, uint8_t(id >> 8), uint8_t(id)};
}
std::vector<uint8_t> publish_qos1(const std::string& topic, uint16_t id,
                                  const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> p;
  p.reserve(4 + topic.size() + 2 + payload.size());
  p.push_back(0x32);
  p.push_back(uint8_t(2 + topic.size() + 2 + payload.size()));
  p.push_back(uint8_t(topic.size() >> 8));
  p.push_back(uint8_t(topic.size()));
  for (char c : topic) p.push_back(uint8_t(c));
  p.push_back(uint8_t(id >> 8));
  p.push_back(uint8_t(id));
  for (uint8_t b : payload) p.push_back(b);
  return p;
}

TEST(MqttProtocol, ReadyAfterConnAckAndSubAckAcksByPacketIdDeliversWithoutServerId) {
  MqttProtocol p("lg-1", 1, 60, 1u << 20);
  Recorder events;
  std::vector<uint8_t> out;
  p.start(out);
  ASSERT_GE(out.size(), 2u);
  EXPECT_EQ(out[0], 0x10);  // CONNECT, then the pipelined SUBSCRIBE
  out.clear();
  ASSERT_TRUE(p.feed(connack(0), out, events).ok());
  EXPECT_EQ(events.ready, 0);  // not subscribed yet
  ASSERT_TRUE(p.feed(suback(1, 1), out, events).ok());
  ASSERT_EQ(events.ready, 1);
  EXPECT_EQ(events.ping_ms, 30'000u);
  const std::vector<uint8_t> body(40, 7);
  p.send({Target::Kind::kAccount, 9}, 1234, body, out);
  ASSERT_GE(out.size(), 2u);
  EXPECT_EQ(out[0] & 0xf0, 0x30);  // PUBLISH
  const std::string topic = mqtt_topic_of(9);
  EXPECT_NE(std::string(out.begin(), out.end()).find(topic), std::string::npos);
  out.clear();
  // The publish took the next packet id after the SUBSCRIBE's.
  ASSERT_TRUE(p.feed(puback(2), out, events).ok());
  EXPECT_EQ(events.acks, std::vector<uint64_t>{1234});
  ASSERT_TRUE(p.feed(puback(2), out, events).ok());  // a repeat PUBACK acks nothing more
  EXPECT_EQ(events.acks.size(), 1u);
  ASSERT_TRUE(p.feed(publish_qos1(mqtt_topic_of(1), 77, {1, 2, 3}), out, events).ok());
  ASSERT_EQ(events.bodies.size(), 1u);
  EXPECT_EQ(events.bodies[0], (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_TRUE(events.ids[0].empty());
  EXPECT_EQ(out, puback(77));  // the PUBACK went out with feed()
}

TEST(MqttProtocol, RefusedConnectionIsASessionErrorWithoutRetry) {
  MqttProtocol p("lg-2", 2, 60, 1u << 20);
  Recorder events;
  std::vector<uint8_t> out;
  p.start(out);
  (void)p.feed(connack(5), out, events);  // not authorized
  ASSERT_EQ(events.session_errors.size(), 1u);
  EXPECT_EQ(events.session_errors[0], std::make_pair(std::string("mqtt_connack_5"), false));
  EXPECT_EQ(events.ready, 0);
}

}  // namespace
}  // namespace herald::tools::loadgen
