// Unit tests of the DPDK port layer's pure parts: the mempool sizing formula at its edges, the
// dataplane.dpdk config section (defaults, ranges, the cross-field rules with the field they
// name) and the EAL command line made from it. No EAL here.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "dataplane/transport/dpdk/dpdk_settings.h"
#include "dataplane/transport/dpdk/mempool_sizing.h"
#include "platform/config/config.h"

namespace herald::dataplane::dpdk {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// --- Mempool sizing ------------------------------------------------------------------------

TEST(MempoolSizing, RoundsUpToTwoToTheKMinusOne) {
  EXPECT_EQ(round_up_pow2_minus_1(0), 0u);
  EXPECT_EQ(round_up_pow2_minus_1(1), 1u);
  EXPECT_EQ(round_up_pow2_minus_1(2), 3u);
  EXPECT_EQ(round_up_pow2_minus_1(3), 3u);
  EXPECT_EQ(round_up_pow2_minus_1(4), 7u);
  EXPECT_EQ(round_up_pow2_minus_1(8191), 8191u);
  EXPECT_EQ(round_up_pow2_minus_1(8192), 16383u);
  EXPECT_EQ(round_up_pow2_minus_1(uint64_t{1} << 31), kMaxMempoolMbufs);
  EXPECT_EQ(round_up_pow2_minus_1(kMaxMempoolMbufs), kMaxMempoolMbufs);
}

TEST(MempoolSizing, EveryTermOfTheFormula) {
  MempoolInputs in;
  in.ports = 2;
  in.rx_queues = 2;
  in.rx_descriptors = 512;
  in.tx_queues = 3;
  in.tx_descriptors = 256;
  in.burst_size = 32;
  in.lcores = 2;
  in.cache_size = 250;
  in.connections = 1000;
  in.mbufs_per_connection = 3;
  in.element_bytes = 100;
  absl::StatusOr<MempoolSize> size = mempool_size(in);
  ASSERT_TRUE(size.ok()) << size.status();
  EXPECT_EQ(size->rings, 2u * (2 * 512 + 3 * 256));  // 3584
  EXPECT_EQ(size->bursts, 2u * 32 * (1 + 2));        // 192
  EXPECT_EQ(size->caches, 2u * 375);                 // 1.5 x 250 per lcore
  EXPECT_EQ(size->connections, 3000u);
  EXPECT_EQ(size->needed, 3584u + 192 + 750 + 3000);
  EXPECT_EQ(size->mbufs, 8191u);
  EXPECT_EQ(size->bytes, 819100u);
  EXPECT_THAT(size->to_string(), HasSubstr("mbufs=8191"));
}

TEST(MempoolSizing, OddCacheRoundsItsFlushThresholdUp) {
  MempoolInputs in;
  in.cache_size = 3;
  in.lcores = 1;
  absl::StatusOr<MempoolSize> size = mempool_size(in);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size->caches, 5u);  // ceil(4.5)
}

// Smallest inputs: rings 64 + 64, bursts 1 x 1 x 2, no cache; connections fill up to the edge.
MempoolInputs small(uint64_t connections) {
  MempoolInputs in;
  in.rx_descriptors = 64;
  in.tx_descriptors = 64;
  in.burst_size = 1;
  in.cache_size = 0;
  in.connections = connections;
  in.mbufs_per_connection = 1;
  return in;
}

TEST(MempoolSizing, ExactlyTwoToTheKMinusOneIsKeptOnePastDoubles) {
  absl::StatusOr<MempoolSize> at = mempool_size(small(125));  // 130 + 125 = 255
  ASSERT_TRUE(at.ok());
  EXPECT_EQ(at->needed, 255u);
  EXPECT_EQ(at->mbufs, 255u);
  absl::StatusOr<MempoolSize> past = mempool_size(small(126));
  ASSERT_TRUE(past.ok());
  EXPECT_EQ(past->needed, 256u);
  EXPECT_EQ(past->mbufs, 511u);
}

