// MessageIdMinter: the wire.fbs layout, growth when the wall clock steps back, the control
// plane's floor after a restart.
#include "dataplane/routing/message_ids.h"

#include <gtest/gtest.h>

namespace herald::dataplane::routing {
namespace {

TEST(MessageIds, LayoutMatchesWireFbs) {
  const MessageIdParts parts{0x0123456789abULL, 0xbeef, 0x7f, 0x00aabbccddeeffULL};
  const wire::ServerMsgId id = make_message_id(parts);
  EXPECT_EQ(id.hi(), 0x0123456789abULL << 16 | 0xbeef);
  EXPECT_EQ(id.lo(), 0x7fULL << 56 | 0x00aabbccddeeffULL);
  const MessageIdParts back = split_message_id(id);
  EXPECT_EQ(back.unix_ms, parts.unix_ms);
  EXPECT_EQ(back.node, parts.node);
  EXPECT_EQ(back.worker, parts.worker);
  EXPECT_EQ(back.sequence, parts.sequence);
  // The widest values round-trip.
  const MessageIdParts max{kMaxMessageIdUnixMs, 0xffff, 0xff, kMaxMessageIdSequence};
  const MessageIdParts max_back = split_message_id(make_message_id(max));
  EXPECT_EQ(max_back.unix_ms, kMaxMessageIdUnixMs);
  EXPECT_EQ(max_back.sequence, kMaxMessageIdSequence);
  EXPECT_EQ(max_back.worker, 0xff);
}

TEST(MessageIds, CarriesNodeWorkerTimeAndGrowingSequence) {
  MessageIdMinter minter(7, 3);
  const MintedId a = minter.mint(1'700'000'000'000);
  const MintedId b = minter.mint(1'700'000'000'000);
  EXPECT_EQ(a.server_time_ms, 1'700'000'000'000u);
  const MessageIdParts pa = split_message_id(a.id), pb = split_message_id(b.id);
  EXPECT_EQ(pa.node, 7);
  EXPECT_EQ(pa.worker, 3);
  EXPECT_EQ(pa.unix_ms, 1'700'000'000'000u);
  EXPECT_EQ(pb.sequence, pa.sequence + 1);
  EXPECT_TRUE(message_id_less(a.id, b.id));
  EXPECT_EQ(minter.stats().minted, 2u);
}

TEST(MessageIds, ClockSteppingBackKeepsIdsGrowing) {
  MessageIdMinter minter(1, 0);
  wire::ServerMsgId last = minter.mint(5'000).id;
  // The wall clock jumps back by a second, then creeps forward again.
  for (uint64_t now : {4'000u, 4'001u, 4'999u, 5'000u, 5'001u, 3'000u, 6'000u}) {
    const MintedId next = minter.mint(now);
    EXPECT_TRUE(message_id_less(last, next.id)) << now;
    EXPECT_GE(next.server_time_ms, 5'000u);
    last = next.id;
  }
  EXPECT_EQ(split_message_id(last).unix_ms, 6'000u);
  EXPECT_EQ(minter.stats().clock_behind, 4u);  // 4000, 4001, 4999, 3000
}

TEST(MessageIds, NeverAtOrBelowTheControlPlaneFloor) {
  // A restarted worker: its sequence starts again at 0, so a time equal to the floor could
  // repeat an id issued before the restart.
  MessageIdMinter minter(1, 2);
  minter.raise_floor(10'000);
  const MintedId a = minter.mint(9'000);  // the clock is behind the store's newest id
  EXPECT_EQ(a.server_time_ms, 10'001u);
  EXPECT_EQ(minter.stats().floor_raised, 1u);
  const MintedId b = minter.mint(10'000);  // still at the floor: held above it
  EXPECT_EQ(b.server_time_ms, 10'001u);
  EXPECT_TRUE(message_id_less(a.id, b.id));
  const MintedId c = minter.mint(20'000);  // past the floor: the wall clock again
  EXPECT_EQ(c.server_time_ms, 20'000u);
  // A lower floor later (a control plane restart that lost nothing) changes nothing.
  minter.raise_floor(5);
  EXPECT_EQ(minter.mint(20'000).server_time_ms, 20'000u);
  // A higher one moves every later id above it.
  minter.raise_floor(30'000);
  EXPECT_EQ(minter.mint(20'000).server_time_ms, 30'001u);
}

TEST(MessageIds, TimeSaturatesAt48BitsAndStaysUnique) {
  MessageIdMinter minter(1, 1);
  minter.raise_floor(~uint64_t{0});  // a nonsense floor from a broken peer must not crash
  const MintedId a = minter.mint(0);
  const MintedId b = minter.mint(~uint64_t{0});
  EXPECT_EQ(a.server_time_ms, kMaxMessageIdUnixMs);
  EXPECT_EQ(b.server_time_ms, kMaxMessageIdUnixMs);
  EXPECT_TRUE(message_id_less(a.id, b.id));
  EXPECT_EQ(minter.stats().time_saturated, 1u);  // b only: a was held by the floor
}

TEST(MessageIds, WorkersOfOneNodeNeverCollide) {
  MessageIdMinter w0(9, 0), w1(9, 1);
  const MintedId a = w0.mint(1'000), b = w1.mint(1'000);
  EXPECT_FALSE(message_id_equal(a.id, b.id));
  EXPECT_EQ(a.id.hi(), b.id.hi());  // same ms, same node: the worker byte tells them apart
}

}  // namespace
}  // namespace herald::dataplane::routing
