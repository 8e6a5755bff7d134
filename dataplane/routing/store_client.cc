// StoreClient (store_client.h): records built into preallocated buffers, a held queue in front
// of the dp_to_cp ring, append and drain bookkeeping, and the cp_to_dp reader.
#include "dataplane/routing/store_client.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "platform/assert/assert.h"
#include "platform/ipc/segment.h"

namespace herald::dataplane {
namespace {

// Records are built once with this seq and patched with the ring's next seq as they are put
// on it (a held append may be sent again, to another control plane, with another seq). Not
// the default (0), so the field is present in the buffer and can be patched in place.
constexpr uint64_t kSeqPlaceholder = ~uint64_t{0};
// Devices per StoreCancel record (20 bytes each: far below a ring record's limit).
constexpr size_t kMaxCancelDevicesPerRecord = 1024;
constexpr uint32_t kSlotIndexBits = 32;
constexpr uint64_t kSlotIndexMask = (uint64_t{1} << kSlotIndexBits) - 1;

uint64_t slot_id(uint32_t gen, size_t index) {
  return (uint64_t{gen} << kSlotIndexBits) | static_cast<uint64_t>(index);
}

bool same_device(const wire::DeviceAddress& a, const wire::DeviceAddress& b) {
  return a.device() == b.device() && a.account().hi() == b.account().hi() &&
         a.account().lo() == b.account().lo();
}

bool msg_id_less(const wire::ServerMsgId& a, const wire::ServerMsgId& b) {
  return a.hi() != b.hi() ? a.hi() < b.hi() : a.lo() < b.lo();
}

// Types the client consumes itself (Hello and Heartbeat are noted, then may also go to an
// observer).
bool is_store_type(ipc::Record type) {
  switch (type) {
    case ipc::Record::StoreAppend:
    case ipc::Record::StoreCancel:
    case ipc::Record::StoreAck:
    case ipc::Record::AppendDurable:
    case ipc::Record::DrainRequest:
    case ipc::Record::DrainResponse:
    case ipc::Record::PushHint: return true;
    default: return false;
  }
}

// The dataplane -> control plane types of the store: never expected on cp_to_dp.
bool is_dp_to_cp_store_type(ipc::Record type) {
  switch (type) {
    case ipc::Record::StoreAppend:
    case ipc::Record::StoreCancel:
    case ipc::Record::StoreAck:
    case ipc::Record::DrainRequest:
    case ipc::Record::PushHint: return true;
    default: return false;
  }
}

// A Deliver from another buffer (the router's frame) rebuilt in `fbb`: FlatBuffers tables
// cannot be copied without knowing their fields.
flatbuffers::Offset<wire::Deliver> copy_deliver(flatbuffers::FlatBufferBuilder& fbb,
                                                const wire::Deliver& m) {
  flatbuffers::Offset<void> to = 0;
  wire::Recipient to_type = wire::Recipient::NONE;
  switch (m.to_type()) {
    case wire::Recipient::ToAccount:
      if (const wire::ToAccount* t = m.to_as_ToAccount()) {
        to = wire::CreateToAccount(fbb, t->account()).Union();
        to_type = m.to_type();
      }
      break;
    case wire::Recipient::ToDevice:
      if (const wire::ToDevice* t = m.to_as_ToDevice()) {
        to = wire::CreateToDevice(fbb, t->device()).Union();
        to_type = m.to_type();
      }
      break;
    case wire::Recipient::ToGroup:
      if (const wire::ToGroup* t = m.to_as_ToGroup()) {
        to = wire::CreateToGroup(fbb, t->group()).Union();
        to_type = m.to_type();
      }
      break;
    default: break;
  }
  flatbuffers::Offset<flatbuffers::Vector<uint8_t>> body = 0;
  if (m.body() != nullptr) body = fbb.CreateVector(m.body()->data(), m.body()->size());
  // A stored receipt (wire.fbs Deliver.receipt) travels inside the Deliver.
  flatbuffers::Offset<wire::Receipt> receipt = 0;
  if (const wire::Receipt* r = m.receipt(); r != nullptr) {
    flatbuffers::Offset<flatbuffers::Vector<const wire::ServerMsgId*>> ids = 0;
    if (r->message_ids() != nullptr) {
      ids = fbb.CreateVectorOfStructs(
          reinterpret_cast<const wire::ServerMsgId*>(r->message_ids()->Data()),
          r->message_ids()->size());
    }
    receipt = wire::CreateReceipt(fbb, r->kind(), ids, r->to(), r->from(), r->client_time_ms(),
                                  r->server_msg_id(), r->stored());
  }
  return wire::CreateDeliver(fbb, m.server_msg_id(), m.sender(), to_type, to, body,
                             m.content_type(), m.client_time_ms(), m.server_time_ms(), m.flags(),
                             m.client_msg_id(), receipt);
}

// Writes the ring's seq into a copied Envelope (its root table's seq field is present: see
// kSeqPlaceholder).
void patch_seq(std::span<std::byte> envelope, uint64_t seq) {
  auto* root = flatbuffers::GetMutableRoot<flatbuffers::Table>(envelope.data());
  const bool patched = root->SetField<uint64_t>(ipc::Envelope::VT_SEQ, seq, 0);
  HERALD_CHECK(patched, "store client: a built Envelope lacks its seq field");
}

}  // namespace

absl::StatusOr<StoreLink> make_store_link(const ipc::ControlPlaneLink& link, uint16_t worker) {
  if (worker >= link.segment.workers()) {
    return absl::InvalidArgumentError(
        absl::StrCat("store link: worker ", worker, " of ", link.segment.workers()));
  }
  auto to_cp = link.segment.producer(worker, ipc::Direction::kDpToCp);
  if (!to_cp.ok()) return to_cp.status();
  auto from_cp = link.segment.consumer(worker, ipc::Direction::kCpToDp);
  if (!from_cp.ok()) return from_cp.status();
  to_cp->set_doorbell(link.cp_doorbell.fd());
  return StoreLink{std::move(*to_cp), std::move(*from_cp),
                   link.segment.ring_region(worker, ipc::Direction::kCpToDp),
                   link.controlplane.instance_id};
}

StoreClient::StoreClient(const StoreClientOptions& options, StoreClientCallbacks callbacks)
    : options_(options), callbacks_(std::move(callbacks)) {
  // Every buffer a record can need: one per pending append (kept until its outcome), the held
  // records, and a re-asked drain each.
  const size_t buffers =
      size_t{options_.max_pending_appends} + options_.max_held_records + options_.max_drains;
  buffers_.resize(buffers);
  free_buffers_.reserve(buffers);
  for (size_t i = buffers; i > 0; --i) {
    if (options_.initial_record_bytes > 0) {
      buffers_[i - 1].bytes.reserve(options_.initial_record_bytes);
    }
    free_buffers_.push_back(static_cast<uint32_t>(i - 1));
  }
  fifo_.resize(buffers + 1);
  appends_.resize(options_.max_pending_appends);
  free_appends_.reserve(appends_.size());
  for (size_t i = appends_.size(); i > 0; --i)
    free_appends_.push_back(static_cast<uint32_t>(i - 1));
  drains_.resize(options_.max_drains);
  free_drains_.reserve(drains_.size());
  for (size_t i = drains_.size(); i > 0; --i) free_drains_.push_back(static_cast<uint32_t>(i - 1));
  cancels_.reserve(options_.max_cancels_per_turn);
  cancel_devices_.reserve(
      std::min<size_t>(options_.max_cancels_per_turn, kMaxCancelDevicesPerRecord));
  local_outcomes_.reserve(options_.max_pending_appends);
  scratch_.reserve(options_.max_pending_appends);
  drained_.reserve(1024);
}

void StoreClient::set_push_handler(ipc::Record type, PushFn fn) {
  HERALD_CHECK(!is_store_type(type) && type != ipc::Record::NONE &&
                   static_cast<size_t>(type) < ipc::kRecordTypeCount,
               "push handler for a store record type");
  push_handlers_[static_cast<size_t>(type)] = std::move(fn);
}

// ---- Buffers and the held queue ----------------------------------------------------------

std::optional<uint32_t> StoreClient::take_buffer() {
  if (free_buffers_.empty()) return std::nullopt;
  const uint32_t index = free_buffers_.back();
  free_buffers_.pop_back();
  return index;
}

void StoreClient::free_buffer(uint32_t index) {
  Buffer& b = buffers_[index];
  if (b.queued) unqueue_accounting(b);  // its queue entry goes stale (gen) and is skipped
  ++b.gen;
  b.owner = 0;
  b.type = ipc::Record::NONE;
  free_buffers_.push_back(index);
}

bool StoreClient::room_for(size_t bytes) const {
  return !free_buffers_.empty() && held_records_ < options_.max_held_records &&
         held_bytes_ + bytes <= options_.max_held_bytes;
}

void StoreClient::unqueue_accounting(Buffer& b) {
  b.queued = false;
  --held_records_;
  held_bytes_ -= b.bytes.size();
  if (b.type == ipc::Record::StoreAppend) --held_appends_;
}

void StoreClient::compact_fifo() {
  const size_t cap = fifo_.size();
  size_t kept = 0;
  for (size_t i = 0; i < fifo_size_; ++i) {
    const QueueEntry e = fifo_[(fifo_head_ + i) % cap];
    const Buffer& b = buffers_[e.buffer];
    if (b.gen == e.gen && b.queued) fifo_[(fifo_head_ + kept++) % cap] = e;
  }
  fifo_size_ = kept;
}

void StoreClient::queue_push_back(uint32_t index) {
  if (fifo_size_ == fifo_.size()) compact_fifo();
  // Live entries <= buffers < fifo_.size(): compaction always makes room.
  HERALD_CHECK(fifo_size_ < fifo_.size(), "store client: held queue overflow");
  Buffer& b = buffers_[index];
  fifo_[(fifo_head_ + fifo_size_) % fifo_.size()] = {index, b.gen};
  ++fifo_size_;
  b.queued = true;
  ++held_records_;
  held_bytes_ += b.bytes.size();
  if (b.type == ipc::Record::StoreAppend) ++held_appends_;
}

void StoreClient::queue_push_front(uint32_t index) {
  if (fifo_size_ == fifo_.size()) compact_fifo();
  HERALD_CHECK(fifo_size_ < fifo_.size(), "store client: held queue overflow");
  Buffer& b = buffers_[index];
  fifo_head_ = (fifo_head_ + fifo_.size() - 1) % fifo_.size();
  fifo_[fifo_head_] = {index, b.gen};
  ++fifo_size_;
  b.queued = true;
  ++held_records_;
  held_bytes_ += b.bytes.size();
  if (b.type == ipc::Record::StoreAppend) ++held_appends_;
}

void StoreClient::fifo_pop() {
  fifo_head_ = (fifo_head_ + 1) % fifo_.size();
  --fifo_size_;
}

std::optional<uint32_t> StoreClient::queue_built(ipc::Record type, uint64_t owner) {
  const size_t size = builder_.GetSize();
  if (!room_for(size)) return std::nullopt;
  const std::optional<uint32_t> index = take_buffer();
  if (!index) return std::nullopt;
  Buffer& b = buffers_[*index];
  b.bytes.assign(builder_.GetBufferPointer(), builder_.GetBufferPointer() + size);
  b.type = type;
  b.owner = owner;
  queue_push_back(*index);
  return index;
}

// ---- Slots -----------------------------------------------------------------------------

StoreClient::AppendSlot* StoreClient::find_append(uint64_t append_id) {
  const uint64_t index = append_id & kSlotIndexMask;
  if (index >= appends_.size()) return nullptr;
  AppendSlot& slot = appends_[index];
  return slot.state != SlotState::kFree && slot.id == append_id ? &slot : nullptr;
}

StoreClient::DrainSlot* StoreClient::find_drain(uint64_t request_id) {
  const uint64_t index = request_id & kSlotIndexMask;
  if (index >= drains_.size()) return nullptr;
  DrainSlot& slot = drains_[index];
  return slot.state != SlotState::kFree && slot.id == request_id ? &slot : nullptr;
}

void StoreClient::release_append(AppendSlot& slot) {
  slot.state = SlotState::kFree;
  slot.id = 0;
  --pending_appends_;
  free_appends_.push_back(static_cast<uint32_t>(&slot - appends_.data()));
}

void StoreClient::release_drain(DrainSlot& slot) {
  slot.state = SlotState::kFree;
  slot.id = 0;
  --drains_in_progress_;
  free_drains_.push_back(static_cast<uint32_t>(&slot - drains_.data()));
}

// ---- Requests --------------------------------------------------------------------------

AppendResult StoreClient::append(const wire::Deliver& message,
                                 std::span<const wire::DeviceAddress> recipients,
                                 uint64_t client_msg_id, uint64_t cookie) {
  auto refuse = [this](AppendRefusal why) {
    ++stats_.append_refused[static_cast<size_t>(why)];
    return AppendResult{0, why};
  };
  if (recipients.empty()) return refuse(AppendRefusal::kNoRecipients);
  if (free_appends_.empty()) return refuse(AppendRefusal::kPendingFull);
  const uint32_t index = free_appends_.back();
  AppendSlot& slot = appends_[index];
  const uint64_t id = slot_id(slot.gen + 1, index);

  builder_.Clear();
  const auto deliver = copy_deliver(builder_, message);
  const auto to = builder_.CreateVectorOfStructs(recipients.data(), recipients.size());
  ipc::finish_envelope(builder_, kSeqPlaceholder,
                       ipc::CreateStoreAppend(builder_, id, deliver, to, client_msg_id));
  const uint32_t limit = link_ ? link_->to_cp.max_payload_bytes() : options_.max_record_bytes;
  if (builder_.GetSize() > limit) return refuse(AppendRefusal::kTooLarge);
  const std::optional<uint32_t> buffer = queue_built(ipc::Record::StoreAppend, id);
  if (!buffer) return refuse(AppendRefusal::kHeldFull);

  free_appends_.pop_back();
  ++slot.gen;
  slot.id = id;
  slot.state = SlotState::kHeld;
  slot.buffer = *buffer;
  slot.cookie = cookie;
  slot.sent_order = 0;
  slot.ever_sent = false;
  slot.resent = false;
  slot.msg_id = message.server_msg_id() ? *message.server_msg_id() : wire::ServerMsgId();
  slot.recipients.assign(recipients.begin(), recipients.end());
  slot.acked.assign(recipients.size(), 0);
  slot.acked_count = 0;
  ++pending_appends_;
  ++stats_.appends;
  return {id, AppendRefusal::kNone};
}

AckProgress StoreClient::device_acked(uint64_t append_id, const wire::DeviceAddress& device,
                                      uint32_t recipient_index) {
  AppendSlot* slot = find_append(append_id);
  size_t i = 0;
  if (slot != nullptr) {
    if (recipient_index < slot->recipients.size() &&
        same_device(slot->recipients[recipient_index], device)) {
      i = recipient_index;
    } else {
      while (i < slot->recipients.size() && !same_device(slot->recipients[i], device)) ++i;
    }
  }
  if (slot == nullptr || i == slot->recipients.size()) {
    ++stats_.device_acks_unknown;
    return AckProgress::kUnknown;
  }
  ++stats_.device_acks;
  const size_t n = slot->recipients.size();
  if (slot->acked[i] != 0)
    return slot->acked_count == n ? AckProgress::kAllAcked : AckProgress::kPending;
  slot->acked[i] = 1;
  ++slot->acked_count;
  if (slot->acked_count == n && slot->state == SlotState::kHeld && !slot->ever_sent) {
    // No control plane ever saw it and nobody needs it stored: it never leaves. Its outcome
    // (Cancelled) is reported from the next poll, like any other.
    std::erase_if(cancels_, [append_id](const Cancel& c) { return c.append_id == append_id; });
    free_buffer(slot->buffer);
    local_outcomes_.push_back({append_id, slot->cookie, ipc::AppendStatus::Cancelled});
    release_append(*slot);
    ++stats_.cancelled_locally;
    return AckProgress::kAllAcked;
  }
  if (cancels_.size() < options_.max_cancels_per_turn) {
    cancels_.push_back({append_id, device});
  } else {
    ++stats_.cancels_dropped;  // the entry is written; the device drops the repeat by id
  }
  return slot->acked_count == n ? AckProgress::kAllAcked : AckProgress::kPending;
}

void StoreClient::build_cancels() {
  if (cancels_.empty()) return;
  std::sort(cancels_.begin(), cancels_.end(),
            [](const Cancel& a, const Cancel& b) { return a.append_id < b.append_id; });
  size_t i = 0;
  while (i < cancels_.size()) {
    const uint64_t id = cancels_[i].append_id;
    cancel_devices_.clear();
    while (i < cancels_.size() && cancels_[i].append_id == id &&
           cancel_devices_.size() < kMaxCancelDevicesPerRecord) {
      cancel_devices_.push_back(cancels_[i++].device);
    }
    builder_.Clear();
    ipc::finish_envelope(
        builder_, kSeqPlaceholder,
        ipc::CreateStoreCancel(
            builder_, id,
            builder_.CreateVectorOfStructs(cancel_devices_.data(), cancel_devices_.size())));
    if (queue_built(ipc::Record::StoreCancel, 0)) {
      stats_.cancel_devices += cancel_devices_.size();
    } else {
      stats_.cancels_dropped += cancel_devices_.size();
    }
  }
  cancels_.clear();
}

bool StoreClient::ack_stored(const wire::DeviceAddress& device,
                             std::span<const wire::ServerMsgId> ids) {
  if (ids.empty()) return true;
  builder_.Clear();
  ipc::finish_envelope(builder_, kSeqPlaceholder,
                       ipc::CreateStoreAck(builder_, &device,
                                           builder_.CreateVectorOfStructs(ids.data(), ids.size())));
  const uint32_t limit = link_ ? link_->to_cp.max_payload_bytes() : options_.max_record_bytes;
  if (builder_.GetSize() > limit || !queue_built(ipc::Record::StoreAck, 0)) {
    ++stats_.store_acks_dropped;
    return false;
  }
  ++stats_.store_acks;
  stats_.store_ack_ids += ids.size();
  return true;
}

bool StoreClient::queue_drain_request(DrainSlot& slot) {
  builder_.Clear();
  ipc::finish_envelope(builder_, kSeqPlaceholder,
                       ipc::CreateDrainRequest(builder_, slot.id, &slot.device,
                                               slot.has_cursor ? &slot.cursor : nullptr,
                                               slot.max_messages, slot.max_bytes));
  if (!queue_built(ipc::Record::DrainRequest, slot.id)) return false;
  slot.state = SlotState::kHeld;
  slot.retry_ns = 0;
  slot.answered = false;
  slot.received = 0;
  ++stats_.drain_requests;
  return true;
}

uint64_t StoreClient::drain(const wire::DeviceAddress& device, const wire::ServerMsgId* after,
                            uint32_t max_messages, uint32_t max_bytes, uint64_t cookie) {
  for (DrainSlot& old : drains_) {
    if (old.state != SlotState::kFree && same_device(old.device, device)) {
      ++stats_.drains_superseded;
      release_drain(old);
    }
  }
  if (free_drains_.empty()) {
    ++stats_.drains_refused;
    return 0;
  }
  const uint32_t index = free_drains_.back();
  DrainSlot& slot = drains_[index];
  slot.id = slot_id(slot.gen + 1, index);
  slot.device = device;
  slot.has_cursor = after != nullptr;
  slot.cursor = after != nullptr ? *after : wire::ServerMsgId();
  slot.max_messages = max_messages;
  slot.max_bytes = max_bytes;
  slot.cookie = cookie;
  slot.seen.clear();  // kept over the request's re-asks
  slot.backoff_ns = 0;
  slot.sent_ns = 0;
  if (!queue_drain_request(slot)) {
    slot.id = 0;
    ++stats_.drains_refused;
    return 0;
  }
  free_drains_.pop_back();
  ++slot.gen;
  ++drains_in_progress_;
  ++stats_.drains;
  return slot.id;
}

void StoreClient::forget_drains(const wire::DeviceAddress& device) {
  for (DrainSlot& slot : drains_) {
    // A request still held is skipped when its turn comes (its owner is gone).
    if (slot.state != SlotState::kFree && same_device(slot.device, device)) release_drain(slot);
  }
}

bool StoreClient::push_hint(const wire::DeviceAddress& device, const wire::ServerMsgId& id,
                            const wire::AccountId& sender, uint16_t content_type) {
  builder_.Clear();
  ipc::finish_envelope(builder_, kSeqPlaceholder,
                       ipc::CreatePushHint(builder_, &device, &id, &sender, content_type));
  if (!queue_built(ipc::Record::PushHint, 0)) {
    ++stats_.push_hints_dropped;
    return false;
  }
  ++stats_.push_hints;
  return true;
}

bool StoreClient::send_record(ipc::Record type, flatbuffers::Offset<void> record) {
  ipc::finish_envelope(builder_, kSeqPlaceholder, type, record);
  const uint32_t limit = link_ ? link_->to_cp.max_payload_bytes() : options_.max_record_bytes;
  if (builder_.GetSize() > limit || !queue_built(type, 0)) {
    ++stats_.records_dropped;
    return false;
  }
  return true;
}

// ---- Attachment --------------------------------------------------------------------------

void StoreClient::attach(StoreLink link) {
  if (link_) detach();
  const bool restarted =
      controlplane_instance_ != 0 && link.controlplane_instance_id != controlplane_instance_;
  controlplane_instance_ = link.controlplane_instance_id;
  link_.emplace(std::move(link));
  hello_due_ = true;
  broken_ = false;
  out_seq_ = 1;
  in_seq_ = 0;
  last_heartbeat_ns_ = 0;
  ++stats_.attaches;
  if (restarted) ++stats_.controlplane_restarts;
  if (!restarted && !lost_records_) {
    // The same control plane (a socket hiccup): it holds our outcomes, but drains it was
    // reading when we left are orphaned there. Ask those again (repeats are filtered).
    for (DrainSlot& slot : drains_) {
      if (slot.state == SlotState::kSent && !slot.answered && queue_drain_request(slot)) {
        ++stats_.drain_resends;
      }
    }
    return;
  }
  lost_records_ = false;

  // What the old rings held died with them: every append without an outcome goes again, in
  // the order it first went, ahead of what was held meanwhile (the new control plane answers
  // an id it already made durable with Durable, and joins a pending one).
  scratch_.clear();
  for (size_t i = 0; i < appends_.size(); ++i) {
    if (appends_[i].state == SlotState::kSent) scratch_.push_back(static_cast<uint32_t>(i));
  }
  std::sort(scratch_.begin(), scratch_.end(), [this](uint32_t a, uint32_t b) {
    return appends_[a].sent_order < appends_[b].sent_order;
  });
  for (size_t i = scratch_.size(); i > 0; --i) {
    AppendSlot& slot = appends_[scratch_[i - 1]];
    slot.state = SlotState::kHeld;
    slot.resent = true;
    queue_push_front(slot.buffer);
    ++stats_.appends_resent;
  }
  // Drains already answered are left to the caller, which asks again from its cursor as the
  // device acknowledges (re-asking here would exceed its flow-control window).
  for (DrainSlot& slot : drains_) {
    if (slot.state != SlotState::kSent || slot.answered) continue;
    ++stats_.drain_resends;
    if (!queue_drain_request(slot)) {
      slot.state = SlotState::kHeld;
      slot.retry_ns = 1;  // due at the next poll
      next_drain_timer_ns_ = 1;
    }
  }
}

void StoreClient::detach() {
  if (!link_) return;
  link_.reset();
  ++stats_.detaches;
}

void StoreClient::mark_broken() {
  broken_ = true;
  lost_records_ = true;
  ++stats_.ring_corrupt;
}

bool StoreClient::prepare_to_sleep() {
  if (!link_ || broken_) return true;
  return !ipc::announce_sleep(link_->from_cp_region, link_->from_cp);
}

void StoreClient::woke() {
  if (link_) ipc::set_consumer_waiting(link_->from_cp_region, false);
}

// ---- Writing -------------------------------------------------------------------------------

bool StoreClient::put_hello() {
  ipc::HelloFields hello;
  hello.plane = ipc::Plane::Dataplane;
  hello.ipc_version = ipc::kIpcVersion;
  hello.instance_id = options_.instance_id;
  hello.pid = static_cast<uint32_t>(::getpid());
  hello.node_id = options_.node_id;
  hello.worker = options_.worker;
  hello.workers = options_.workers;
  ipc::build_hello(builder_, out_seq_, hello, "");
  const shm::RingStatus s =
      ipc::put_envelope(link_->to_cp, ipc::Record::Hello, ipc::finished_bytes(builder_));
  if (s == shm::RingStatus::kCorrupt) mark_broken();
  if (s == shm::RingStatus::kFull) ++stats_.ring_full;
  if (s != shm::RingStatus::kOk) return false;
  ++out_seq_;
  ++stats_.records_out[static_cast<size_t>(ipc::Record::Hello)];
  hello_due_ = false;
  return true;
}

void StoreClient::maybe_heartbeat(uint64_t now_ns) {
  if (options_.heartbeat_interval_ns == 0) return;
  if (last_heartbeat_ns_ != 0 && now_ns - last_heartbeat_ns_ < options_.heartbeat_interval_ns) {
    return;
  }
  builder_.Clear();
  ipc::finish_envelope(
      builder_, out_seq_,
      ipc::CreateHeartbeat(builder_, options_.instance_id, now_ns, held_appends_, held_bytes_));
  const shm::RingStatus s =
      ipc::put_envelope(link_->to_cp, ipc::Record::Heartbeat, ipc::finished_bytes(builder_));
  if (s == shm::RingStatus::kCorrupt) mark_broken();
  if (s != shm::RingStatus::kOk) return;  // full: the records matter more; next turn
  ++out_seq_;
  ++stats_.records_out[static_cast<size_t>(ipc::Record::Heartbeat)];
  ++stats_.heartbeats_out;
  last_heartbeat_ns_ = now_ns == 0 ? 1 : now_ns;
}

size_t StoreClient::write(uint64_t now_ns) {
  build_cancels();
  if (!link_ || broken_) return 0;
  if (hello_due_ && !put_hello()) {
    if (!broken_) (void)link_->to_cp.commit();
    return 0;
  }
  maybe_heartbeat(now_ns);
  while (fifo_size_ > 0 && !broken_) {
    const QueueEntry e = fifo_[fifo_head_];
    Buffer& b = buffers_[e.buffer];
    if (b.gen != e.gen || !b.queued) {
      fifo_pop();
      continue;
    }
    AppendSlot* append = nullptr;
    DrainSlot* drain = nullptr;
    if (b.type == ipc::Record::StoreAppend) {
      append = find_append(b.owner);
      HERALD_CHECK(append != nullptr, "store client: a held append without its slot");
    } else if (b.type == ipc::Record::DrainRequest) {
      drain = find_drain(b.owner);
      if (drain == nullptr) {  // its session left
        fifo_pop();
        free_buffer(e.buffer);
        continue;
      }
    }
    const shm::Reservation r = link_->to_cp.reserve(static_cast<uint32_t>(b.type), b.bytes.size());
    if (r.status == shm::RingStatus::kFull) {
      ++stats_.ring_full;
      break;
    }
    if (r.status == shm::RingStatus::kCorrupt) {
      mark_broken();
      break;
    }
    fifo_pop();
    if (r.status != shm::RingStatus::kOk) {
      // Too large for this ring (accepted while another ring, or none, was attached): it can
      // never go. An append gets Rejected (never a false durable); others are dropped.
      if (append != nullptr) {
        ++stats_.appends_too_large;
        local_outcomes_.push_back({append->id, append->cookie, ipc::AppendStatus::Rejected});
        free_buffer(e.buffer);
        release_append(*append);
      } else {
        ++stats_.records_dropped;
        free_buffer(e.buffer);
        if (drain != nullptr) release_drain(*drain);
      }
      continue;
    }
    std::memcpy(r.payload.data(), b.bytes.data(), b.bytes.size());
    patch_seq(r.payload, out_seq_++);
    ++stats_.records_out[static_cast<size_t>(b.type)];
    unqueue_accounting(b);
    if (append != nullptr) {
      append->state = SlotState::kSent;
      append->sent_order = ++send_order_;
      append->sent_ns = now_ns;
      append->ever_sent = true;
      // Acks that reached a control plane that died: say them again to the new one.
      if (append->resent && append->acked_count > 0) {
        for (size_t i = 0; i < append->recipients.size(); ++i) {
          if (append->acked[i] != 0 && cancels_.size() < options_.max_cancels_per_turn) {
            cancels_.push_back({append->id, append->recipients[i]});
          }
        }
      }
    } else {
      if (drain != nullptr) {
        drain->state = SlotState::kSent;
        drain->sent_ns = now_ns;
        const uint64_t due = now_ns + options_.drain_timeout_ns;
        if (next_drain_timer_ns_ == 0 || due < next_drain_timer_ns_) next_drain_timer_ns_ = due;
      }
      free_buffer(e.buffer);
    }
  }
  if (broken_) return 0;
  const size_t n = link_->to_cp.commit();
  if (n > 0) ++stats_.commits;
  return n;
}

size_t StoreClient::flush(uint64_t now_ns) {
  return write(now_ns);
}

void StoreClient::drain_timers(uint64_t now_ns) {
  if (next_drain_timer_ns_ == 0 || now_ns < next_drain_timer_ns_) return;
  uint64_t next = 0;
  auto consider = [&next](uint64_t t) {
    if (next == 0 || t < next) next = t;
  };
  for (DrainSlot& slot : drains_) {
    if (slot.state == SlotState::kHeld && slot.retry_ns != 0) {
      if (now_ns >= slot.retry_ns) {
        if (!queue_drain_request(slot)) slot.retry_ns = now_ns + options_.drain_retry_min_ns;
      }
      if (slot.retry_ns != 0) consider(slot.retry_ns);
    } else if (slot.state == SlotState::kSent && !slot.answered && link_ && !broken_) {
      const uint64_t due = slot.sent_ns + options_.drain_timeout_ns;
      if (now_ns >= due) {
        // The response was lost (the control plane could not send it): ask again from where
        // the drain got to.
        ++stats_.drain_timeouts;
        if (!queue_drain_request(slot)) {
          slot.retry_ns = now_ns + options_.drain_retry_min_ns;
          consider(slot.retry_ns);
        }
      } else {
        consider(due);
      }
    }
  }
  next_drain_timer_ns_ = next;
}

void StoreClient::append_timers(uint64_t now_ns) {
  if (options_.append_resend_ns == 0 || !link_ || broken_ || now_ns < next_append_check_ns_) {
    return;
  }
  // A few scans per resend period: the bound on how late a resend is, at a cost of one pass
  // over the slots every append_resend_ns / 4.
  next_append_check_ns_ = now_ns + std::max<uint64_t>(options_.append_resend_ns / 4, 1);
  for (AppendSlot& slot : appends_) {
    if (slot.state != SlotState::kSent || now_ns - slot.sent_ns < options_.append_resend_ns) {
      continue;
    }
    slot.state = SlotState::kHeld;
    slot.resent = true;  // its cancels may have been lost with it
    queue_push_back(slot.buffer);
    ++stats_.appends_resent_timeout;
  }
}

// ---- Reading -------------------------------------------------------------------------------

size_t StoreClient::read(uint64_t now_ns) {
  if (!link_ || broken_) return 0;
  size_t total = 0;
  const std::span<shm::RecordView> views(read_views_);
  while (total < options_.max_records_per_poll) {
    const size_t want = std::min<size_t>(views.size(), options_.max_records_per_poll - total);
    const shm::ReadResult r = link_->from_cp.read_batch(views.first(want));
    for (size_t i = 0; i < r.count; ++i) dispatch(views[i].type, views[i].payload, now_ns);
    total += r.count;
    link_->from_cp.release();
    if (r.status == shm::RingStatus::kCorrupt) {
      mark_broken();
      break;
    }
    if (r.count < want) break;
  }
  return total;
}

void StoreClient::dispatch(uint32_t ring_type, std::span<const std::byte> payload,
                           uint64_t now_ns) {
  const ipc::CheckedEnvelope c = ipc::verify_envelope(ring_type, payload);
  if (c.error != ipc::EnvelopeError::kNone) {
    ++stats_.bad_records[static_cast<size_t>(c.error)];
    return;
  }
  const ipc::Envelope& env = *c.envelope;
  const ipc::Record type = env.record_type();
  ++stats_.records_in[static_cast<size_t>(type)];
  // A Hello starts the writer's numbering again (a new control plane on this ring).
  if (type != ipc::Record::Hello && in_seq_ != 0 && env.seq() != in_seq_) ++stats_.seq_gaps;
  in_seq_ = env.seq() + 1;

  switch (type) {
    case ipc::Record::Hello:
    case ipc::Record::Heartbeat:
      // Observers only (e.g. Hello.server_msg_time_floor_ms for the id minter); no counter when
      // nobody watches.
      if (const PushFn& fn = push_handlers_[static_cast<size_t>(type)]) fn(env);
      return;
    case ipc::Record::AppendDurable:
      on_append_durable(*env.record_as_AppendDurable(), now_ns);
      return;
    case ipc::Record::DrainResponse:
      on_drain_response(*env.record_as_DrainResponse(), now_ns);
      return;
    default: break;
  }
  if (is_dp_to_cp_store_type(type)) {
    ++stats_.unexpected;
    return;
  }
  const PushFn& fn = push_handlers_[static_cast<size_t>(type)];
  if (!fn) {
    ++stats_.pushes_unhandled;
    return;
  }
  fn(env);
}

void StoreClient::on_append_durable(const ipc::AppendDurable& d, uint64_t now_ns) {
  if (d.dataplane_instance_id() != options_.instance_id) {
    // Left on the ring for the dataplane before a restart: that sender never got an ack.
    ++stats_.outcomes_other_instance;
    return;
  }
  if (d.outcomes() == nullptr) {
    ++stats_.malformed;
    return;
  }
  for (const ipc::AppendOutcome* o : *d.outcomes()) {
    AppendSlot* slot = find_append(o->append_id());
    if (slot == nullptr) {
      ++stats_.outcomes_unknown;
      continue;
    }
    ipc::AppendStatus status = o->status();
    if (static_cast<size_t>(status) > static_cast<size_t>(ipc::AppendStatus::MAX)) {
      // A status from a newer build: whatever it means, it is not Durable.
      ++stats_.malformed;
      status = ipc::AppendStatus::StoreFailed;
    }
    std::span<const wire::DeviceAddress> queue_full;
    if (d.queue_full() != nullptr) {
      for (const ipc::QueueFullRecipients* q : *d.queue_full()) {
        if (q->append_id() == o->append_id() && q->devices() != nullptr &&
            q->devices()->size() > 0) {
          // A vector of structs is stored inline and contiguous.
          queue_full = {q->devices()->Get(0), q->devices()->size()};
          break;
        }
      }
    }
    // Sent again to a new control plane that found it durable already (written before the
    // old one died): the devices that acked meanwhile must not get it from their queue.
    if (status == ipc::AppendStatus::Durable && slot->resent && slot->acked_count > 0) {
      for (size_t i = 0; i < slot->recipients.size(); ++i) {
        if (slot->acked[i] != 0) (void)ack_stored(slot->recipients[i], {&slot->msg_id, 1});
      }
    }
    if (callbacks_.on_append_latency && slot->ever_sent && now_ns >= slot->sent_ns) {
      callbacks_.on_append_latency(now_ns - slot->sent_ns);
    }
    const StoreOutcome outcome{slot->id, slot->cookie, status, queue_full};
    free_buffer(slot->buffer);
    release_append(*slot);
    ++stats_.outcomes[static_cast<size_t>(status)];
    if (callbacks_.on_outcome) callbacks_.on_outcome(outcome);
  }
}

void StoreClient::on_drain_response(const ipc::DrainResponse& r, uint64_t now_ns) {
  if (r.dataplane_instance_id() != options_.instance_id) {
    ++stats_.drain_responses_other_instance;
    return;
  }
  DrainSlot* slot = find_drain(r.request_id());
  if (slot == nullptr) {
    ++stats_.drain_responses_dropped;
    return;
  }
  if (r.status() == ipc::DrainStatus::Busy) {
    // The control plane has enough drains reading: ask again later, backing off.
    ++stats_.drain_busy;
    slot->backoff_ns = slot->backoff_ns == 0
                           ? options_.drain_retry_min_ns
                           : std::min(slot->backoff_ns * 2, options_.drain_retry_max_ns);
    slot->state = SlotState::kHeld;
    slot->retry_ns = now_ns + slot->backoff_ns;
    if (next_drain_timer_ns_ == 0 || slot->retry_ns < next_drain_timer_ns_) {
      next_drain_timer_ns_ = slot->retry_ns;
    }
    return;
  }
  ipc::DrainStatus status = r.status();
  if (static_cast<size_t>(status) > static_cast<size_t>(ipc::DrainStatus::MAX)) {
    ++stats_.malformed;
    status = ipc::DrainStatus::StoreError;
  }
  slot->backoff_ns = 0;
  slot->sent_ns = now_ns;
  slot->answered = true;
  drained_.clear();
  if (status == ipc::DrainStatus::Ok && r.messages() != nullptr) {
    for (const wire::Deliver* m : *r.messages()) {
      const wire::ServerMsgId* id = m->server_msg_id();
      if (id == nullptr) {
        ++stats_.malformed;
        continue;
      }
      // A repeat is an id this request already returned (a re-ask from a cursor that was acked
      // meanwhile restarts at the head). Not "at or below the cursor": the queue is in append
      // order, and ids are ordered only per (node, worker), so a later entry may carry a lower
      // id (a receipt or message minted on another worker, or held for a device list).
      if (std::any_of(slot->seen.begin(), slot->seen.end(), [&](const wire::ServerMsgId& x) {
            return !msg_id_less(x, *id) && !msg_id_less(*id, x);
          })) {
        ++stats_.drain_repeats;
        continue;
      }
      slot->seen.push_back(*id);
      drained_.push_back(m);
      ++slot->received;
      slot->cursor = *id;
      slot->has_cursor = true;
    }
  }
  DrainBatch batch;
  batch.request_id = slot->id;
  batch.cookie = slot->cookie;
  batch.device = r.device() != nullptr ? *r.device() : slot->device;
  batch.status = status;
  batch.messages = drained_;
  batch.more = status == ipc::DrainStatus::Ok && r.more();
  const bool over =
      !batch.more || (slot->max_messages != 0 && slot->received >= slot->max_messages);
  if (over) release_drain(*slot);  // before the callback, which may drain() again
  ++stats_.drain_batches;
  stats_.drain_messages += drained_.size();
  if (callbacks_.on_drain) callbacks_.on_drain(batch);
}

void StoreClient::deliver_local_outcomes() {
  // By index: a callback may add more.
  for (size_t i = 0; i < local_outcomes_.size(); ++i) {
    const LocalOutcome o = local_outcomes_[i];
    ++stats_.outcomes[static_cast<size_t>(o.status)];
    if (callbacks_.on_outcome) callbacks_.on_outcome({o.append_id, o.cookie, o.status, {}});
  }
  local_outcomes_.clear();
}

size_t StoreClient::poll(uint64_t now_ns) {
  size_t n = read(now_ns);
  deliver_local_outcomes();
  drain_timers(now_ns);
  append_timers(now_ns);
  n += write(now_ns);
  return n;
}

}  // namespace herald::dataplane
