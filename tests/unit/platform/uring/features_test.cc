// The feature probe: what the loop reports must agree with itself, with an independent probe
// of the kernel, and with the Options that restrict it.
#include "platform/uring/features.h"

#include <liburing.h>

#include "gtest/gtest.h"
#include "platform/uring/buffer_ring.h"
#include "platform/uring/event_loop.h"
#include "tests/unit/platform/uring/uring_test_util.h"

namespace herald::uring {
namespace {

using testing::make_loop;

TEST(FeaturesTest, ProbeIsSelfConsistent) {
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  const Features& f = loop->features();

  // Creation fails without these, so a loop that exists has them.
  EXPECT_TRUE(f.nodrop);
  EXPECT_TRUE(f.fast_poll);
  EXPECT_TRUE(f.opcode_supported(IORING_OP_ACCEPT));
  EXPECT_TRUE(f.opcode_supported(IORING_OP_ASYNC_CANCEL));

  // Decoded bits match the raw words they came from.
  EXPECT_EQ(f.nodrop, (f.kernel_features & IORING_FEAT_NODROP) != 0);
  EXPECT_EQ(f.ext_arg, (f.kernel_features & IORING_FEAT_EXT_ARG) != 0);
  EXPECT_EQ(f.single_issuer, (f.setup_flags & IORING_SETUP_SINGLE_ISSUER) != 0);
  EXPECT_EQ(f.defer_taskrun, (f.setup_flags & IORING_SETUP_DEFER_TASKRUN) != 0);
  EXPECT_EQ(f.coop_taskrun, (f.setup_flags & IORING_SETUP_COOP_TASKRUN) != 0);
  EXPECT_EQ(f.submit_all, (f.setup_flags & IORING_SETUP_SUBMIT_ALL) != 0);

  // Relationships the kernel enforces.
  if (f.defer_taskrun) {
    EXPECT_TRUE(f.single_issuer);
  }
  if (f.taskrun_flag) {
    EXPECT_TRUE(f.coop_taskrun || f.defer_taskrun);
  }
  if (f.multishot_recv) {
    EXPECT_TRUE(f.buf_ring);  // probed through a buffer ring
    EXPECT_TRUE(f.opcode_supported(IORING_OP_RECV));
  }
  EXPECT_EQ(f.send_zc, f.opcode_supported(IORING_OP_SEND_ZC));
  EXPECT_EQ(f.use_multishot_accept, f.multishot_accept);
  EXPECT_EQ(f.use_multishot_recv, f.multishot_recv);
  EXPECT_EQ(f.use_multishot_poll, f.multishot_poll);
  EXPECT_GE(f.sq_entries, loop->options().sq_entries);
  EXPECT_GE(f.cq_entries, f.sq_entries);

  // Same opcode table as a probe made independently of the loop.
  io_uring_probe* probe = io_uring_get_probe();
  ASSERT_NE(probe, nullptr);
  EXPECT_EQ(f.last_opcode, probe->last_op);
  for (uint32_t op = 0; op < probe->ops_len; ++op) {
    EXPECT_EQ(f.opcode_supported(op), io_uring_opcode_supported(probe, static_cast<int>(op)))
        << "opcode " << op;
  }
  io_uring_free_probe(probe);
  for (uint32_t op = f.last_opcode + 1u; op < 256; ++op) EXPECT_FALSE(f.opcode_supported(op));

  // The log line says what is used.
  const std::string summary = f.summary();
  EXPECT_NE(summary.find(f.use_multishot_accept ? "accept=multishot" : "accept=single_shot"),
            std::string::npos)
      << summary;
  EXPECT_NE(summary.find(f.use_multishot_recv ? "recv=multishot" : "recv=single_shot"),
            std::string::npos)
      << summary;
}

TEST(FeaturesTest, OptionsRestrictWhatIsUsedButNotWhatIsProbed) {
  auto full = make_loop();
  Options options;
  options.allow_multishot_accept = false;
  options.allow_multishot_recv = false;
  options.allow_multishot_poll = false;
  options.try_single_issuer = false;
  options.try_coop_taskrun = false;
  auto plain = make_loop(options);
  ASSERT_NE(full, nullptr);
  ASSERT_NE(plain, nullptr);
  const Features& f = plain->features();
  EXPECT_FALSE(f.use_multishot_accept);
  EXPECT_FALSE(f.use_multishot_recv);
  EXPECT_FALSE(f.use_multishot_poll);
  EXPECT_EQ(f.multishot_accept, full->features().multishot_accept);
  EXPECT_EQ(f.multishot_recv, full->features().multishot_recv);
  EXPECT_FALSE(f.single_issuer);
  EXPECT_FALSE(f.defer_taskrun);
  EXPECT_FALSE(f.coop_taskrun);
  EXPECT_NE(f.summary().find("accept=single_shot"), std::string::npos);
}

TEST(FeaturesTest, BusyPollLoopsDoNotUseDeferTaskrun) {
  // DEFER_TASKRUN would cost a syscall per busy-poll round (see Options).
  Options options;
  options.mode = RunMode::kAdaptive;
  auto loop = make_loop(options);
  ASSERT_NE(loop, nullptr);
  EXPECT_FALSE(loop->features().defer_taskrun);
}

TEST(FeaturesTest, RejectsBadSizes) {
  Options options;
  options.sq_entries = 0;
  EXPECT_FALSE(EventLoop::create(options).ok());
  options.sq_entries = 64;
  options.cq_entries = 32;  // the CQ must hold at least a full SQ's completions
  EXPECT_FALSE(EventLoop::create(options).ok());
  auto loop = make_loop();
  ASSERT_NE(loop, nullptr);
  if (!loop->features().buf_ring) GTEST_SKIP() << "kernel without buffer rings";
  EXPECT_FALSE(BufferRing::create(*loop, 3, 512).ok());      // not a power of two
  EXPECT_FALSE(BufferRing::create(*loop, 65536, 512).ok());  // over the kernel's limit
  EXPECT_FALSE(BufferRing::create(*loop, 4, 0).ok());
  // Group ids are handed out and returned.
  auto a = BufferRing::create(*loop, 4, 64);
  auto b = BufferRing::create(*loop, 4, 64);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_NE((*a)->group_id(), (*b)->group_id());
  const uint16_t freed = (*a)->group_id();
  a->reset();
  auto c = BufferRing::create(*loop, 4, 64);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)->group_id(), freed);
}

}  // namespace
}  // namespace herald::uring
