// Tests for the protocol constants and the schemas themselves: version negotiation, the
// ServerMsgId layout, the frame builder, and the numbers the protocol freezes (union and enum
// values), so an accidental reorder of a schema fails here instead of in the field.
#include "schemas/codec/protocol.h"

#include <gtest/gtest.h>

#include <string>

#include "flatbuffers/idl.h"
#include "schemas/admin_fbs.h"
#include "schemas/admin_generated.h"
#include "schemas/codec/frame_builder.h"
#include "schemas/codec/frame_decoder.h"
#include "schemas/config_api_fbs.h"
#include "schemas/config_fbs.h"
#include "schemas/ipc_generated.h"
#include "schemas/public_api_fbs.h"
#include "schemas/wire_fbs.h"

namespace herald::codec {
namespace {

TEST(Protocol, NegotiatesTheHighestCommonVersion) {
  EXPECT_EQ(negotiate_version(1, 1), 1);
  EXPECT_EQ(negotiate_version(1, 9), kProtocolVersionMax);
  EXPECT_EQ(negotiate_version(1, 5, 2, 4), 4);
  EXPECT_EQ(negotiate_version(3, 9, 2, 4), 4);
  EXPECT_EQ(negotiate_version(3, 3, 2, 4), 3);
  EXPECT_EQ(negotiate_version(5, 9, 2, 4), 0);  // client too new
  EXPECT_EQ(negotiate_version(0, 1, 2, 4), 0);  // client too old
  EXPECT_EQ(negotiate_version(4, 2, 1, 9), 0);  // inverted range
  EXPECT_EQ(negotiate_version(0, 0), 0);
}

TEST(Protocol, ServerMsgIdLayout) {
  const uint64_t time_ms = 1'700'000'000'123;
  const wire::ServerMsgId id = make_server_msg_id(513, time_ms, 7, 987654321);
  EXPECT_EQ(server_msg_node_id(id), 513);
  EXPECT_EQ(server_msg_time_ms(id), time_ms);
  EXPECT_EQ(server_msg_worker(id), 7);
  EXPECT_EQ(server_msg_sequence(id), 987654321u);
  EXPECT_EQ(id.hi(), time_ms << 16 | 513);
  EXPECT_EQ(id.lo(), uint64_t{7} << 56 | 987654321);
  // Fields are truncated to their width, never spill into a neighbour.
  const wire::ServerMsgId big = make_server_msg_id(0xffff, ~uint64_t{0}, 0xff, ~uint64_t{0});
  EXPECT_EQ(server_msg_node_id(big), 0xffff);
  EXPECT_EQ(server_msg_time_ms(big), kServerMsgTimeMaxMs);
  EXPECT_EQ(server_msg_worker(big), 0xff);
  EXPECT_EQ(server_msg_sequence(big), kServerMsgSequenceMax);
}

TEST(Protocol, ServerMsgIdsOrderByTimeFirst) {
  const wire::ServerMsgId early_far_node = make_server_msg_id(9, 1000, 3, 50);
  const wire::ServerMsgId late_near_node = make_server_msg_id(1, 1001, 0, 0);
  const wire::ServerMsgId same_ms_next = make_server_msg_id(9, 1000, 3, 51);
  EXPECT_TRUE(server_msg_id_less(early_far_node, late_near_node));
  EXPECT_FALSE(server_msg_id_less(late_near_node, early_far_node));
  EXPECT_TRUE(server_msg_id_less(early_far_node, same_ms_next));
  EXPECT_FALSE(server_msg_id_less(early_far_node, early_far_node));
}

// The union and enum numbers are on the wire: these may only ever be appended to.
TEST(Schemas, WireNumbersAreFrozen) {
  EXPECT_EQ(static_cast<int>(wire::Payload::Hello), 1);
  EXPECT_EQ(static_cast<int>(wire::Payload::Auth), 3);
  EXPECT_EQ(static_cast<int>(wire::Payload::Message), 6);
  EXPECT_EQ(static_cast<int>(wire::Payload::ServerAck), 7);
  EXPECT_EQ(static_cast<int>(wire::Payload::Deliver), 8);
  EXPECT_EQ(static_cast<int>(wire::Payload::DeliveryAck), 9);
  EXPECT_EQ(static_cast<int>(wire::Payload::Receipt), 10);
  EXPECT_EQ(static_cast<int>(wire::Payload::GroupOp), 14);
  EXPECT_EQ(static_cast<int>(wire::Payload::Ping), 17);
  EXPECT_EQ(static_cast<int>(wire::Payload::Error), 19);
  EXPECT_EQ(static_cast<int>(wire::Payload::MAX), 19);
  EXPECT_EQ(static_cast<int>(wire::Recipient::ToAccount), 1);
  EXPECT_EQ(static_cast<int>(wire::Recipient::ToDevice), 2);
  EXPECT_EQ(static_cast<int>(wire::Recipient::ToGroup), 3);
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::MalformedFrame), 100);
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::SessionReplaced), 108);
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::SessionRevoked), 109);
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::SessionExpired), 110);
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::RecipientNotFound), 200);
  EXPECT_EQ(static_cast<int>(wire::ErrorCode::Overloaded), 300);
  EXPECT_EQ(static_cast<int>(wire::MessageFlags::NoPush), 1);
  EXPECT_EQ(static_cast<int>(wire::MessageFlags::Ephemeral), 2);
  EXPECT_EQ(std::string(wire::FrameIdentifier()), "HRLD");
  EXPECT_EQ(sizeof(wire::AccountId), 16u);
  EXPECT_EQ(sizeof(wire::DeviceAddress), 24u);
  EXPECT_EQ(sizeof(wire::ServerMsgId), 16u);
}

