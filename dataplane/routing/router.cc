// WorkerRouter: one worker's message path (dedup, ids, recipients, online delivery, the
// durability rule through the store client), offline drains, device acks, receipts and typing.
#include "dataplane/routing/router.h"

#include <algorithm>
#include <cstring>

#include "platform/assert/assert.h"

namespace herald::dataplane::routing {

namespace {

// Hand-off kinds on the worker mesh (MeshHandoff.kind).
enum MeshKind : uint32_t {
  kDeliverFrame = 1,  // connection: the recipient session; payload: an encoded frame
  // A login asks every other worker for the device's dedup entries (tag: the new connection;
  // payload: DeviceHeader). `connection`, when set, is the device's replaced session there.
  kDedupQuery = 2,
  kDeviceAck = 3,     // payload: DeviceAckRecord, for the worker that minted the id
  kPresence = 4,      // payload: account hi, lo (16 bytes), then the Presence frame
  kDedupRecords = 5,  // the answer, in chunks (connection: the new session; DeviceHeader, then
                      // DedupWire records; header.last on the final chunk)
  kDedupOutcome = 6,  // a handed-over pending message was answered (DeviceHeader, DedupWire)
  kDrainKick = 7,     // connection: the device's session; payload: DeviceHeader (see kick_drain)
};

struct DeviceHeader {
  uint64_t account_hi, account_lo;
  uint32_t device, last;
};
static_assert(sizeof(DeviceHeader) == 24);
// One dedup entry on the mesh. `state`: 0 pending, 1 acked; in kDedupOutcome 1 = ServerAck,
// else 0x10000 | the ErrorCode.
struct DedupWire {
  uint64_t client_msg_id, id_hi, id_lo, server_time_ms, state;
};
static_assert(sizeof(DedupWire) == 40);

DeviceHeader header_of(const wire::DeviceAddress& d, bool last) {
  return {d.account().hi(), d.account().lo(), d.device(), last ? 1u : 0u};
}
wire::DeviceAddress device_of(const DeviceHeader& h) {
  return wire::DeviceAddress(wire::AccountId(h.account_hi, h.account_lo), h.device);
}

// kDeviceAck payload: the acking device and the id it acked.
struct DeviceAckRecord {
  uint64_t account_hi, account_lo;
  uint32_t device, pad;
  uint64_t id_hi, id_lo;
};
static_assert(sizeof(DeviceAckRecord) == 40);

bool same_device(const wire::DeviceAddress& a, const wire::DeviceAddress& b) {
  return a.device() == b.device() && a.account().hi() == b.account().hi() &&
         a.account().lo() == b.account().lo();
}
bool device_less(const wire::DeviceAddress& a, const wire::DeviceAddress& b) {
  if (a.account().hi() != b.account().hi()) return a.account().hi() < b.account().hi();
  if (a.account().lo() != b.account().lo()) return a.account().lo() < b.account().lo();
  return a.device() < b.device();
}

// Copies a Recipient union (a Message's or a stored Deliver's `to`) into `fbb`.
flatbuffers::Offset<void> copy_recipient(flatbuffers::FlatBufferBuilder& fbb, wire::Recipient type,
                                         const void* to) {
  if (to == nullptr) return 0;
  switch (type) {
    case wire::Recipient::ToAccount:
      return wire::CreateToAccount(fbb, static_cast<const wire::ToAccount*>(to)->account()).Union();
    case wire::Recipient::ToDevice:
      return wire::CreateToDevice(fbb, static_cast<const wire::ToDevice*>(to)->device()).Union();
    case wire::Recipient::ToGroup:
      return wire::CreateToGroup(fbb, static_cast<const wire::ToGroup*>(to)->group()).Union();
    default: return 0;
  }
}

// A Deliver frame for `d` (a stored message from a drain), encoded as the session sends it.
std::span<const uint8_t> encode_deliver(codec::FrameBuilder& frames, const wire::Deliver& d) {
  frames.clear();
  auto& fbb = frames.fbb();
  const auto to = copy_recipient(fbb, d.to_type(), d.to());
  const auto body = d.body() ? fbb.CreateVector(d.body()->data(), d.body()->size())
                             : fbb.CreateVector(static_cast<const uint8_t*>(nullptr), 0);
  return frames.finish(wire::CreateDeliver(fbb, d.server_msg_id(), d.sender(), d.to_type(), to,
                                           body, d.content_type(), d.client_time_ms(),
                                           d.server_time_ms(), d.flags(), d.client_msg_id()));
}

// Receipt waiters (device-list lookups) and receipt appends (store cookies) carry this bit;
// message ids (pending ids) never reach it.
constexpr uint64_t kReceiptToken = uint64_t{1} << 63;

// A Receipt frame for `r` with the server's own id (to DeliveryAck it) and `stored` (from a
// queue, so the client must ack it).
std::span<const uint8_t> encode_receipt(codec::FrameBuilder& frames, const wire::Receipt& r,
                                        const wire::ServerMsgId* id, bool stored) {
  frames.clear();
  auto& fbb = frames.fbb();
  const auto ids =
      r.message_ids() != nullptr
          ? fbb.CreateVectorOfStructs(
                reinterpret_cast<const wire::ServerMsgId*>(r.message_ids()->Data()),
                r.message_ids()->size())
          : fbb.CreateVectorOfStructs(static_cast<const wire::ServerMsgId*>(nullptr), 0);
  return frames.finish(
      wire::CreateReceipt(fbb, r.kind(), ids, r.to(), r.from(), r.client_time_ms(), id, stored));
}

bool has_device(std::span<const uint32_t> devices, uint32_t device) {
  return std::find(devices.begin(), devices.end(), device) != devices.end();
}

}  // namespace

// A receipt waiting for its addressee's device list: the queue entry as built, and the devices
// already tried live (and of those, reached), so the answer neither repeats nor misses one.
struct WorkerRouter::HeldReceipt {
  std::vector<uint8_t> deliver;  // a finished wire::Deliver (with its `receipt`)
  wire::AccountId to;
  wire::DeviceAddress sender;
  std::vector<uint32_t> tried;
  std::vector<uint32_t> reached;
};

// One authenticated session of this worker.
struct WorkerRouter::Session {
  SessionPort* port = nullptr;
  ConnectionId connection = kNoConnection;
  wire::DeviceAddress device;
  // The offline drain: the store request in progress (0: none), whether the queue may hold
  // more than was sent, the last id sent (the next request starts after it), and the drained
  // Delivers not acknowledged yet (the flow-control window).
  uint64_t drain_request = 0;
  bool drain_wanted = false;
  // A kick arrived while a request was in flight: the store may have answered it before the
  // kicked message was durable, so an "empty" answer is asked again once.
  bool drain_kicked = false;
  bool has_cursor = false;
  wire::ServerMsgId cursor;
  std::vector<wire::ServerMsgId> drained_unacked;
  uint64_t drain_retry_ns = 0;  // a refused or failed drain is asked again from poll()
  std::vector<wire::AccountId> subscriptions;  // Presence of these accounts is sent here
  // Dedup hand-over: answers still expected from other workers; Messages held until then
  // (copies; at most the session's max_unacked_messages).
  uint32_t handover_waiting = 0;
  uint64_t handover_deadline_ns = 0;
  std::vector<flatbuffers::DetachedBuffer> held_messages;
};

// A Message taken and not answered yet: held for device lists, or waiting for its outcome.
struct WorkerRouter::Pending {
  ConnectionId sender_connection = kNoConnection;
  wire::DeviceAddress sender;
  uint64_t client_msg_id = 0;
  DedupHint dedup_entry;  // where the window holds (sender, client_msg_id), while it does
  MintedId id;
  std::vector<uint8_t> frame;  // the Deliver, encoded once for every recipient
  // Resends of the same client_msg_id (a new connection of the sender) answered with it.
  std::vector<ConnectionId> joined;
  std::vector<Recipient> recipients;
  uint32_t waiting = 0;  // device-list answers outstanding
  wire::ErrorCode lookup_error = wire::ErrorCode::Unspecified;
  uint64_t append_id = 0;
  bool ephemeral = false;
  bool no_push = false;

