// Writes the seed corpus of frame_decoder_fuzz: valid frame streams covering every frame type,
// each behind the fuzzer's two control bytes (limits, piece sizes). Run it when wire.fbs grows:
//   make_fuzz_seeds tests/fuzz/corpus/frame_decoder
#include <cstdio>
#include <string>
#include <vector>

#include "schemas/codec/frame_builder.h"
#include "schemas/codec/protocol.h"

namespace {

using herald::codec::FrameBuilder;
namespace wire = herald::wire;
using Bytes = std::vector<uint8_t>;

class Stream {
 public:
  Stream(uint8_t limits_byte, uint8_t split_byte) : bytes_{limits_byte, split_byte} {}

  template <typename Build>
  Stream& add(Build build) {
    FrameBuilder b;
    const std::span<const uint8_t> frame = build(b);
    bytes_.insert(bytes_.end(), frame.begin(), frame.end());
    return *this;
  }
  const Bytes& bytes() const { return bytes_; }

 private:
  Bytes bytes_;
};

const wire::AccountId kAlice(0x0123456789abcdef, 0x1111);
const wire::AccountId kBob(0x0fedcba987654321, 0x2222);
const wire::GroupId kGroup(0xaaaa, 0xbbbb);
const wire::DeviceAddress kAlicePhone(kAlice, 0);

std::span<const uint8_t> hello(FrameBuilder& b) {
  auto& f = b.fbb();
  return b.finish(wire::CreateHello(f, 1, 1, f.CreateString("herald-chat"), f.CreateString("0.1")));
}

std::span<const uint8_t> hello_ok(FrameBuilder& b) {
  auto& f = b.fbb();
  auto limits = wire::CreateLimits(f, 65536, 64000, 1024, 4, 256, 512, 1000, 300000);
  return b.finish(
      wire::CreateHelloOk(f, 1, 7, f.CreateString("herald 0.1"), 1700000000000, limits));
}

std::span<const uint8_t> auth(FrameBuilder& b) {
  auto& f = b.fbb();
  const Bytes token(48, 0x5a);
  return b.finish(wire::CreateAuth(f, f.CreateVector(token)));
}

std::span<const uint8_t> auth_ok(FrameBuilder& b) {
  return b.finish(wire::CreateAuthOk(b.fbb(), &kAlicePhone, 1700003600000, 3));
}

std::span<const uint8_t> auth_error(FrameBuilder& b) {
  auto& f = b.fbb();
  return b.finish(
      wire::CreateAuthError(f, wire::AuthErrorCode::Expired, f.CreateString("expired"), 0));
}

std::span<const uint8_t> message(FrameBuilder& b, wire::Recipient kind) {
  auto& f = b.fbb();
  flatbuffers::Offset<void> to;
  if (kind == wire::Recipient::ToGroup) to = wire::CreateToGroup(f, &kGroup).Union();
  if (kind == wire::Recipient::ToAccount) to = wire::CreateToAccount(f, &kBob).Union();
  const wire::DeviceAddress bob_laptop(kBob, 1);
  if (kind == wire::Recipient::ToDevice) to = wire::CreateToDevice(f, &bob_laptop).Union();
  const Bytes body = {'h', 'e', 'l', 'l', 'o'};
  return b.finish(wire::CreateMessage(f, kind, to, 42, f.CreateVector(body), 1, 1700000000001,
                                      wire::MessageFlags::NoPush));
}

std::span<const uint8_t> server_ack(FrameBuilder& b) {
  const wire::ServerMsgId id = herald::codec::make_server_msg_id(7, 1700000000002, 0, 1);
  return b.finish(wire::CreateServerAck(b.fbb(), 42, &id, 1700000000002));
}

std::span<const uint8_t> deliver(FrameBuilder& b) {
  auto& f = b.fbb();
  const wire::ServerMsgId id = herald::codec::make_server_msg_id(7, 1700000000002, 0, 1);
  auto to = wire::CreateToGroup(f, &kGroup);
  const Bytes body = {'h', 'i'};
  return b.finish(wire::CreateDeliver(f, &id, &kAlicePhone, wire::Recipient::ToGroup, to.Union(),
                                      f.CreateVector(body), 1, 1700000000001, 1700000000002));
}

std::span<const uint8_t> delivery_ack_and_receipt(FrameBuilder& b, bool receipt) {
  auto& f = b.fbb();
  const std::vector<wire::ServerMsgId> ids = {
      herald::codec::make_server_msg_id(7, 1700000000002, 0, 1),
      herald::codec::make_server_msg_id(7, 1700000000003, 1, 2)};
  auto vec = f.CreateVectorOfStructs(ids);
  if (!receipt) return b.finish(wire::CreateDeliveryAck(f, vec));
  return b.finish(wire::CreateReceipt(f, wire::ReceiptKind::Read, vec, &kAlice));
}

std::span<const uint8_t> presence(FrameBuilder& b) {
  return b.finish(wire::CreatePresence(b.fbb(), &kBob, wire::PresenceState::Online, 0));
}

std::span<const uint8_t> presence_subscribe(FrameBuilder& b) {
  auto& f = b.fbb();
  const std::vector<wire::AccountId> accounts = {kAlice, kBob};
  return b.finish(wire::CreatePresenceSubscribe(f, f.CreateVectorOfStructs(accounts)));
}

std::span<const uint8_t> typing(FrameBuilder& b) {
  auto& f = b.fbb();
  auto to = wire::CreateToAccount(f, &kBob);
  return b.finish(
      wire::CreateTyping(f, wire::Recipient::ToAccount, to.Union(), wire::TypingState::Started));
}

std::span<const uint8_t> group_op(FrameBuilder& b) {
  auto& f = b.fbb();
  const std::vector<wire::AccountId> members = {kBob};
  return b.finish(wire::CreateGroupOp(f, 5, wire::GroupOpKind::AddMembers, &kGroup,
                                      f.CreateVectorOfStructs(members)));
}

std::span<const uint8_t> group_op_result(FrameBuilder& b) {
  auto& f = b.fbb();
  const std::vector<wire::AccountId> members = {kAlice, kBob};
  return b.finish(wire::CreateGroupOpResult(f, 5, wire::GroupOpKind::AddMembers,
                                            wire::GroupResultCode::Ok, &kGroup, 2,
                                            f.CreateVectorOfStructs(members)));
}

std::span<const uint8_t> group_update(FrameBuilder& b) {
  auto& f = b.fbb();
  const std::vector<wire::AccountId> members = {kBob};
  return b.finish(wire::CreateGroupUpdate(f, &kGroup, 2, wire::GroupOpKind::AddMembers, &kAlice,
                                          f.CreateVectorOfStructs(members)));
}

std::span<const uint8_t> ping(FrameBuilder& b) {
  return b.finish(wire::CreatePing(b.fbb(), 77, 1700000000000));
}

std::span<const uint8_t> pong(FrameBuilder& b) {
  return b.finish(wire::CreatePong(b.fbb(), 77, 1700000000000, 1700000000005));
}

std::span<const uint8_t> error(FrameBuilder& b) {
  auto& f = b.fbb();
  return b.finish(wire::CreateError(f, wire::ErrorCode::RecipientNotFound,
                                    f.CreateString("no such account"), 42, false, 0));
}

bool write(const std::string& dir, const std::string& name, const Bytes& bytes) {
  const std::string path = dir + "/" + name;
  FILE* out = std::fopen(path.c_str(), "wb");
  if (out == nullptr) return false;
  const bool ok = std::fwrite(bytes.data(), 1, bytes.size(), out) == bytes.size();
  return std::fclose(out) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  auto to_group = [](FrameBuilder& b) { return message(b, wire::Recipient::ToGroup); };
  auto to_account = [](FrameBuilder& b) { return message(b, wire::Recipient::ToAccount); };
  auto to_device = [](FrameBuilder& b) { return message(b, wire::Recipient::ToDevice); };
  auto ack = [](FrameBuilder& b) { return delivery_ack_and_receipt(b, false); };
  auto receipt = [](FrameBuilder& b) { return delivery_ack_and_receipt(b, true); };

  bool ok = true;
  // Control bytes: [0] even = default limits, odd = small limits; [1] seeds the piece sizes.
  ok &= write(dir, "handshake", Stream(0x00, 0x01).add(hello).add(auth).bytes());
  ok &= write(dir, "server_handshake",
              Stream(0x00, 0x02).add(hello_ok).add(auth_ok).add(auth_error).bytes());
  ok &= write(
      dir, "messages",
      Stream(0x00, 0x03).add(to_group).add(to_account).add(to_device).add(server_ack).bytes());
  ok &= write(dir, "delivery", Stream(0x00, 0x04).add(deliver).add(ack).add(receipt).bytes());
  ok &= write(dir, "signals",
              Stream(0x00, 0x05).add(presence).add(presence_subscribe).add(typing).bytes());
  ok &= write(dir, "groups",
              Stream(0x00, 0x06).add(group_op).add(group_op_result).add(group_update).bytes());
  ok &= write(dir, "liveness", Stream(0x00, 0x07).add(ping).add(pong).add(error).bytes());
  ok &= write(dir, "small_limits", Stream(0x21, 0x08).add(to_group).add(ping).bytes());
  if (!ok) {
    std::fprintf(stderr, "cannot write seeds into %s\n", dir.c_str());
    return 1;
  }
  return 0;
}