TEST(MempoolSizing, NoConnectionTermWhenNoMbufsPerConnection) {
  MempoolInputs in = small(50'000'000);
  in.mbufs_per_connection = 0;
  absl::StatusOr<MempoolSize> size = mempool_size(in);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size->connections, 0u);
  EXPECT_EQ(size->mbufs, 255u);
}

TEST(MempoolSizing, LargestPoolDpdkHoldsAndOnePast) {
  absl::StatusOr<MempoolSize> at = mempool_size(small(kMaxMempoolMbufs - 130));
  ASSERT_TRUE(at.ok()) << at.status();
  EXPECT_EQ(at->mbufs, kMaxMempoolMbufs);
  absl::StatusOr<MempoolSize> past = mempool_size(small(kMaxMempoolMbufs - 129));
  ASSERT_FALSE(past.ok());
  EXPECT_THAT(std::string(past.status().message()), HasSubstr("more than the 4294967295"));
}

TEST(MempoolSizing, ConnectionProductThatWouldOverflowIsAnError) {
  MempoolInputs in = small(uint64_t{1} << 63);
  in.mbufs_per_connection = 1024;
  absl::StatusOr<MempoolSize> size = mempool_size(in);
  ASSERT_FALSE(size.ok());
  EXPECT_THAT(std::string(size.status().message()), HasSubstr("1024 mbufs each"));
}

TEST(MempoolSizing, ZeroWhereOneIsNeededIsAnError) {
  for (int field = 0; field < 7; ++field) {
    MempoolInputs in;
    switch (field) {
      case 0: in.ports = 0; break;
      case 1: in.rx_queues = 0; break;
      case 2: in.tx_queues = 0; break;
      case 3: in.rx_descriptors = 0; break;
      case 4: in.burst_size = 0; break;
      case 5: in.lcores = 0; break;
      case 6: in.element_bytes = 0; break;
    }
    EXPECT_FALSE(mempool_size(in).ok()) << field;
  }
}

TEST(MempoolSizing, DefaultConfigFitsTheReservedHugePages) {
  // 100,000 connections x 2 mbufs dominate: 2^18 - 1 mbufs of 2368 bytes is 592 MiB, inside the
  // 1 GiB of huge pages tools/bootstrap reserves. This pins it so a change is deliberate.
  const DpdkSettings s = settings_from_config(config::default_config());
  MempoolInputs in;
  in.rx_descriptors = s.rx_descriptors;
  in.tx_descriptors = s.tx_descriptors;
  in.burst_size = s.burst_size;
  in.cache_size = s.mempool_cache_size;
  in.connections = s.max_connections;
  in.mbufs_per_connection = s.mbufs_per_connection;
  in.element_bytes = 2368;  // rte_mempool_calc_obj_size of a default mbuf (the start-up log)
  absl::StatusOr<MempoolSize> size = mempool_size(in);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size->needed, 2048u + 64 + 384 + 200'000);
  EXPECT_EQ(size->mbufs, (1u << 18) - 1);
  EXPECT_LT(size->bytes, uint64_t{1} << 30);
}

// --- The dataplane.dpdk config section ------------------------------------------------------

absl::StatusOr<config::Config> load(const std::string& dpdk_json,
                                    const std::string& dataplane_extra = "") {
  return config::load_config_from_string(
      absl::StrCat(R"({"dataplane": {)", dataplane_extra, R"("dpdk": )", dpdk_json, "}}"),
      "test.json");
}

// Expects `dpdk_json` rejected, naming `field` (config::error_field) and saying `needle`.
void expect_rejected(const std::string& dpdk_json, const std::string& field,
                     const std::string& needle, const std::string& dataplane_extra = "") {
  SCOPED_TRACE(dpdk_json);
  absl::StatusOr<config::Config> c = load(dpdk_json, dataplane_extra);
  ASSERT_FALSE(c.ok()) << "accepted";
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(config::error_field(c.status()), field) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(needle));
}

void expect_ok(const std::string& dpdk_json, const std::string& dataplane_extra = "") {
  absl::StatusOr<config::Config> c = load(dpdk_json, dataplane_extra);
  EXPECT_TRUE(c.ok()) << dpdk_json << ": " << c.status();
}