  // As new, keeping the vectors' capacity (every other field from its initializer above).
  void reset() {
    std::vector<uint8_t> kept_frame = std::move(frame);
    std::vector<ConnectionId> kept_joined = std::move(joined);
    std::vector<Recipient> kept_recipients = std::move(recipients);
    *this = Pending{};
    kept_frame.clear();
    kept_joined.clear();
    kept_recipients.clear();
    frame = std::move(kept_frame);
    joined = std::move(kept_joined);
    recipients = std::move(kept_recipients);
  }
};

std::unique_ptr<WorkerRouter::Pending> WorkerRouter::take_pending() {
  if (spare_pendings_.empty()) return std::make_unique<Pending>();
  std::unique_ptr<Pending> p = std::move(spare_pendings_.back());
  spare_pendings_.pop_back();
  return p;
}

void WorkerRouter::recycle(std::unique_ptr<Pending> p) {
  if (spare_pendings_.size() >= kMaxSparePendings) return;  // freed
  p->reset();
  spare_pendings_.push_back(std::move(p));
}

WorkerRouter::WorkerRouter(const WorkerRouterOptions& options, clock::Clock clock,
                           Directory& directory, StoreClient& store, MeshEndpoint& mesh)
    : options_(options),
      clock_(clock),
      directory_(directory),
      store_(store),
      mesh_(mesh),
      minter_(options.node_id, static_cast<uint8_t>(options.worker)),
      dedup_(options.dedup),
      groups_(options.groups),
      device_lists_(options.device_lists, *this),
      records_scratch_(options.dedup.window_per_device),
      online_scratch_(options.device_lists.max_devices_per_account) {
  HERALD_CHECK(options.worker < 256 && options.worker < options.workers,
               "worker index must fit ServerMsgId's 8 bits and the worker count");
  HERALD_CHECK(options.drain_window_messages > 0, "a drain window of 0 would never drain");
  HERALD_CHECK(options.handover_chunk_records > 0, "hand-over chunks need records");
}

WorkerRouter::~WorkerRouter() = default;

uint64_t WorkerRouter::unix_ms() const {
  return static_cast<uint64_t>(static_cast<int64_t>(now_ns() / 1'000'000) +
                               options_.unix_offset_ms);
}

WorkerRouter::Session* WorkerRouter::find_session(ConnectionId c) {
  std::unique_ptr<Session>* s = sessions_.find(c);
  return s == nullptr ? nullptr : s->get();
}

WorkerRouter::Pending* WorkerRouter::find_pending(uint64_t pending_id) {
  std::unique_ptr<Pending>* p = pending_.find(pending_id);
  return p == nullptr ? nullptr : p->get();
}

WorkerRouter::Pending& WorkerRouter::pending_at(uint64_t pending_id) {
  Pending* p = find_pending(pending_id);
  HERALD_CHECK(p != nullptr, "pending message missing from the router's map");
  return *p;
}

const wire::Deliver& WorkerRouter::deliver_of(const Pending& p) const {
  return *flatbuffers::GetSizePrefixedRoot<wire::Frame>(p.frame.data())->payload_as_Deliver();
}

// ---- Sessions ------------------------------------------------------------------------------

uint32_t WorkerRouter::attach(SessionPort& session) {
  ++stats_.attaches;
  const wire::DeviceAddress device = session.device();
  const ConnectionId connection = session.connection();
  const Login login = directory_.login(device, {options_.worker, connection});
  if (login.result == LoginResult::kFull) {
    ++stats_.logins_refused;
    session.close_with_error(wire::ErrorCode::Overloaded, "too many devices online");
    return 0;
  }
  auto s = std::make_unique<Session>();
  s->port = &session;
  s->connection = connection;
  s->device = device;
  Session& self = *s;
  *sessions_.try_emplace(connection).first = std::move(s);
  if (login.result == LoginResult::kReplaced) {
    // One live session per device: the older one goes, wherever it is. Its detach may run
    // right here (re-entrantly); it must not end the drain of this one, which starts after.
    if (login.previous.worker == options_.worker) {
      ++stats_.replaced_local;
      if (Session* old = find_session(login.previous.connection); old != nullptr) {
        old->port->close_with_error(wire::ErrorCode::SessionReplaced,
                                    "a newer session of this device logged in");
      }
    } else {
      ++stats_.replaced_remote;
    }
  }
  // The device's dedup entries may be on any worker (its last session's, or one whose session
  // already left): ask every other one, and hold this session's Messages until they answered,
  // so a resend is recognised wherever the first copy was taken.
  const DeviceHeader h = header_of(device, false);
  for (uint16_t w = 0; w < options_.workers; ++w) {
    if (w == options_.worker) continue;
    const bool replaced = login.result == LoginResult::kReplaced && login.previous.worker == w;
    const MeshHandoff query{.kind = kDedupQuery,
                            .connection = replaced ? login.previous.connection : kNoConnection,
                            .tag = connection,
                            .payload = std::span(reinterpret_cast<const uint8_t*>(&h), sizeof h)};
    if (mesh_.send(w, query) == MeshRefusal::kNone) {
      ++self.handover_waiting;
    } else {
      ++stats_.handover_send_failed;  // that worker's entries are not waited for
    }
  }
  if (self.handover_waiting > 0) {
    self.handover_deadline_ns = now_ns() + options_.handover_timeout_ns;
    timers_.push({self.handover_deadline_ns, connection, TimerKind::kHandover});
  }
  start_drain(self);
  return 0;
}

void WorkerRouter::detach(SessionPort& session) {
  const ConnectionId connection = session.connection();
  const wire::DeviceAddress device = session.device();
  Session* s = find_session(connection);
  if (s == nullptr) return;  // a refused login
  ++stats_.detaches;
  directory_.logout(device, {options_.worker, connection});
  // The device's drains end, unless a newer session of it on this worker owns them now.
  const auto now_at = directory_.find(device);
  if (!now_at || now_at->worker != options_.worker) store_.forget_drains(device);
  unsubscribe(*s);
  sessions_.erase(connection);
  sessions_.shrink_when_sparse();
}

// ---- Messages ------------------------------------------------------------------------------

void WorkerRouter::complete(ConnectionId c, uint64_t client_msg_id, const MintedId& id,
                            wire::ErrorCode error) {
  Session* s = find_session(c);
  if (s == nullptr) return;  // the sender left: its resend on a new session is deduplicated
  const bool ok = error == wire::ErrorCode::Unspecified;
  s->port->complete_message(client_msg_id, ok ? &id.id : nullptr, id.server_time_ms, error);
}

void WorkerRouter::on_message(SessionPort& from, const wire::Message& message) {
  if (Session* s = find_session(from.connection()); s != nullptr && s->handover_waiting > 0) {
    // Copied: the reference is valid only during this call.
    flatbuffers::FlatBufferBuilder b(256 + (message.body() ? message.body()->size() : 0));
    const auto to = copy_recipient(b, message.to_type(), message.to());
    const auto body = message.body()
                          ? b.CreateVector(message.body()->data(), message.body()->size())
                          : b.CreateVector(static_cast<const uint8_t*>(nullptr), 0);
    b.Finish(wire::CreateMessage(b, message.to_type(), to, message.client_msg_id(), body,
                                 message.content_type(), message.client_time_ms(),
                                 message.flags()));
    s->held_messages.push_back(b.Release());
    ++stats_.held_for_handover;
    return;
  }
  ++stats_.messages;
  const wire::DeviceAddress sender = from.device();
  const uint64_t client_msg_id = message.client_msg_id();
  const DedupCheck check = dedup_.find(sender, client_msg_id);
  if (check.verdict == DedupVerdict::kAcked) {
    ++stats_.resends_acked;
    ++stats_.server_acks;
    from.complete_message(client_msg_id, &check.server.id, check.server.server_time_ms,
                          wire::ErrorCode::Unspecified);
    return;
  }
  if (check.verdict == DedupVerdict::kPending) {
    if (const uint64_t* pending_id = pending_by_lo_.find(check.server.id.lo())) {
      ++stats_.resends_joined;
      pending_at(*pending_id).joined.push_back(from.connection());
      return;
    }
    // Pending on the worker that handed the entry over: its answer comes as kDedupOutcome.
    ++stats_.resends_joined_remote;
    RemoteJoin& join = remote_joins_[{sender.account().hi(), sender.account().lo(), sender.device(),
                                      client_msg_id}];
    if (join.connections.empty()) join.deadline_ns = now_ns() + options_.remote_join_timeout_ns;
    join.connections.push_back(from.connection());
    return;
  }
  if (pending_.size() >= options_.max_pending_messages) {
    ++stats_.errors_overloaded;
    from.complete_message(client_msg_id, nullptr, 0, wire::ErrorCode::Overloaded);
    return;
  }
  if (message.to() == nullptr || message.to_type() == wire::Recipient::NONE) {
    ++stats_.errors_invalid;
    from.complete_message(client_msg_id, nullptr, 0, wire::ErrorCode::InvalidRequest);
    return;
  }
  const MintedId id = minter_.mint(unix_ms());
  const DedupHint dedup_entry = dedup_.insert_pending(sender, client_msg_id, id, &check);

  // The Deliver, encoded once: every recipient, the store and a held message use these bytes.
  frames_.clear();
  auto& fbb = frames_.fbb();
  const auto to = copy_recipient(fbb, message.to_type(), message.to());
  const auto body = message.body()
                        ? fbb.CreateVector(message.body()->data(), message.body()->size())
                        : fbb.CreateVector(static_cast<const uint8_t*>(nullptr), 0);
  const auto frame = frames_.finish(wire::CreateDeliver(
      fbb, &id.id, &sender, message.to_type(), to, body, message.content_type(),
      message.client_time_ms(), id.server_time_ms, message.flags(), client_msg_id));

  const uint64_t pending_id = next_pending_id_++;
  std::unique_ptr<Pending> p = take_pending();
  p->sender_connection = from.connection();
  p->sender = sender;
  p->client_msg_id = client_msg_id;
  p->dedup_entry = dedup_entry;
  p->id = id;
  p->frame.assign(frame.begin(), frame.end());
  const auto flags = static_cast<uint32_t>(message.flags());
  p->ephemeral = (flags & static_cast<uint32_t>(wire::MessageFlags::Ephemeral)) != 0;
  p->no_push = (flags & static_cast<uint32_t>(wire::MessageFlags::NoPush)) != 0;
  *pending_.try_emplace(pending_id).first = std::move(p);
  *pending_by_lo_.try_emplace(id.id.lo()).first = pending_id;
  resolve(pending_id);
}

WorkerRouter::Lookup WorkerRouter::add_account(Pending& p, uint64_t pending_id,
                                               const wire::AccountId& account, uint32_t only_device,
                                               std::vector<Recipient>& out) {
  (void)p;
  const DeviceListLookup l = device_lists_.lookup(account, pending_id, now_ns());
  switch (l.status) {
    case LookupStatus::kHit:
      for (uint32_t d : l.devices) {
        if (only_device == 0 || d == only_device) out.push_back({wire::DeviceAddress(account, d)});
      }
      return Lookup::kDone;
    case LookupStatus::kUnknownAccount: return Lookup::kUnknown;
    case LookupStatus::kWaiting: return Lookup::kWaiting;
    case LookupStatus::kBusy: return Lookup::kBusy;
  }
  return Lookup::kBusy;
}

// Finds the message's recipient devices (asking for device lists it lacks), then dispatches.
void WorkerRouter::resolve(uint64_t pending_id) {
  Pending& p = pending_at(pending_id);
  const wire::Deliver& d = deliver_of(p);
  std::vector<Recipient>& out = p.recipients;  // kept capacity: no allocation per message
  out.clear();
  uint32_t waiting = 0;
  bool busy = false;
  auto note = [&](Lookup l) {
    if (l == Lookup::kWaiting) ++waiting;
    if (l == Lookup::kBusy) busy = true;
    return l;
  };
  wire::ErrorCode error = wire::ErrorCode::Unspecified;
  switch (d.to_type()) {
    case wire::Recipient::ToDevice: {
      const wire::DeviceAddress* to = d.to_as_ToDevice()->device();
      if (to == nullptr) {
        error = wire::ErrorCode::InvalidRequest;
        break;
      }
      const size_t before = out.size();
      const Lookup l = note(add_account(p, pending_id, to->account(), to->device(), out));
      if (l == Lookup::kUnknown || (l == Lookup::kDone && out.size() == before)) {
        error = wire::ErrorCode::RecipientNotFound;
      }
      break;
    }
    case wire::Recipient::ToAccount: {
      const wire::AccountId* to = d.to_as_ToAccount()->account();
      if (to == nullptr) {
        error = wire::ErrorCode::InvalidRequest;
        break;
      }
      if (note(add_account(p, pending_id, *to, 0, out)) == Lookup::kUnknown) {
        error = wire::ErrorCode::RecipientNotFound;
      }
      break;
    }
    case wire::Recipient::ToGroup: {
      const wire::GroupId* group = d.to_as_ToGroup()->group();
      if (group == nullptr) {
        error = wire::ErrorCode::InvalidRequest;
      } else if (!groups_.contains(*group)) {
        error = wire::ErrorCode::RecipientNotFound;
      } else if (!groups_.is_member(*group, p.sender.account())) {
        error = wire::ErrorCode::NotGroupMember;
      } else {
        // A member account the control plane no longer knows is skipped (kUnknown).
        for (const wire::AccountId& member : groups_.members(*group)) {
          note(add_account(p, pending_id, member, 0, out));
          if (busy) break;
        }
      }
      break;
    }
    default: error = wire::ErrorCode::InvalidRequest;
  }
  // The sender's other devices get a copy.
  if (error == wire::ErrorCode::Unspecified && !busy) {
    note(add_account(p, pending_id, p.sender.account(), 0, out));
  }
  if (error == wire::ErrorCode::Unspecified && busy) error = wire::ErrorCode::Overloaded;
  if (error != wire::ErrorCode::Unspecified) {
    // Lookups still registered answer later and find nothing (or a failed message): the
    // pending entry is gone by then, so they are ignored.
    answer(pending_id, error);
    return;
  }
  if (waiting > 0) {
    if (p.waiting == 0 && p.lookup_error == wire::ErrorCode::Unspecified) {
      ++stats_.held_for_device_lists;
    }
    p.waiting = waiting;
    return;
  }
  // One entry per device, the sending device excluded.
  std::sort(out.begin(), out.end(),
            [](const Recipient& a, const Recipient& b) { return device_less(a.device, b.device); });
  out.erase(std::unique(out.begin(), out.end(),
                        [](const Recipient& a, const Recipient& b) {
                          return same_device(a.device, b.device);
                        }),
            out.end());
  out.erase(std::remove_if(out.begin(), out.end(),
                           [&](const Recipient& r) { return same_device(r.device, p.sender); }),
            out.end());
  if (out.size() > options_.max_recipients) {
    answer(pending_id, wire::ErrorCode::InvalidRequest);
    return;
  }
  dispatch(pending_id);
}

void WorkerRouter::device_list_answer(uint64_t waiter, const wire::AccountId& account,
                                      DeviceListResult result, std::span<const uint32_t> devices) {
  (void)account;
  (void)devices;  // cached now: resolve() looks it up again
  if ((waiter & kReceiptToken) != 0) {
    receipt_device_list_answer(waiter, result);
    return;
  }
  Pending* found = find_pending(waiter);
  if (found == nullptr || found->waiting == 0) return;  // answered meanwhile
  Pending& p = *found;
  if (result == DeviceListResult::kTimeout || result == DeviceListResult::kError) {
    p.lookup_error = wire::ErrorCode::StoreUnavailable;
  }
  if (--p.waiting > 0) return;
  if (p.lookup_error != wire::ErrorCode::Unspecified) {
    answer(waiter, p.lookup_error);
  } else {
    resolve(waiter);
  }
}

bool WorkerRouter::send_device_list_request(uint64_t request_id, const wire::AccountId& account) {
  auto& b = store_.builder();
  const bool ok = store_.send_record(ipc::CreateDeviceListRequest(b, request_id, &account));
  if (!ok) ++stats_.device_list_requests_dropped;
  return ok;
}

void WorkerRouter::on_device_list_response(const ipc::DeviceListResponse& r) {
  device_lists_.on_response(r, now_ns());
}
void WorkerRouter::on_device_list_push(const ipc::DeviceListPush& p) {
  device_lists_.on_push(p, now_ns());
}
void WorkerRouter::on_controlplane_hello(uint64_t server_msg_time_floor_ms) {
  minter_.raise_floor(server_msg_time_floor_ms);
  device_lists_.clear();
}

// Store first (a refused append delivers nothing, so a resend is never a duplicate), then
// every online recipient.
void WorkerRouter::dispatch(uint64_t pending_id) {
  Pending& p = pending_at(pending_id);
  if (p.recipients.empty()) {
    ++stats_.acks_no_recipients;
    answer(pending_id, wire::ErrorCode::Unspecified);
    return;
  }
  if (!p.ephemeral) {
    std::vector<wire::DeviceAddress>& devices = append_devices_scratch_;
    devices.clear();
    for (const Recipient& r : p.recipients) devices.push_back(r.device);
    const AppendResult a = store_.append(deliver_of(p), devices, p.client_msg_id, pending_id);
    if (!a.ok()) {
      answer(pending_id, wire::ErrorCode::StoreUnavailable);
      return;
    }
    ++stats_.appends;
    p.append_id = a.append_id;
  }
  // Copy: a local delivery may not re-enter the router, but keep the bytes stable regardless.
  for (Recipient& r : p.recipients) r.online = deliver_online(r.device, p.frame, &r.delivered_to);
  if (p.ephemeral) {
    ++stats_.acks_ephemeral;
    answer(pending_id, wire::ErrorCode::Unspecified);
  }
}

bool WorkerRouter::send_local(ConnectionId c, std::span<const uint8_t> frame) {
  Session* s = find_session(c);
  if (s == nullptr || !s->port->send_frame(frame)) {
    ++stats_.delivery_refused;
    return false;
  }
  ++stats_.delivered_local;
  return true;
}

bool WorkerRouter::deliver_online(const wire::DeviceAddress& device, std::span<const uint8_t> frame,
                                  ConnectionId* delivered_to) {
  const auto at = directory_.find(device);
  if (!at) return false;
  if (delivered_to != nullptr) *delivered_to = at->connection;
  if (at->worker == options_.worker) return send_local(at->connection, frame);
  if (at->worker >= options_.workers ||
      mesh_.send(at->worker,
                 {.kind = kDeliverFrame, .connection = at->connection, .payload = frame}) !=
          MeshRefusal::kNone) {
    ++stats_.delivery_refused;
    return false;
  }
  ++stats_.delivered_remote;
  return true;
}

// The one place a taken Message is finished: ServerAck (error Unspecified) or Error, to the
// sender and every resend that joined it; dedup remembers the ack or forgets the failure.
void WorkerRouter::answer(uint64_t pending_id, wire::ErrorCode error) {
  std::unique_ptr<Pending>* found = pending_.find(pending_id);
  if (found == nullptr) return;
  std::unique_ptr<Pending> p = std::move(*found);
  pending_.erase(pending_id);
  pending_by_lo_.erase(p->id.id.lo());
  if (error == wire::ErrorCode::Unspecified) {
    dedup_.mark_acked(p->sender, p->client_msg_id, p->dedup_entry);
    stats_.server_acks += 1 + p->joined.size();
  } else {
    dedup_.forget(p->sender, p->client_msg_id, p->dedup_entry);
    uint64_t* counter = &stats_.errors_store_unavailable;
    switch (error) {
      case wire::ErrorCode::RecipientNotFound: counter = &stats_.errors_recipient_not_found; break;
      case wire::ErrorCode::NotGroupMember: counter = &stats_.errors_not_group_member; break;
      case wire::ErrorCode::RecipientQueueFull: counter = &stats_.errors_queue_full; break;
      case wire::ErrorCode::Overloaded: counter = &stats_.errors_overloaded; break;
      case wire::ErrorCode::InvalidRequest: counter = &stats_.errors_invalid; break;
      default: break;
    }
    *counter += 1 + p->joined.size();
  }
  complete(p->sender_connection, p->client_msg_id, p->id, error);
  for (ConnectionId c : p->joined) complete(c, p->client_msg_id, p->id, error);
  // The sender moved to another worker (which may hold this entry, handed over as pending):
  // tell it, so it answers resends that joined there.
  if (options_.workers > 1 && find_session(p->sender_connection) == nullptr) {
    const auto at = directory_.find(p->sender);
    if (at && at->worker != options_.worker && at->worker < options_.workers) {
      struct {
        DeviceHeader h;
        DedupWire r;
      } msg{header_of(p->sender, true),
            {p->client_msg_id, p->id.id.hi(), p->id.id.lo(), p->id.server_time_ms,
             error == wire::ErrorCode::Unspecified ? 1u : 0x10000u | static_cast<uint32_t>(error)}};
      static_assert(sizeof msg == 64);
      if (mesh_.send(at->worker, {.kind = kDedupOutcome,
                                  .payload = std::span(reinterpret_cast<const uint8_t*>(&msg),
                                                       sizeof msg)}) != MeshRefusal::kNone) {
        ++stats_.handover_send_failed;
      }
    }
  }
  recycle(std::move(p));
}

void WorkerRouter::on_store_outcome(const StoreOutcome& o) {
  if ((o.cookie & kReceiptToken) != 0) {
    on_receipt_outcome(o);
    return;
  }
  Pending* found = find_pending(o.cookie);
  if (found == nullptr || found->append_id != o.append_id) {
    ++stats_.outcomes_unknown;  // answered already (every recipient acked first)
    return;
  }
  Pending& p = *found;
  switch (o.status) {
    case ipc::AppendStatus::Durable: {
      if (!o.queue_full.empty()) ++stats_.queue_full_partial;
      // Per recipient whose entry was queued (not refused as full): a push hint if it was
      // offline, and a drain kick if its current session did not get the Deliver (offline at
      // dispatch, its session replaced since, or the hand-over failed): it may have logged in
      // and drained an empty queue before this append was durable, and would wait for its next
      // login. A session that got the Deliver is left alone (a drain would only send it again).
      for (const Recipient& r : p.recipients) {
        const bool full =
            std::any_of(o.queue_full.begin(), o.queue_full.end(),
                        [&](const wire::DeviceAddress& f) { return same_device(f, r.device); });
        if (full) continue;
        if (!r.online && !p.no_push &&
            store_.push_hint(r.device, p.id.id, p.sender.account(), deliver_of(p).content_type())) {
          ++stats_.push_hints;
        }
        if (r.online) {
          const auto at = directory_.find(r.device);
          if (!at || at->connection == r.delivered_to) continue;
        }
        kick_drain(r.device);
      }
      ++stats_.acks_durable;
      answer(o.cookie, wire::ErrorCode::Unspecified);
      break;
    }
    case ipc::AppendStatus::Cancelled:
      ++stats_.acks_all_devices;
      answer(o.cookie, wire::ErrorCode::Unspecified);
      break;
    case ipc::AppendStatus::QueueFull: answer(o.cookie, wire::ErrorCode::RecipientQueueFull); break;
    default: answer(o.cookie, wire::ErrorCode::StoreUnavailable);
  }
}

// ---- Device acks ---------------------------------------------------------------------------

void WorkerRouter::device_ack_local(const wire::DeviceAddress& device, const wire::ServerMsgId& id,
                                    std::vector<wire::ServerMsgId>& stored) {
  if (const uint64_t* found = pending_by_lo_.find(id.lo())) {
    const uint64_t pending_id = *found;  // copied: the map's slots move when it changes
    Pending& p = pending_at(pending_id);
    if (p.id.id.hi() == id.hi() && p.append_id != 0) {
      const AckProgress progress = store_.device_acked(p.append_id, device);
      if (progress == AckProgress::kAllAcked) {
        ++stats_.device_acks_pending;
        ++stats_.acks_all_devices;
        answer(pending_id, wire::ErrorCode::Unspecified);
        return;
      }
      if (progress == AckProgress::kPending) {
        ++stats_.device_acks_pending;
        return;
      }
    } else if (p.id.id.hi() == id.hi()) {
      return;  // ephemeral: nothing stored
    }
  }
  // Durable already, or from the queue: delete the device's entry.
  stored.push_back(id);
}

void WorkerRouter::on_delivery_ack(SessionPort& from, const wire::DeliveryAck& ack) {
  if (ack.server_msg_ids() == nullptr) return;
  const wire::DeviceAddress device = from.device();
  Session* s = find_session(from.connection());
  scratch_ids_.clear();
  for (const wire::ServerMsgId* id : *ack.server_msg_ids()) {
    ++stats_.device_acks;
    if (s != nullptr) {
      auto& un = s->drained_unacked;
      auto d = std::find_if(un.begin(), un.end(),
                            [&](const wire::ServerMsgId& x) { return message_id_equal(x, *id); });
      if (d != un.end()) {
        un.erase(d);
        scratch_ids_.push_back(*id);
        continue;
      }
    }
    const MessageIdParts parts = split_message_id(*id);
    if (parts.node != options_.node_id || parts.worker >= options_.workers) {
      scratch_ids_.push_back(*id);  // from another node or an earlier layout: stored
    } else if (parts.worker == options_.worker) {
      device_ack_local(device, *id, scratch_ids_);
    } else {
      // The worker that minted it holds its pending append (if any).
      const DeviceAckRecord rec{
          device.account().hi(), device.account().lo(), device.device(), 0, id->hi(), id->lo()};
      const auto bytes = std::span(reinterpret_cast<const uint8_t*>(&rec), sizeof rec);
      if (mesh_.send(parts.worker, {.kind = kDeviceAck, .payload = bytes}) == MeshRefusal::kNone) {
        ++stats_.device_acks_forwarded;
      } else {
        scratch_ids_.push_back(*id);  // no cancel: delete it once stored
      }
    }
  }
  if (!scratch_ids_.empty()) {
    stats_.device_acks_stored += scratch_ids_.size();
    (void)store_.ack_stored(device, scratch_ids_);
  }
  if (s != nullptr) continue_drain(*s);
}

// ---- Drains --------------------------------------------------------------------------------

void WorkerRouter::start_drain(Session& s) {
  s.drain_wanted = true;
  s.has_cursor = false;
  s.drained_unacked.clear();
  continue_drain(s);
}

// Asks for the next part of the queue when the window has room and the session's send queue
// is short; a new request supersedes the previous one from the cursor, so a request that may
// still stream is never waited for.
void WorkerRouter::continue_drain(Session& s) {
  if (!s.drain_wanted) return;
  const uint32_t window = options_.drain_window_messages;
  if (s.drained_unacked.size() > window / 2) return;
  if (s.port->queued_bytes() > options_.drain_queue_bytes) return;
  const uint32_t want = window - static_cast<uint32_t>(s.drained_unacked.size());
  // A batch is sent in one turn: bounded in bytes too, or a queue of large messages would
  // overflow the session's send queue at every login and cut a healthy device off as a slow
  // consumer before it could ack anything (the store always returns at least one message).
  const uint64_t request = store_.drain(s.device, s.has_cursor ? &s.cursor : nullptr, want,
                                        options_.drain_queue_bytes, s.connection);
  if (request == 0) {
    ++stats_.drains_refused;
    retry_drain(s, 10'000'000);
    return;
  }
  ++stats_.drains_started;
  s.drain_request = request;
  s.drain_wanted = false;
  s.drain_kicked = false;  // this request was sent after the kick: it sees the message
  s.drain_retry_ns = 0;
}

void WorkerRouter::kick_drain(const wire::DeviceAddress& device) {
  const auto at = directory_.find(device);
  if (!at) return;  // still offline: its next login drains the queue
  if (at->worker == options_.worker) {
    kick_drain_local(at->connection, device);
    return;
  }
  if (at->worker >= options_.workers) return;
  const DeviceHeader header{device.account().hi(), device.account().lo(), device.device(), 0};
  const std::span<const uint8_t> payload(reinterpret_cast<const uint8_t*>(&header), sizeof header);
  if (mesh_.send(at->worker,
                 {.kind = kDrainKick, .connection = at->connection, .payload = payload}) ==
      MeshRefusal::kNone) {
    ++stats_.drain_kicks_sent;
  }
  // A refused kick leaves the message in the store for the device's next drain (login).
}

void WorkerRouter::on_drain_kick(const ipc::DrainKick& kick) {
  if (kick.devices() == nullptr) return;
  for (const wire::DeviceAddress* d : *kick.devices()) {
    ++stats_.drain_kicks_from_store;
    kick_drain(*d);
  }
}

void WorkerRouter::kick_drain_local(ConnectionId connection, const wire::DeviceAddress& device) {
  Session* s = find_session(connection);
  if (s == nullptr || !same_device(s->device, device)) return;  // gone, or replaced
  ++stats_.drain_kicks_restarted;
  if (s->drain_request != 0) {
    s->drain_kicked = true;  // answered by on_drain_batch
    return;
  }
  s->drain_wanted = true;
  continue_drain(*s);
}

// A refused or failed drain is asked again from poll() (the earlier deadline wins).
void WorkerRouter::retry_drain(Session& s, uint64_t delay_ns) {
  if (s.drain_retry_ns != 0) return;
  s.drain_retry_ns = now_ns() + delay_ns;
  timers_.push({s.drain_retry_ns, s.connection, TimerKind::kDrainRetry});
}

void WorkerRouter::on_drain_batch(const DrainBatch& b) {
  Session* s = find_session(b.cookie);
  if (s == nullptr || s->drain_request != b.request_id) {
    ++stats_.drain_batches_stale;
    return;
  }
  ++stats_.drain_batches;
  if (b.status != ipc::DrainStatus::Ok) {
    ++stats_.drain_errors;
    s->drain_request = 0;
    s->drain_wanted = true;
    retry_drain(*s, 100'000'000);
    return;
  }
  for (const wire::Deliver* m : b.messages) {
    if (m->server_msg_id() == nullptr) continue;
    const wire::ServerMsgId id = *m->server_msg_id();
    // A false send_frame may close the session (and detach it) inside the call: `s` is not
    // touched after one. A stored receipt goes out as the Receipt frame, acked like a Deliver.
    const wire::Receipt* receipt = m->receipt();
    if (!s->port->send_frame(receipt != nullptr ? encode_receipt(frames_, *receipt, &id, true)
                                                : encode_deliver(frames_, *m))) {
      ++stats_.delivery_refused;
      return;
    }
    if (receipt != nullptr) ++stats_.receipts_drained;
    ++stats_.drained_sent;
    s->cursor = id;
    s->has_cursor = true;
    s->drained_unacked.push_back(id);
  }
  if (!b.more) {
    s->drain_request = 0;   // the queue is empty
    if (s->drain_kicked) {  // ... as of a read that may predate a kicked message
      s->drain_kicked = false;
      s->drain_wanted = true;
      continue_drain(*s);
    }
  } else {
    s->drain_wanted = true;  // asked again as the device acks (or at once if nothing came)
    if (b.messages.empty()) continue_drain(*s);
  }
}

void WorkerRouter::on_writable(SessionPort& session) {
  if (Session* s = find_session(session.connection()); s != nullptr) continue_drain(*s);
}

// ---- Receipts, presence, typing, groups ----------------------------------------------------

// Online devices of the addressee get the receipt now; the others (per its device list, which
// may have to be asked for) get it in their queue, from which it drains at their next login.
void WorkerRouter::on_receipt(SessionPort& from, const wire::Receipt& receipt) {
  ++stats_.receipts;
  if (receipt.to() == nullptr) return;
  const wire::AccountId to = *receipt.to();
  const wire::DeviceAddress sender = from.device();
  const MintedId id = minter_.mint(unix_ms());
  // The queue entry, built once: a Deliver (id, sender, ToAccount, no body) carrying the
  // receipt as it will be sent (stored = true).
  auto& b = receipt_fbb_;
  b.Clear();
  const auto ids =
      receipt.message_ids() != nullptr
          ? b.CreateVectorOfStructs(
                reinterpret_cast<const wire::ServerMsgId*>(receipt.message_ids()->Data()),
                receipt.message_ids()->size())
          : b.CreateVectorOfStructs(static_cast<const wire::ServerMsgId*>(nullptr), 0);
  const auto r = wire::CreateReceipt(b, receipt.kind(), ids, &to, &sender, receipt.client_time_ms(),
                                     &id.id, true);
  const auto to_account = wire::CreateToAccount(b, &to).Union();
  b.Finish(wire::CreateDeliver(b, &id.id, &sender, wire::Recipient::ToAccount, to_account, 0, 0,
                               receipt.client_time_ms(), id.server_time_ms,
                               wire::MessageFlags::NONE, 0, r));
  const wire::Deliver& deliver = *flatbuffers::GetRoot<wire::Deliver>(b.GetBufferPointer());

  const auto frame = encode_receipt(frames_, *deliver.receipt(), &id.id, false);
  std::span<OnlineDevice> online(online_scratch_);
  const size_t n = std::min(directory_.online_devices(to, online), online.size());
  std::vector<uint32_t> tried, reached;
  for (size_t i = 0; i < n; ++i) {
    const wire::DeviceAddress d(to, online[i].device);
    if (same_device(d, sender)) continue;
    tried.push_back(online[i].device);
    if (deliver_online(d, frame)) reached.push_back(online[i].device);
  }
  const uint64_t token = kReceiptToken | next_receipt_++;
  const DeviceListLookup l = device_lists_.lookup(to, token, now_ns());
  switch (l.status) {
    case LookupStatus::kHit: store_receipt(deliver, to, sender, l.devices, tried, reached); break;
    case LookupStatus::kWaiting: {
      ++stats_.receipts_held_for_device_lists;
      auto h = std::make_unique<HeldReceipt>();
      h->deliver.assign(b.GetBufferPointer(), b.GetBufferPointer() + b.GetSize());
      h->to = to;
      h->sender = sender;
      h->tried = std::move(tried);
      h->reached = std::move(reached);
      held_receipts_[token] = std::move(h);
      break;
    }
    case LookupStatus::kUnknownAccount: break;  // nobody to keep it for
    case LookupStatus::kBusy:
      // Whether some device is offline is unknown: counted as a drop of the receipt.
      ++stats_.receipts_dropped;
      ++stats_.receipts_dropped_device_list;
      break;
  }
}

void WorkerRouter::receipt_device_list_answer(uint64_t waiter, DeviceListResult result) {
  auto it = held_receipts_.find(waiter);
  if (it == held_receipts_.end()) return;
  std::unique_ptr<HeldReceipt> h = std::move(it->second);
  held_receipts_.erase(it);
  if (result == DeviceListResult::kUnknownAccount) return;
  if (result == DeviceListResult::kOk) {
    const DeviceListLookup l = device_lists_.lookup(h->to, waiter, now_ns());
    switch (l.status) {
      case LookupStatus::kHit:
        store_receipt(*flatbuffers::GetRoot<wire::Deliver>(h->deliver.data()), h->to, h->sender,
                      l.devices, h->tried, h->reached);
        return;
      case LookupStatus::kUnknownAccount: return;
      case LookupStatus::kWaiting:  // evicted meanwhile and asked again: wait again
        held_receipts_[waiter] = std::move(h);
        return;
      case LookupStatus::kBusy: break;
    }
  }
  ++stats_.receipts_dropped;
  ++stats_.receipts_dropped_device_list;
}

// `devices`: the addressee's whole list. A device not reached live goes to the store; one that
// came online since the live pass (a held receipt) is tried live first.
void WorkerRouter::store_receipt(const wire::Deliver& deliver, const wire::AccountId& to,
                                 const wire::DeviceAddress& sender,
                                 std::span<const uint32_t> devices, std::span<const uint32_t> tried,
                                 std::span<const uint32_t> reached) {
  std::vector<wire::DeviceAddress> offline;
  std::span<const uint8_t> frame;
  for (uint32_t device : devices) {
    const wire::DeviceAddress d(to, device);
    if (same_device(d, sender) || has_device(reached, device)) continue;
    if (!has_device(tried, device) && directory_.find(d)) {
      if (frame.empty())
        frame = encode_receipt(frames_, *deliver.receipt(), deliver.server_msg_id(), false);
      if (deliver_online(d, frame)) continue;
    }
    offline.push_back(d);
  }
  if (offline.empty()) return;
  const uint64_t cookie = kReceiptToken | next_receipt_++;
  const AppendResult a = store_.append(deliver, offline, 0, cookie);
  if (!a.ok()) {
    ++stats_.receipts_dropped;
    stats_.receipts_dropped_store += offline.size();
    return;
  }
  ++stats_.receipts_stored;
  stats_.receipts_stored_devices += offline.size();
  stored_receipts_[cookie] = std::move(offline);
}

void WorkerRouter::on_receipt_outcome(const StoreOutcome& o) {
  auto it = stored_receipts_.find(o.cookie);
  if (it == stored_receipts_.end()) {
    ++stats_.outcomes_unknown;
    return;
  }
  const std::vector<wire::DeviceAddress> devices = std::move(it->second);
  stored_receipts_.erase(it);
  uint64_t missed = 0;
  uint64_t* reason = &stats_.receipts_dropped_store;
  switch (o.status) {
    case ipc::AppendStatus::Durable:
      // As for a message: a device that logged in while the entry was not durable yet may have
      // drained past it; its drain runs again. A refused device missed it.
      reason = &stats_.receipts_dropped_queue_full;
      for (const wire::DeviceAddress& d : devices) {
        const bool full =
            std::any_of(o.queue_full.begin(), o.queue_full.end(),
                        [&](const wire::DeviceAddress& f) { return same_device(f, d); });
        if (full) {
          ++missed;
        } else {
          kick_drain(d);
        }
      }
      break;
    case ipc::AppendStatus::Cancelled: break;  // nobody acks a receipt's append online
    case ipc::AppendStatus::QueueFull:
      reason = &stats_.receipts_dropped_queue_full;
      missed = devices.size();
      break;
    default: missed = devices.size(); break;  // StoreFailed, StoreBusy, Rejected
  }
  if (missed > 0) {
    ++stats_.receipts_dropped;
    *reason += missed;
  }
}

// Presence goes to every worker (subscriptions are per worker): each sends it to its own
// sessions subscribed to the account. Never stored; a refused broadcast is counted.
void WorkerRouter::on_presence(SessionPort& from, const wire::Presence& presence) {
  ++stats_.presence_updates;
  const wire::AccountId account = from.device().account();  // `account` from a client is ignored
  frames_.clear();
  const auto frame = frames_.finish(
      wire::CreatePresence(frames_.fbb(), &account, presence.state(), presence.last_seen_ms()));
  std::vector<uint8_t> payload(16 + frame.size());
  const uint64_t key[2] = {account.hi(), account.lo()};
  std::memcpy(payload.data(), key, sizeof key);
  std::memcpy(payload.data() + 16, frame.data(), frame.size());
  for (uint16_t w = 0; w < options_.workers; ++w) {
    if (w == options_.worker) continue;
    if (mesh_.send(w, {.kind = kPresence, .payload = payload}) != MeshRefusal::kNone) {
      ++stats_.presence_dropped;
    }
  }
  presence_local(account.hi(), account.lo(), std::span(payload).subspan(16));
}

void WorkerRouter::presence_local(uint64_t hi, uint64_t lo, std::span<const uint8_t> frame) {
  auto it = subscribers_.find({hi, lo});
  if (it == subscribers_.end()) return;
  // A refused send may close (and detach) a session, which edits this list: walk a copy.
  const std::vector<ConnectionId> to = it->second;
  for (ConnectionId c : to) {
    if (send_local(c, frame)) ++stats_.presence_forwarded;
  }
}

void WorkerRouter::unsubscribe(Session& s) {
  for (const wire::AccountId& a : s.subscriptions) {
    auto it = subscribers_.find({a.hi(), a.lo()});
    if (it == subscribers_.end()) continue;
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), s.connection), v.end());
    if (v.empty()) subscribers_.erase(it);
  }
  s.subscriptions.clear();
}