TEST(Schemas, IpcNumbersAreFrozen) {
  EXPECT_EQ(static_cast<int>(ipc::Record::Hello), 1);
  EXPECT_EQ(static_cast<int>(ipc::Record::StoreAppend), 3);
  EXPECT_EQ(static_cast<int>(ipc::Record::AppendDurable), 6);
  EXPECT_EQ(static_cast<int>(ipc::Record::PushHint), 12);
  EXPECT_EQ(static_cast<int>(ipc::Record::ConfigPush), 13);
  EXPECT_EQ(static_cast<int>(ipc::Record::DeviceListRequest), 14);
  EXPECT_EQ(static_cast<int>(ipc::Record::DeviceListResponse), 15);
  EXPECT_EQ(static_cast<int>(ipc::Record::DeviceListPush), 16);
  EXPECT_EQ(static_cast<int>(ipc::Record::DrainKick), 17);
  EXPECT_EQ(static_cast<int>(ipc::Record::MAX), 17);
  EXPECT_EQ(std::string(ipc::EnvelopeIdentifier()), "HIPC");
  EXPECT_EQ(sizeof(ipc::AppendOutcome), 16u);
}

// The embedded texts are what run-time parsers use; they must parse as they are.
TEST(Schemas, EmbeddedSchemaTextsParse) {
  for (std::string_view text : {schemas::kWireFbs, schemas::kConfigFbs, schemas::kAdminFbs,
                                schemas::kConfigApiFbs, schemas::kPublicApiFbs}) {
    flatbuffers::Parser parser;
    const std::string copy(text);
    EXPECT_TRUE(parser.Parse(copy.c_str())) << parser.error_;
  }
}

// Admin bodies go through the JSON parser and generator; check one round trip.
TEST(Schemas, AdminErrorBodyJsonRoundTrip) {
  flatbuffers::IDLOptions options;
  options.strict_json = true;
  flatbuffers::Parser parser(options);
  const std::string schema(schemas::kAdminFbs);
  ASSERT_TRUE(parser.Parse(schema.c_str())) << parser.error_;
  ASSERT_TRUE(parser.SetRootType("herald.admin.ErrorBody"));
  ASSERT_TRUE(parser.ParseJson(
      R"({"error": "invalid_config", "message": "bad", "field": "limits.max_frame_bytes"})"))
      << parser.error_;
  const auto* body = flatbuffers::GetRoot<admin::ErrorBody>(parser.builder_.GetBufferPointer());
  EXPECT_EQ(body->error()->str(), "invalid_config");
  EXPECT_EQ(body->field()->str(), "limits.max_frame_bytes");
  std::string json;
  ASSERT_TRUE(flatbuffers::GenerateText(parser, parser.builder_.GetBufferPointer(), &json));
  EXPECT_NE(json.find("\"invalid_config\""), std::string::npos) << json;
}

TEST(FrameBuilder, FramesAreAlignedPrefixedAndVerify) {
  FrameBuilder b;
  for (uint64_t nonce = 0; nonce < 5; ++nonce) {
    b.clear();
    EXPECT_TRUE(b.bytes().empty());
    const std::span<const uint8_t> frame = b.finish(wire::CreatePing(b.fbb(), nonce, 0));
    ASSERT_GE(frame.size(), kFramePrefixBytes + kMinFrameBytes);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(frame.data()) % kFrameAlignment, 0u);
    EXPECT_EQ(frame.size() % kFrameAlignment, 0u);
    const uint32_t length = uint32_t{frame[0]} | uint32_t{frame[1]} << 8 |
                            uint32_t{frame[2]} << 16 | uint32_t{frame[3]} << 24;
    EXPECT_EQ(length, frame.size() - kFramePrefixBytes);
    FrameView view;
    ASSERT_EQ(verify_frame(frame, DecoderLimits{}, &view), FrameError::kNone);
    EXPECT_EQ(view.frame->payload_as_Ping()->nonce(), nonce);
  }
}

TEST(FrameBuilder, ObjectApiRoundTrip) {
  wire::FrameT in;
  wire::DeliverT deliver;
  deliver.server_msg_id = std::make_unique<wire::ServerMsgId>(make_server_msg_id(3, 99, 1, 2));
  deliver.sender = std::make_unique<wire::DeviceAddress>(wire::AccountId(5, 6), 2);
  deliver.body = {9, 8, 7};
  wire::ToAccountT to;
  to.account = std::make_unique<wire::AccountId>(7, 8);
  deliver.to.Set(std::move(to));
  in.payload.Set(std::move(deliver));

  FrameBuilder b;
  const std::span<const uint8_t> frame = b.finish(in);
  FrameView view;
  ASSERT_EQ(verify_frame(frame, DecoderLimits{}, &view), FrameError::kNone);
  ASSERT_EQ(view.type(), wire::Payload::Deliver);
  const wire::Deliver* d = view.frame->payload_as_Deliver();
  EXPECT_EQ(server_msg_node_id(*d->server_msg_id()), 3);
  EXPECT_EQ(d->sender()->device(), 2u);
  EXPECT_EQ(d->body()->size(), 3u);
  EXPECT_EQ(d->to_as_ToAccount()->account()->lo(), 8u);
}

}  // namespace
}  // namespace herald::codec