TEST(DpdkConfig, Defaults) {
  const DpdkSettings s = settings_from_config(config::default_config());
  EXPECT_TRUE(s.lcores.empty());
  EXPECT_TRUE(s.ports.empty());
  EXPECT_TRUE(s.huge_pages);
  EXPECT_EQ(s.memory_mb, 512u);
  EXPECT_EQ(s.file_prefix, "herald");
  EXPECT_EQ(s.rx_queues, 1);
  EXPECT_EQ(s.tx_queues, 1);
  EXPECT_EQ(s.rx_descriptors, 1024);
  EXPECT_EQ(s.tx_descriptors, 1024);
  EXPECT_EQ(s.burst_size, 32);
  EXPECT_EQ(s.mempool_cache_size, 256);
  EXPECT_EQ(s.mbufs_per_connection, 2);
  EXPECT_FALSE(s.promiscuous);
  EXPECT_EQ(s.poll_mode, LoopPollMode::kAdaptive);
  EXPECT_EQ(s.idle_polls, 1000u);
  EXPECT_EQ(s.idle_sleep_us, 100u);
  EXPECT_EQ(s.max_connections, 100'000u);
}

TEST(DpdkConfig, EveryFieldIsRead) {
  absl::StatusOr<config::Config> c = config::load_config_from_string(R"({
    "dataplane": {"backend": "dpdk", "poll_mode": "busy", "adaptive_idle_polls": 7,
      "dpdk_eal_args": ["--log-level", "8"],
      "dpdk": {"lcores": [2, 3, 5], "ports": ["0000:3b:00.1", "net_memif0,role=server,socket=/tmp/m.sock"],
               "huge_pages": false, "memory_mb": 256, "file_prefix": "t-1_x",
               "rx_queues": 2, "tx_queues": 3, "rx_descriptors": 256, "tx_descriptors": 512,
               "burst_size": 64, "mempool_cache_size": 128, "mbufs_per_connection": 9,
               "promiscuous": true, "idle_sleep_us": 20}},
    "limits": {"max_connections": 777}})");
  ASSERT_TRUE(c.ok()) << c.status();
  const DpdkSettings s = settings_from_config(*c);
  EXPECT_THAT(s.lcores, ElementsAre(2, 3, 5));
  EXPECT_THAT(s.ports, ElementsAre("0000:3b:00.1", "net_memif0,role=server,socket=/tmp/m.sock"));
  EXPECT_FALSE(s.huge_pages);
  EXPECT_EQ(s.memory_mb, 256u);
  EXPECT_EQ(s.file_prefix, "t-1_x");
  EXPECT_EQ(s.rx_queues, 2);
  EXPECT_EQ(s.tx_queues, 3);
  EXPECT_EQ(s.rx_descriptors, 256);
  EXPECT_EQ(s.tx_descriptors, 512);
  EXPECT_EQ(s.burst_size, 64);
  EXPECT_EQ(s.mempool_cache_size, 128);
  EXPECT_EQ(s.mbufs_per_connection, 9);
  EXPECT_TRUE(s.promiscuous);
  EXPECT_EQ(s.poll_mode, LoopPollMode::kBusy);
  EXPECT_EQ(s.idle_polls, 7u);
  EXPECT_EQ(s.idle_sleep_us, 20u);
  EXPECT_EQ(s.max_connections, 777u);
  EXPECT_THAT(s.extra_eal_args, ElementsAre("--log-level", "8"));
}