// Replaces the session's set (the session keeps it within max_presence_subscriptions).
void WorkerRouter::on_presence_subscribe(SessionPort& from,
                                         const wire::PresenceSubscribe& subscribe) {
  ++stats_.presence_subscribes;
  Session* s = find_session(from.connection());
  if (s == nullptr) return;
  unsubscribe(*s);
  if (subscribe.accounts() == nullptr) return;
  for (const wire::AccountId* a : *subscribe.accounts()) {
    const bool seen = std::any_of(
        s->subscriptions.begin(), s->subscriptions.end(),
        [&](const wire::AccountId& x) { return x.hi() == a->hi() && x.lo() == a->lo(); });
    if (seen) continue;
    s->subscriptions.push_back(*a);
    subscribers_[{a->hi(), a->lo()}].push_back(s->connection);
  }
}

void WorkerRouter::on_typing(SessionPort& from, const wire::Typing& typing) {
  if (typing.to() == nullptr) return;
  const wire::DeviceAddress sender = from.device();
  frames_.clear();
  auto& fbb = frames_.fbb();
  const auto to = copy_recipient(fbb, typing.to_type(), typing.to());
  const auto frame =
      frames_.finish(wire::CreateTyping(fbb, typing.to_type(), to, typing.state(), &sender));
  std::span<OnlineDevice> online(online_scratch_);
  auto to_account = [&](const wire::AccountId& account) {
    const size_t n = std::min(directory_.online_devices(account, online), online.size());
    for (size_t i = 0; i < n; ++i) {
      const wire::DeviceAddress d(account, online[i].device);
      if (!same_device(d, sender) && deliver_online(d, frame)) ++stats_.typing_forwarded;
    }
  };
  switch (typing.to_type()) {
    case wire::Recipient::ToDevice:
      if (const auto* d = typing.to_as_ToDevice()->device(); d && !same_device(*d, sender)) {
        if (deliver_online(*d, frame)) ++stats_.typing_forwarded;
      }
      break;
    case wire::Recipient::ToAccount:
      if (const auto* a = typing.to_as_ToAccount()->account(); a) to_account(*a);
      break;
    case wire::Recipient::ToGroup:
      if (const auto* g = typing.to_as_ToGroup()->group();
          g && groups_.is_member(*g, sender.account())) {
        for (const wire::AccountId& member : groups_.members(*g)) to_account(member);
      }
      break;
    default: break;
  }
}

void WorkerRouter::on_group_op(SessionPort& from, const wire::GroupOp& op) {
  // The control plane has no IPC for group changes yet (README "Not built yet").
  ++stats_.group_ops_unavailable;
  frames_.clear();
  auto& fbb = frames_.fbb();
  (void)from.send_frame(frames_.finish(wire::CreateGroupOpResult(
      fbb, op.request_id(), op.op(), wire::GroupResultCode::Unavailable, op.group())));
}

// ---- Other workers and timers --------------------------------------------------------------

void WorkerRouter::handle_mesh(const MeshRecord& r) {
  switch (r.kind) {
    case kDeliverFrame: {
      Session* s = find_session(r.connection);
      if (s != nullptr && s->port->send_frame(r.payload)) {
        ++stats_.mesh_frames_delivered;
      } else {
        ++stats_.mesh_frames_dropped;  // stored unless ephemeral; the next drain has it
      }
      break;
    }
    case kDedupQuery: handle_dedup_query(r); break;
    case kDedupRecords: handle_dedup_records(r); break;
    case kDedupOutcome: handle_dedup_outcome(r); break;
    case kDrainKick: {
      if (r.payload.size() != sizeof(DeviceHeader)) {
        ++stats_.mesh_malformed;
        break;
      }
      DeviceHeader h;
      std::memcpy(&h, r.payload.data(), sizeof h);
      kick_drain_local(r.connection,
                       wire::DeviceAddress(wire::AccountId(h.account_hi, h.account_lo), h.device));
      break;
    }
    case kDeviceAck: {
      if (r.payload.size() != sizeof(DeviceAckRecord)) {
        ++stats_.mesh_malformed;
        break;
      }
      DeviceAckRecord rec;
      std::memcpy(&rec, r.payload.data(), sizeof rec);
      const wire::DeviceAddress device(wire::AccountId(rec.account_hi, rec.account_lo), rec.device);
      std::vector<wire::ServerMsgId> stored;
      device_ack_local(device, wire::ServerMsgId(rec.id_hi, rec.id_lo), stored);
      if (!stored.empty()) {
        stats_.device_acks_stored += stored.size();
        (void)store_.ack_stored(device, stored);
      }
      break;
    }
    case kPresence: {
      if (r.payload.size() <= 16) {
        ++stats_.mesh_malformed;
        break;
      }
      uint64_t key[2];
      std::memcpy(key, r.payload.data(), sizeof key);
      presence_local(key[0], key[1], r.payload.subspan(16));
      break;
    }
    default: ++stats_.mesh_malformed;
  }
}