// Each numeric field at its edges and one past (the config test's range walk covers the
// sections' own fields; this section is one level deeper).
TEST(DpdkConfig, RangesAtTheirEdges) {
  struct Edge {
    const char* field;
    int64_t min, max;
    const char* companion;  // other fields that the edge value needs to satisfy the rules
  };
  const Edge edges[] = {
      {"memory_mb", 64, 1048576, ""},
      {"rx_queues", 1, 64, R"(, "tx_queues": 64)"},
      {"tx_queues", 1, 64, ""},
      {"rx_descriptors", 64, 16384, ""},
      {"tx_descriptors", 64, 16384, ""},
      {"burst_size", 1, 512, R"(, "rx_descriptors": 512, "tx_descriptors": 512)"},
      {"mempool_cache_size", 0, 512, ""},
      {"mbufs_per_connection", 0, 1024, ""},
      {"idle_sleep_us", 1, 100000, ""},
  };
  for (const Edge& e : edges) {
    SCOPED_TRACE(e.field);
    auto json = [&](int64_t v) {
      return absl::StrCat("{\"", e.field, "\": ", v, e.companion, "}");
    };
    expect_ok(json(e.min));
    expect_ok(json(e.max));
    const std::string path = absl::StrCat("dataplane.dpdk.", e.field);
    if (e.min > 0) expect_rejected(json(e.min - 1), path, "below the minimum");
    expect_rejected(json(e.max + 1), path, "above the maximum");
  }
  expect_rejected(R"({"rx_descriptors": 1000})", "dataplane.dpdk.rx_descriptors", "power of two");
  expect_rejected(R"({"lcores": [1024]})", "dataplane.dpdk.lcores[0]", "maximum 1023");
}

// dataplane.dpdk.impairment: off unless a probability is set; every field read, rx and tx
// seeded apart; each range at its edges with the field named.
TEST(DpdkImpairmentConfig, OffByDefault) {
  const DpdkSettings s = settings_from_config(config::default_config());
  EXPECT_FALSE(s.impairment.rx.enabled());
  EXPECT_FALSE(s.impairment.tx.enabled());
  EXPECT_EQ(s.impairment.rx.hold_frames, 256u);
  EXPECT_EQ(s.impairment.rx.delay_us, 1000u);
  EXPECT_EQ(s.impairment.rx.reorder_hold_us, 100u);
  EXPECT_NE(s.impairment.rx.seed, s.impairment.tx.seed);
  // A table with only a seed or delays is still off: only probabilities switch it on.
  absl::StatusOr<config::Config> c =
      load(R"({"impairment": {"seed": 9, "hold_frames": 3, "rx": {"delay_us": 5}}})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_FALSE(settings_from_config(*c).impairment.rx.enabled());
}

TEST(DpdkImpairmentConfig, EveryFieldIsRead) {
  absl::StatusOr<config::Config> c = load(R"({"impairment": {"seed": 77, "hold_frames": 65536,
      "rx": {"drop_ppm": 1, "duplicate_ppm": 2, "reorder_ppm": 3, "delay_ppm": 4,
             "corrupt_ppm": 5, "delay_us": 6, "delay_jitter_us": 7, "reorder_hold_us": 8},
      "tx": {"drop_ppm": 11, "duplicate_ppm": 12, "reorder_ppm": 13, "delay_ppm": 14,
             "corrupt_ppm": 15, "delay_us": 16, "delay_jitter_us": 17, "reorder_hold_us": 18}}})");
  ASSERT_TRUE(c.ok()) << c.status();
  const DpdkSettings s = settings_from_config(*c);
  const net::ImpairmentOptions& rx = s.impairment.rx;
  const net::ImpairmentOptions& tx = s.impairment.tx;
  EXPECT_TRUE(rx.enabled());
  EXPECT_TRUE(tx.enabled());
  EXPECT_EQ(rx.seed, 77u);
  EXPECT_EQ(tx.seed, 78u);
  EXPECT_EQ(rx.hold_frames, 65536u);
  EXPECT_EQ(tx.hold_frames, 65536u);
  EXPECT_EQ(rx.drop_ppm, 1u);
  EXPECT_EQ(rx.duplicate_ppm, 2u);
  EXPECT_EQ(rx.reorder_ppm, 3u);
  EXPECT_EQ(rx.delay_ppm, 4u);
  EXPECT_EQ(rx.corrupt_ppm, 5u);
  EXPECT_EQ(rx.delay_us, 6u);
  EXPECT_EQ(rx.delay_jitter_us, 7u);
  EXPECT_EQ(rx.reorder_hold_us, 8u);
  EXPECT_EQ(tx.drop_ppm, 11u);
  EXPECT_EQ(tx.duplicate_ppm, 12u);
  EXPECT_EQ(tx.reorder_ppm, 13u);
  EXPECT_EQ(tx.delay_ppm, 14u);
  EXPECT_EQ(tx.corrupt_ppm, 15u);
  EXPECT_EQ(tx.delay_us, 16u);
  EXPECT_EQ(tx.delay_jitter_us, 17u);
  EXPECT_EQ(tx.reorder_hold_us, 18u);
  EXPECT_TRUE(net::validate(rx).empty()) << net::validate(rx);
  EXPECT_TRUE(net::validate(tx).empty()) << net::validate(tx);
}