void WorkerRouter::handle_dedup_query(const MeshRecord& r) {
  if (r.payload.size() != sizeof(DeviceHeader)) {
    ++stats_.mesh_malformed;
    return;
  }
  DeviceHeader h;
  std::memcpy(&h, r.payload.data(), sizeof h);
  const wire::DeviceAddress device = device_of(h);
  if (r.connection != kNoConnection) {
    if (Session* s = find_session(r.connection); s != nullptr) {
      ++stats_.mesh_closes;
      s->port->close_with_error(wire::ErrorCode::SessionReplaced,
                                "a newer session of this device logged in");
    } else {
      ++stats_.mesh_closes_gone;
    }
  }
  // Export, oldest first, in chunks; the entries leave this worker (pending ones are answered
  // here later and the outcome follows them: kDedupOutcome).
  const size_t n = dedup_.export_device(device, records_scratch_);
  if (n > 0) dedup_.forget_device(device);
  stats_.handover_records_out += n;
  const size_t chunk = options_.handover_chunk_records;
  size_t i = 0;
  do {
    const size_t m = std::min(chunk, n - i);
    std::vector<uint8_t> payload(sizeof(DeviceHeader) + m * sizeof(DedupWire));
    const DeviceHeader out = header_of(device, i + m == n);
    std::memcpy(payload.data(), &out, sizeof out);
    for (size_t k = 0; k < m; ++k) {
      const DedupRecord& d = records_scratch_[i + k];
      const DedupWire w{d.client_msg_id, d.server.id.hi(), d.server.id.lo(),
                        d.server.server_time_ms, d.acked ? 1u : 0u};
      std::memcpy(payload.data() + sizeof out + k * sizeof w, &w, sizeof w);
    }
    if (mesh_.send(r.from_worker,
                   {.kind = kDedupRecords, .connection = r.tag, .payload = payload}) !=
        MeshRefusal::kNone) {
      ++stats_.handover_send_failed;  // the asking worker times out and goes on
      break;
    }
    i += m;
  } while (i < n);
}

void WorkerRouter::handle_dedup_records(const MeshRecord& r) {
  if (r.payload.size() < sizeof(DeviceHeader) ||
      (r.payload.size() - sizeof(DeviceHeader)) % sizeof(DedupWire) != 0) {
    ++stats_.mesh_malformed;
    return;
  }
  DeviceHeader h;
  std::memcpy(&h, r.payload.data(), sizeof h);
  const size_t n = (r.payload.size() - sizeof h) / sizeof(DedupWire);
  std::vector<DedupRecord> records(n);
  for (size_t k = 0; k < n; ++k) {
    DedupWire w;
    std::memcpy(&w, r.payload.data() + sizeof h + k * sizeof w, sizeof w);
    records[k] = {
        w.client_msg_id, {wire::ServerMsgId(w.id_hi, w.id_lo), w.server_time_ms}, w.state == 1};
  }
  if (n > 0) dedup_.import_device(device_of(h), records);
  stats_.handover_records_in += n;
  if (h.last == 0) return;
  Session* s = find_session(r.connection);
  if (s != nullptr && s->handover_waiting > 0) finish_handover_step(*s);
}

// One worker answered (or the wait timed out): when none is left, the held Messages go.
void WorkerRouter::finish_handover_step(Session& s) {
  if (--s.handover_waiting > 0) return;
  s.handover_deadline_ns = 0;
  std::vector<flatbuffers::DetachedBuffer> held = std::move(s.held_messages);
  const ConnectionId c = s.connection;
  for (const flatbuffers::DetachedBuffer& m : held) {
    Session* now = find_session(c);  // a Message cannot close it, but do not assume
    if (now == nullptr) break;
    on_message(*now->port, *flatbuffers::GetRoot<wire::Message>(m.data()));
  }
}