TEST(DpdkImpairmentConfig, RangesAtTheirEdges) {
  struct Edge {
    const char* field;
    int64_t max;
  };
  const Edge edges[] = {{"drop_ppm", 1000000},         {"duplicate_ppm", 1000000},
                        {"reorder_ppm", 1000000},      {"delay_ppm", 1000000},
                        {"corrupt_ppm", 1000000},      {"delay_us", 60000000},
                        {"delay_jitter_us", 60000000}, {"reorder_hold_us", 60000000}};
  for (const char* dir : {"rx", "tx"}) {
    for (const Edge& e : edges) {
      SCOPED_TRACE(absl::StrCat(dir, ".", e.field));
      auto json = [&](int64_t v) {
        return absl::StrCat(R"({"impairment": {")", dir, R"(": {")", e.field, "\": ", v, "}}}");
      };
      expect_ok(json(0));
      expect_ok(json(e.max));
      // What the loader accepts, the impairment layer accepts too (it would CHECK-fail).
      absl::StatusOr<config::Config> c = load(json(e.max));
      ASSERT_TRUE(c.ok());
      const DpdkSettings s = settings_from_config(*c);
      EXPECT_TRUE(net::validate(s.impairment.rx).empty());
      EXPECT_TRUE(net::validate(s.impairment.tx).empty());
      expect_rejected(json(e.max + 1),
                      absl::StrCat("dataplane.dpdk.impairment.", dir, ".", e.field),
                      "above the maximum");
      expect_rejected(json(-1), absl::StrCat("dataplane.dpdk.impairment.", dir, ".", e.field), "");
    }
  }
  expect_ok(R"({"impairment": {"hold_frames": 0}})");
  expect_ok(R"({"impairment": {"hold_frames": 65536}})");
  expect_rejected(R"({"impairment": {"hold_frames": 65537}})",
                  "dataplane.dpdk.impairment.hold_frames", "above the maximum");
  expect_ok(R"({"impairment": {"seed": 18446744073709551615}})");
  expect_rejected(R"({"impairment": {"rx": {"drop": 5}}})", "dataplane.dpdk.impairment.rx.drop",
                  "unknown field");
}

// The stack's own address (the DPDK Transport): IPv4 only, prefix 1..32.
TEST(DpdkConfig, StackAddressIsIpv4) {
  absl::StatusOr<config::Config> c =
      load(R"({"address": "10.0.0.1", "prefix_length": 16, "gateway": "10.0.0.254"})");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->dataplane().dpdk()->address()->str(), "10.0.0.1");
  EXPECT_EQ(c->dataplane().dpdk()->prefix_length(), 16);
  EXPECT_EQ(c->dataplane().dpdk()->gateway()->str(), "10.0.0.254");
  EXPECT_EQ(config::default_config().dataplane().dpdk()->address()->str(), "0.0.0.0");
  EXPECT_EQ(config::default_config().dataplane().dpdk()->prefix_length(), 24);
  expect_ok(R"({"prefix_length": 1})");
  expect_ok(R"({"prefix_length": 32})");
  expect_rejected(R"({"prefix_length": 0})", "dataplane.dpdk.prefix_length", "below the minimum");
  expect_rejected(R"({"prefix_length": 33})", "dataplane.dpdk.prefix_length", "above the maximum");
  expect_rejected(R"({"address": "2001:db8::1"})", "dataplane.dpdk.address", "not an IPv4");
  expect_rejected(R"({"gateway": "2001:db8::1"})", "dataplane.dpdk.gateway", "not an IPv4");
  expect_rejected(R"({"address": "10.0.0"})", "dataplane.dpdk.address", "not an IPv4 or IPv6");
}

TEST(DpdkConfig, PortsMustBePciAddressesOrVdevs) {
  for (const char* good :
       {"0000:01:00.0", "01:00.7", "ffff:ff:1f.0", "net_null0", "net_tap12",
        "net_af_packet0,iface=veth0,qpairs=1", "net_memif0,role=server,socket=/tmp/x.sock"}) {
    expect_ok(absl::StrCat(R"({"ports": [")", good, R"("]})"));
  }
  struct Bad {
    const char* port;
    const char* why;
  };
  for (const Bad& bad :
       {Bad{"", "starts with"}, Bad{"eth0", "starts with"}, Bad{"01:00.8", "starts with"},
        Bad{"net_null", "instance number"}, Bad{"net_0", "instance number"},
        Bad{"net_Null0", "lower-case"}, Bad{"net_null0,", "key=value"},
        Bad{"net_null0,size", "key=value"}, Bad{"net_null0,=1", "key=value"},
        Bad{"net_null0,a=", "key=value"}, Bad{"net_af_packet0,iface=veth 0", "no spaces"}}) {
    expect_rejected(absl::StrCat(R"({"ports": ["net_null9", ")", bad.port, R"("]})"),
                    "dataplane.dpdk.ports[1]", bad.why);
  }
  expect_rejected(R"({"ports": ["net_null0", "net_null0,size=64"]})", "dataplane.dpdk.ports[1]",
                  "a second time");
  // Ports may still come from dataplane.dpdk_eal_args (older configs): an empty list is
  // refused by DpdkRuntime::start, not by the loader.
  expect_ok(R"({"ports": []})", R"("backend": "dpdk", )");
  expect_ok(R"({"ports": ["net_null0"]})", R"("backend": "dpdk", )");
}

TEST(DpdkConfig, CrossFieldRules) {
  expect_rejected(R"({"file_prefix": ""})", "dataplane.dpdk.file_prefix", "1 to 32");
  expect_rejected(R"({"file_prefix": "a/b"})", "dataplane.dpdk.file_prefix", "1 to 32");
  expect_rejected(R"({"file_prefix": "123456789012345678901234567890123"})",
                  "dataplane.dpdk.file_prefix", "1 to 32");
  expect_ok(R"({"file_prefix": "12345678901234567890123456789012"})");
  expect_rejected(R"({"lcores": [0, 1, 0]})", "dataplane.dpdk.lcores[2]", "lcore 0 twice");
  expect_rejected(R"({"lcores": [0, 1], "rx_queues": 2, "tx_queues": 2})", "dataplane.dpdk.lcores",
                  "main lcore plus one port loop per rx queue");
  expect_ok(R"({"lcores": [0, 1, 2], "rx_queues": 2, "tx_queues": 2})");
  expect_rejected(R"({"rx_queues": 2, "tx_queues": 1})", "dataplane.dpdk.tx_queues",
                  "below rx_queues = 2");
  expect_rejected(R"({"burst_size": 65, "tx_descriptors": 64})", "dataplane.dpdk.burst_size",
                  "at most 64");
  expect_ok(R"({"burst_size": 64, "rx_descriptors": 64, "tx_descriptors": 64})");
}

// --- The EAL command line -------------------------------------------------------------------

TEST(EalArguments, TestSettingsGiveNoHugeNoPciAndVdevs) {
  DpdkSettings s;
  s.ports = {"net_null0", "net_memif0,role=server,socket=/tmp/a.sock"};
  s.huge_pages = false;
  s.memory_mb = 128;
  s.file_prefix = "t42";
  s.rx_queues = 2;
  s.extra_eal_args = {"--log-level", "7"};
  EXPECT_THAT(
      eal_arguments(s, 64),
      ElementsAre("herald-dataplane", "-l", "0,1,2", "--file-prefix", "t42", "--no-huge", "-m",
                  "128", "--vdev", "net_null0", "--vdev",
                  "net_memif0,role=server,socket=/tmp/a.sock", "--no-pci", "--log-level", "7"));
}