void WorkerRouter::handle_dedup_outcome(const MeshRecord& r) {
  struct {
    DeviceHeader h;
    DedupWire w;
  } msg;
  if (r.payload.size() != sizeof msg) {
    ++stats_.mesh_malformed;
    return;
  }
  std::memcpy(&msg, r.payload.data(), sizeof msg);
  const wire::DeviceAddress device = device_of(msg.h);
  const bool ok = msg.w.state == 1;
  const auto error =
      ok ? wire::ErrorCode::Unspecified : static_cast<wire::ErrorCode>(msg.w.state & 0xFFFF);
  if (ok) {
    dedup_.mark_acked(device, msg.w.client_msg_id);
  } else {
    dedup_.forget(device, msg.w.client_msg_id);
  }
  ++stats_.handover_outcomes;
  auto it =
      remote_joins_.find({msg.h.account_hi, msg.h.account_lo, msg.h.device, msg.w.client_msg_id});
  if (it == remote_joins_.end()) return;
  const RemoteJoin join = std::move(it->second);
  remote_joins_.erase(it);
  const MintedId id{wire::ServerMsgId(msg.w.id_hi, msg.w.id_lo), msg.w.server_time_ms};
  for (ConnectionId c : join.connections) {
    if (ok) ++stats_.server_acks;
    complete(c, msg.w.client_msg_id, id, error);
  }
}