TEST(EalArguments, PciPortsAreAllowListedAndLcoresAsConfigured) {
  DpdkSettings s;
  s.ports = {"0000:01:00.0", "02:00.1"};
  s.lcores = {4, 6};
  EXPECT_THAT(eal_arguments(s, 64), ElementsAre("herald-dataplane", "-l", "4,6", "--file-prefix",
                                                "herald", "-a", "0000:01:00.0", "-a", "02:00.1"));
  EXPECT_EQ(port_device_name("02:00.1"), "0000:02:00.1");
  EXPECT_EQ(port_device_name("0000:01:00.0"), "0000:01:00.0");
  EXPECT_EQ(port_device_name("net_af_packet0,iface=veth0"), "net_af_packet0");
}

TEST(EalArguments, LcoresPastTheMachinesCpusShareThemThroughLcoresMapping) {
  DpdkSettings s;
  s.ports = {"net_null0"};
  s.rx_queues = 2;  // main + 2 workers = lcores 0,1,2 on a 2-CPU machine
  EXPECT_THAT(eal_arguments(s, 2),
              ElementsAre("herald-dataplane", "--lcores", "0@0,1@1,2@0", "--file-prefix", "herald",
                          "--vdev", "net_null0", "--no-pci"));
  // Exactly at the edge: lcore 2 with 3 CPUs is a real CPU, -l as configured.
  EXPECT_THAT(eal_arguments(s, 3), ElementsAre("herald-dataplane", "-l", "0,1,2", "--file-prefix",
                                               "herald", "--vdev", "net_null0", "--no-pci"));
  s.lcores = {5, 7};
  EXPECT_THAT(eal_arguments(s, 4),
              ElementsAre("herald-dataplane", "--lcores", "5@1,7@3", "--file-prefix", "herald",
                          "--vdev", "net_null0", "--no-pci"));
}

TEST(MempoolSizing, HandOffRingsHoldEveryRxRingOfTheLoopAndCountInThePool) {
  EXPECT_EQ(handoff_ring_slots(1, 1024, 1), 0u);     // one loop: no ring
  EXPECT_EQ(handoff_ring_slots(1, 1024, 2), 2048u);  // 1024 frames need 1025 slots
  EXPECT_EQ(handoff_ring_slots(1, 1023, 2), 1024u);  // 1023 fit in 1024 exactly
  EXPECT_EQ(handoff_ring_slots(2, 512, 4), 2048u);
  MempoolInputs in;
  in.rx_queues = in.tx_queues = in.lcores = 2;
  in.handoff_ring_slots = handoff_ring_slots(in.ports, in.rx_descriptors, in.lcores);
  absl::StatusOr<MempoolSize> size = mempool_size(in);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size->handoffs, 2u * 2048);
  EXPECT_EQ(size->needed,
            size->rings + size->bursts + size->caches + size->connections + size->handoffs);
  EXPECT_THAT(size->to_string(), HasSubstr("handoffs=4096"));
}

TEST(EalArguments, AfPacketRingsFollowTheDescriptorsUnlessThePortSetsThem) {
  DpdkSettings s;
  s.rx_descriptors = 2048;
  s.tx_descriptors = 1024;
  s.ports = {"net_af_packet0,iface=veth0", "net_af_packet1,iface=veth1,framecnt=256", "net_null0"};
  EXPECT_THAT(
      eal_arguments(s, 64),
      ElementsAre("herald-dataplane", "-l", "0,1", "--file-prefix", "herald", "--vdev",
                  "net_af_packet0,iface=veth0,framecnt=2048", "--vdev",
                  "net_af_packet1,iface=veth1,framecnt=256", "--vdev", "net_null0", "--no-pci"));
  EXPECT_TRUE(is_pci_port("0a:1f.3"));
  EXPECT_FALSE(is_pci_port("net_null0"));
}

}  // namespace
}  // namespace herald::dataplane::dpdk