size_t WorkerRouter::poll(uint64_t now_ns) {
  device_lists_.poll(now_ns);
  const size_t n =
      mesh_.poll([this](const MeshRecord& r) { handle_mesh(r); }, options_.mesh_records_per_poll);
  // Timers in deadline order; one that no longer matches its session's state is stale.
  while (!timers_.empty() && timers_.top().at_ns <= now_ns) {
    const Timer t = timers_.top();
    timers_.pop();
    Session* s = find_session(t.connection);
    if (s == nullptr) continue;
    if (t.kind == TimerKind::kDrainRetry) {
      if (s->drain_retry_ns != t.at_ns) continue;
      s->drain_retry_ns = 0;
      continue_drain(*s);
    } else if (s->handover_waiting > 0 && s->handover_deadline_ns == t.at_ns) {
      ++stats_.handover_timeouts;  // a worker did not answer: go on without its entries
      s->handover_waiting = 1;
      finish_handover_step(*s);
    }
  }
  if (!remote_joins_.empty() && now_ns >= next_remote_join_check_ns_) {
    next_remote_join_check_ns_ = now_ns + options_.remote_join_timeout_ns / 8;
    for (auto it = remote_joins_.begin(); it != remote_joins_.end();) {
      if (it->second.deadline_ns > now_ns) {
        ++it;
        continue;
      }
      // No outcome came: answer StoreUnavailable, keep the entry pending (a later resend joins
      // again; forgetting it could deliver the message twice).
      ++stats_.remote_join_timeouts;
      const RemoteJoin join = std::move(it->second);
      const uint64_t client_msg_id = it->first.client_msg_id;
      it = remote_joins_.erase(it);
      for (ConnectionId c : join.connections) {
        complete(c, client_msg_id, MintedId{}, wire::ErrorCode::StoreUnavailable);
      }
    }
  }
  return n;
}

size_t WorkerRouter::close_device_sessions(const wire::AccountId& account, uint32_t device,
                                           wire::ErrorCode code) {
  // Collected first: close_with_error detaches (and erases) re-entrantly.
  std::vector<SessionPort*> matching;
  sessions_.for_each([&](ConnectionId, const std::unique_ptr<Session>& session) {
    const wire::DeviceAddress& d = session->device;
    if (d.account().hi() == account.hi() && d.account().lo() == account.lo() &&
        (device == UINT32_MAX || d.device() == device)) {
      matching.push_back(session->port);
    }
  });
  for (SessionPort* port : matching) {
    ++stats_.revoked_closed;
    port->close_with_error(code, "the device's tokens were revoked");
  }
  return matching.size();
}

}  // namespace herald::dataplane::routing
