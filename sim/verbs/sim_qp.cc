// The RC queue-pair engine of SimVerbs: what happens to a posted request between PostSend and its
// completion. See sim_verbs_internal.h for the invariants.
//
// Life of a WRITE: PullSend cuts it into bursts as the egress port asks; at each burst's delivery
// the responder checks the PSN (in sequence?), on the first packet the rkey / bounds / access
// flags, then the delivered bytes are copied into the remote memory and the expected PSN moves on.
// When the last byte is accepted, an ACK reaches the requester one path latency later and the
// request is done. Life of a READ: one request packet (holding one of max_rd_atomic credits); the
// responder checks it and queues a response job on its own egress port; response bursts land in
// local memory at their delivery; the request is done when the last byte has landed.
//
// Losses: a packet lost in sequence stops the requester (go-back-N). If later packets reach the
// responder (random loss, not the tail) it NAKs and the requester resends from the responder's
// expected PSN one path latency later; otherwise the ACK timer (4.096 us * 2^timeout after the last
// progress) fires. Each recovery without progress since the previous one counts as a retry; after
// retry_cnt retries the oldest unfinished request fails with RETRY_EXC_ERR.
#include <algorithm>
#include <cerrno>
#include <cstring>

#include "mooncake/common/logging.h"
#include "sim/verbs/sim_verbs.h"
#include "sim/verbs/sim_verbs_internal.h"

namespace sim {
namespace internal {

namespace {

uint64_t Tag0(BurstKind kind, uint64_t epoch, uint64_t gen) {
  return uint64_t{kind} | ((gen & 0xffffff) << 8) | (epoch << 32);
}
BurstKind KindOf(const Burst& b) { return static_cast<BurstKind>(b.tag[0] & 0xff); }
uint64_t EpochOf(const Burst& b) { return b.tag[0] >> 32; }
uint64_t GenOf(const Burst& b) { return (b.tag[0] >> 8) & 0xffffff; }

uint32_t PacketsFor(uint64_t bytes, uint32_t pmtu) {
  return bytes == 0 ? 1 : static_cast<uint32_t>((bytes + pmtu - 1) / pmtu);
}

uint32_t MtuBytes(ibv_mtu mtu) { return 128u << static_cast<int>(mtu); }

}  // namespace

SimQp::SimQp(SimVerbs* owner_verbs, uint64_t id, SimPd* pd_in, SimCq* send_cq_in, SimCq* recv_cq_in,
             const ibv_qp_init_attr& init, uint32_t qp_number, NicId nic_id)
    : ibv_qp(),
      object_id(id),
      owner(owner_verbs),
      spd(pd_in),
      scq(send_cq_in),
      rcq(recv_cq_in),
      nic(nic_id),
      cap(init.cap),
      sq_sig_all(init.sq_sig_all != 0),
      send_source_(this),
      response_source_(this) {
  context = pd_in->context;
  qp_context = init.qp_context;
  pd = pd_in;
  send_cq = send_cq_in;
  recv_cq = recv_cq_in;
  handle = static_cast<uint32_t>(id);
  qp_num = qp_number;
  state = IBV_QPS_RESET;
  qp_type = IBV_QPT_RC;
  send_flow_ = net()->AddFlow(nic, &send_source_);
  response_flow_ = net()->AddFlow(nic, &response_source_);
}

SimQp::~SimQp() {
  // The network may already be gone when the world is torn down; flows die with it.
}

Simulator* SimQp::sim() const { return owner->sim(); }
Network* SimQp::net() const { return owner->network(); }

WorkRequest* SimQp::Find(uint64_t seq) {
  if (seq < front_seq_ || seq >= next_seq_) return nullptr;
  return &sq_[seq - front_seq_];
}

uint32_t SimQp::MaxBurstPackets() const {
  return std::max<uint32_t>(1, net()->options().max_burst_bytes / pmtu);
}

uint32_t SimQp::PsnAt(const WorkRequest& w, uint64_t offset) const {
  return static_cast<uint32_t>((w.psn + offset / pmtu) & kPsnMask);
}

SimTime SimQp::AckTimeout() const {
  // 4.096 us * 2^timeout; 0 means wait forever (IB spec).
  return timeout == 0 ? 0 : SimTime{4096} << timeout;
}

SimTime SimQp::PathLatency() const {
  return remote_nic == kNoId ? 0 : net()->PathLatency(nic, remote_nic);
}

bool SimQp::HasOutstanding() const {
  return send_seq_ != acc_seq_ || send_off_ != acc_off_ || reads_in_flight_ > 0 || recovering_;
}

void SimQp::BumpEpoch() {
  ++epoch_;
  timer_pending_ = false;
  nak_pending_ = false;
}

void SimQp::KickSend() {
  if (!dead_) net()->KickFlow(send_flow_);
}

// --- Control path hooks ---

void SimQp::OnEnterRtr() {
  pmtu = std::min(MtuBytes(path_mtu), net()->nic_spec(nic).mtu);
  epsn_ = rq_psn & kPsnMask;
  net()->SetFlowDestination(send_flow_, remote_nic);
  net()->SetFlowDestination(response_flow_, remote_nic);
}

void SimQp::OnEnterRts() {
  next_psn_ = sq_psn & kPsnMask;
  KickSend();
}

void SimQp::OnEnterReset() {
  BumpEpoch();
  sq_.clear();
  front_seq_ = next_seq_;
  retired_seq_ = next_seq_ - 1;
  send_seq_ = acc_seq_ = next_seq_;
  send_off_ = acc_off_ = 0;
  reads_in_flight_ = 0;
  rereq_.clear();
  recovering_ = rewind_needed_ = progress_ = false;
  halt_seq_ = kNoHalt;
  consecutive_retries_ = 0;
  jobs_.clear();
  access_flags = 0;
  remote_nic = kNoId;
  dest_qpn = 0;
}

void SimQp::MoveToError() {
  state = IBV_QPS_ERR;
  BumpEpoch();
  recovering_ = rewind_needed_ = false;
  halt_seq_ = kNoHalt;
  reads_in_flight_ = 0;
  rereq_.clear();
  jobs_.clear();
  // Everything still in the send queue flushes, including requests whose own outcome was already
  // known (ACKed, or failed) but whose completion was waiting for an earlier one.
  for (WorkRequest& w : sq_) {
    w.done = true;
    w.status = IBV_WC_WR_FLUSH_ERR;
  }
}

void SimQp::EnterError() {
  if (dead_) return;
  MoveToError();
  TryComplete();
}

void SimQp::Kill() {
  if (dead_) return;
  dead_ = true;
  BumpEpoch();
  sq_.clear();
  jobs_.clear();
  rereq_.clear();
  net()->RemoveFlow(send_flow_);
  net()->RemoveFlow(response_flow_);
}

// --- Posting ---

int SimQp::Validate(const ibv_send_wr& wr) const {
  if (state != IBV_QPS_RTS && state != IBV_QPS_ERR) return EINVAL;
  if (wr.opcode != IBV_WR_RDMA_WRITE && wr.opcode != IBV_WR_RDMA_READ) return EINVAL;
  if (wr.num_sge < 0 || static_cast<uint32_t>(wr.num_sge) > cap.max_send_sge) return EINVAL;
  if (wr.num_sge > 0 && wr.sg_list == nullptr) return EINVAL;
  if (outstanding() >= static_cast<int>(cap.max_send_wr)) return ENOMEM;
  if (wr.send_flags & IBV_SEND_INLINE) {
    if (wr.opcode != IBV_WR_RDMA_WRITE) return EINVAL;
    uint64_t total = 0;
    for (int i = 0; i < wr.num_sge; ++i) total += wr.sg_list[i].length;
    if (total > cap.max_inline_data) return EINVAL;
  }
  return 0;
}

void SimQp::Enqueue(const ibv_send_wr& wr) {
  WorkRequest w;
  w.seq = next_seq_++;
  w.wr_id = wr.wr_id;
  w.opcode = wr.opcode;
  w.signaled = sq_sig_all || (wr.send_flags & IBV_SEND_SIGNALED) != 0;
  w.fence = (wr.send_flags & IBV_SEND_FENCE) != 0;
  w.is_inline = (wr.send_flags & IBV_SEND_INLINE) != 0;
  w.remote_addr = wr.wr.rdma.remote_addr;
  w.rkey = wr.wr.rdma.rkey;
  for (int i = 0; i < wr.num_sge; ++i) {
    w.sges.push_back(wr.sg_list[i]);
    w.length += wr.sg_list[i].length;
  }
  if (w.is_inline) {
    // Inline data is copied into the WQE now; no lkey is involved.
    w.inline_data.resize(w.length);
    uint64_t at = 0;
    for (const ibv_sge& s : w.sges) {
      if (s.length > 0) {
        std::memcpy(&w.inline_data[at], reinterpret_cast<const void*>(s.addr), s.length);
      }
      at += s.length;
    }
  }
  w.npkts = PacketsFor(w.length, pmtu);
  w.psn = next_psn_;
  next_psn_ = (next_psn_ + w.npkts) & kPsnMask;
  if (state == IBV_QPS_ERR) {
    w.done = true;
    w.status = IBV_WC_WR_FLUSH_ERR;
  }
  if (w.opcode == IBV_WR_RDMA_WRITE) {
    ++owner->stats_.writes_posted;
  } else {
    ++owner->stats_.reads_posted;
  }
  sq_.push_back(std::move(w));
}

int SimQp::Post(ibv_send_wr* wr, ibv_send_wr** bad_wr) {
  int err = 0;
  for (ibv_send_wr* w = wr; w != nullptr; w = w->next) {
    err = Validate(*w);
    if (err != 0) {
      if (bad_wr != nullptr) *bad_wr = w;
      break;
    }
    Enqueue(*w);
  }
  // Requests before a bad one stay posted, as with libibverbs.
  if (state == IBV_QPS_ERR) {
    TryComplete();
  } else {
    KickSend();
  }
  return err;
}

void SimQp::OnCompletionPolled(uint64_t seq) { retired_seq_ = std::max(retired_seq_, seq); }

// --- Requester: sending ---

ibv_wc_status SimQp::CheckLocal(const WorkRequest& w) const {
  if (w.length > owner->limits(nic).max_msg_sz) return IBV_WC_LOC_LEN_ERR;
  if (w.is_inline) return IBV_WC_SUCCESS;
  for (const ibv_sge& s : w.sges) {
    if (s.length == 0) continue;
    const SimMr* mr = owner->FindMrByLkey(s.lkey);
    if (mr == nullptr || mr->spd != spd || !mr->Contains(s.addr, s.length)) {
      return IBV_WC_LOC_PROT_ERR;
    }
    // The NIC writes READ responses into local memory: that needs LOCAL_WRITE.
    if (w.opcode == IBV_WR_RDMA_READ && !(mr->access & IBV_ACCESS_LOCAL_WRITE)) {
      return IBV_WC_LOC_PROT_ERR;
    }
  }
  return IBV_WC_SUCCESS;
}

int SimQp::ReadLimit() {
  int limit = max_rd_atomic;
  const SimQp* peer = FindResponder();
  if (peer != nullptr) limit = std::min<int>(limit, peer->max_dest_rd_atomic);
  return std::max(1, limit);
}

bool SimQp::PullSend(Burst* b) {
  if (dead_ || state != IBV_QPS_RTS || recovering_) return false;
  const bool had_outstanding = HasOutstanding();
  if (!FillSendBurst(b)) return false;
  if (!had_outstanding) timer_base_ = sim()->Now();
  ArmTimer();
  return true;
}

bool SimQp::FailsAtSend(WorkRequest& w) {
  if (owner->fabric()->options().local_port_down != SimVerbsOptions::LocalPortDown::kFailAtSend ||
      net()->nic_usable(nic)) {
    return false;
  }
  Fail(w, IBV_WC_LOC_QP_OP_ERR);
  return true;
}

bool SimQp::FillSendBurst(Burst* b) {
  // Re-requests of READ responses go first: they are retransmissions.
  while (!rereq_.empty()) {
    const uint64_t seq = rereq_.front();
    rereq_.pop_front();
    WorkRequest* w = Find(seq);
    if (w == nullptr || w->done || !w->rereq) continue;
    if (FailsAtSend(*w)) return false;
    w->rereq = false;
    b->tag[0] = Tag0(kReadReRequest, epoch_, send_gen_);
    b->tag[1] = seq;
    b->tag[2] = w->landed;
    b->tag[3] = PsnAt(*w, w->landed);
    b->payload_bytes = 0;
    b->packets = 1;
    return true;
  }
  while (send_seq_ < next_seq_ && send_seq_ < halt_seq_) {
    WorkRequest& w = *Find(send_seq_);
    if (w.done) {
      ++send_seq_;
      send_off_ = 0;
      continue;
    }
    if (!w.processed) {
      if (w.fence && reads_in_flight_ > 0) return false;  // kicked when the READs finish
      const ibv_wc_status local = CheckLocal(w);
      if (local != IBV_WC_SUCCESS) {
        Fail(w, local);
        return false;
      }
      w.processed = true;
    }
    if (FailsAtSend(w)) return false;
    if (w.opcode == IBV_WR_RDMA_READ) {
      if (!w.read_counted) {
        if (reads_in_flight_ >= ReadLimit()) return false;  // kicked when a READ finishes
        w.read_counted = true;
        ++reads_in_flight_;
      }
      b->tag[0] = Tag0(kReadRequest, epoch_, send_gen_);
      b->tag[1] = w.seq;
      b->tag[2] = 0;
      b->tag[3] = w.psn;
      b->payload_bytes = 0;
      b->packets = 1;
      ++send_seq_;
      send_off_ = 0;
      return true;
    }
    const uint64_t bytes =
        std::min<uint64_t>(w.length - send_off_, uint64_t{MaxBurstPackets()} * pmtu);
    b->tag[0] = Tag0(kWriteData, epoch_, send_gen_);
    b->tag[1] = w.seq;
    b->tag[2] = send_off_;
    b->tag[3] = PsnAt(w, send_off_);
    b->payload_bytes = static_cast<uint32_t>(bytes);
    b->packets = PacketsFor(bytes, pmtu);
    send_off_ += bytes;
    if (send_off_ >= w.length) {
      ++send_seq_;
      send_off_ = 0;
    }
    return true;
  }
  return false;
}

SimQp* SimQp::FindResponder() const {
  if (remote_nic == kNoId || !net()->host_alive(net()->nic_host(remote_nic))) return nullptr;
  SimQp* q = owner->fabric()->ForNic(remote_nic)->FindQp(dest_qpn);
  if (q == nullptr || q->dead_ || q->nic != remote_nic) return nullptr;
  if (q->state != IBV_QPS_RTR && q->state != IBV_QPS_RTS) return nullptr;
  // The responder must be connected back to this QP.
  if (q->remote_nic != nic || q->dest_qpn != qp_num) return nullptr;
  return q;
}

bool SimQp::SentBeyond(uint64_t seq, uint64_t end_offset, uint64_t length) const {
  uint64_t s = seq, o = end_offset;
  if (o >= length) {
    ++s;
    o = 0;
  }
  return send_seq_ > s || (send_seq_ == s && send_off_ > o);
}

// --- Requester: deliveries ---

void SimQp::OnSendDelivery(const Burst& b, const Delivery& d) {
  if (EpochOf(b) != epoch_ || dead_ || state != IBV_QPS_RTS) return;  // sent before a reset/error
  const BurstKind kind = KindOf(b);
  const uint64_t seq = b.tag[1];
  const uint64_t offset = b.tag[2];
  const uint32_t psn = static_cast<uint32_t>(b.tag[3]);
  WorkRequest* w = Find(seq);
  if (w == nullptr || w->done) return;
  SimQp* responder = FindResponder();
  // A burst sent before the last rewind was already given up on: its loss starts no recovery.
  const bool current = GenOf(b) == (send_gen_ & 0xffffff);

  if (kind == kReadReRequest) {
    if (d.packets_delivered == 0 || responder == nullptr) {
      if (!w->rereq) {
        w->rereq = true;
        rereq_.push_back(seq);
      }
      if (current) OnLoss(/*nak=*/false, 0);
      return;
    }
    if (w->length > 0 && responder->CheckRemote(w->rkey, w->remote_addr, w->length,
                                                IBV_ACCESS_REMOTE_READ) == nullptr) {
      AccessError(responder, seq);
      return;
    }
    responder->EnqueueResponse(this, *w, offset);
    return;
  }

  if (responder == nullptr) {
    // Nobody answers (peer QP gone, in error, host dead): only the ACK timer will tell.
    if (current) OnLoss(/*nak=*/false, 0);
    return;
  }
  if (psn != responder->epsn_) {
    // Out of sequence: behind an earlier loss (being recovered) or a PSN mismatch between the two
    // sides. The responder drops it; the ACK timer covers the mismatch case.
    return;
  }
  const uint32_t delivered = d.packets_delivered;
  if (delivered > 0) {
    if (kind == kReadRequest) {
      if (w->length > 0 && responder->CheckRemote(w->rkey, w->remote_addr, w->length,
                                                  IBV_ACCESS_REMOTE_READ) == nullptr) {
        AccessError(responder, seq);
        return;
      }
      responder->epsn_ = (responder->epsn_ + w->npkts) & kPsnMask;
      w->request_accepted = true;
      acc_seq_ = seq + 1;
      acc_off_ = 0;
      Progress();
      responder->EnqueueResponse(this, *w, 0);
      return;
    }
    if (offset == 0 && w->length > 0 &&
        responder->CheckRemote(w->rkey, w->remote_addr, w->length, IBV_ACCESS_REMOTE_WRITE) ==
            nullptr) {
      AccessError(responder, seq);
      return;
    }
    const uint64_t bytes = delivered == b.packets
                               ? b.payload_bytes
                               : std::min<uint64_t>(b.payload_bytes, uint64_t{delivered} * pmtu);
    if (!CopyWrite(responder, *w, offset, bytes)) return;
    responder->epsn_ = (responder->epsn_ + delivered) & kPsnMask;
    owner->stats_.bytes_written += bytes;
    acc_off_ = offset + bytes;
    Progress();
    if (acc_off_ >= w->length && delivered == b.packets) {
      acc_seq_ = seq + 1;
      acc_off_ = 0;
      w->ack_pending = true;
      ScheduleAck(seq);
    }
  }
  if (delivered < b.packets && current) {
    // A packet lost in sequence. The responder NAKs if a later packet reaches it.
    rewind_needed_ = true;
    const bool later_arrives =
        d.cause == DropCause::kLinkLoss &&
        (delivered + 1 < b.packets || SentBeyond(seq, offset + b.payload_bytes, w->length));
    OnLoss(later_arrives, PathLatency());
  }
}

void SimQp::ResponseSource::OnDelivery(const Burst& b, const Delivery& d) {
  SimQp* requester = reinterpret_cast<SimQp*>(static_cast<uintptr_t>(b.tag[3]));
  requester->OnReadData(qp_, b, d);
}

void SimQp::OnReadData(SimQp* responder, const Burst& b, const Delivery& d) {
  if (EpochOf(b) != epoch_ || dead_ || state != IBV_QPS_RTS) return;
  const uint64_t seq = b.tag[1];
  const uint64_t offset = b.tag[2];
  WorkRequest* w = Find(seq);
  if (w == nullptr || w->done || w->opcode != IBV_WR_RDMA_READ) return;
  if (offset != w->landed) return;  // behind a lost packet: discarded (go-back-N)
  const uint32_t delivered = d.packets_delivered;
  const uint64_t bytes = delivered == b.packets
                             ? b.payload_bytes
                             : std::min<uint64_t>(b.payload_bytes, uint64_t{delivered} * pmtu);
  if (bytes > 0) {
    if (!CopyRead(responder, *w, offset, bytes)) return;
    w->landed += bytes;
    owner->stats_.bytes_read += bytes;
    Progress();
  }
  if (delivered == b.packets) {
    if (offset + b.payload_bytes >= w->length) {
      w->done = true;
      if (w->read_counted) {
        w->read_counted = false;
        --reads_in_flight_;
      }
      Progress();
      TryComplete();
      KickSend();  // a READ credit is free; a fenced request may go
    }
    return;
  }
  // Response packets lost: the rest of this response is useless; ask again from the gap.
  SimQp* r = FindResponder();
  if (r != nullptr) r->CancelResponse(this, seq);
  if (!w->rereq) {
    w->rereq = true;
    rereq_.push_back(seq);
  }
  const bool later_arrives = d.cause == DropCause::kLinkLoss &&
                             (delivered + 1 < b.packets || offset + b.payload_bytes < w->length);
  OnLoss(later_arrives, 0);
}

bool SimQp::CopyWrite(SimQp* responder, WorkRequest& w, uint64_t offset, uint64_t bytes) {
  if (bytes == 0) return true;
  // The responder re-checks its MR on every packet: deregistering it mid-transfer is an access
  // error, never a write into freed memory.
  if (responder->CheckRemote(w.rkey, w.remote_addr + offset, bytes, IBV_ACCESS_REMOTE_WRITE) ==
      nullptr) {
    AccessError(responder, w.seq);
    return false;
  }
  const bool copy = owner->fabric()->options().copy_data;
  char* dst = reinterpret_cast<char*>(w.remote_addr + offset);
  if (w.is_inline) {
    if (copy) std::memcpy(dst, w.inline_data.data() + offset, bytes);
    return true;
  }
  uint64_t skip = offset, left = bytes;
  for (const ibv_sge& s : w.sges) {
    if (left == 0) break;
    if (skip >= s.length) {
      skip -= s.length;
      continue;
    }
    if (owner->FindMrByLkey(s.lkey) == nullptr) {
      Fail(w, IBV_WC_LOC_PROT_ERR);  // local MR deregistered while the request was in flight
      return false;
    }
    const uint64_t n = std::min<uint64_t>(s.length - skip, left);
    if (copy) std::memcpy(dst, reinterpret_cast<const char*>(s.addr + skip), n);
    dst += n;
    left -= n;
    skip = 0;
  }
  return true;
}

bool SimQp::CopyRead(SimQp* responder, WorkRequest& w, uint64_t offset, uint64_t bytes) {
  const SimMr* remote = responder->owner->FindMrByRkey(w.rkey);
  if (remote == nullptr || !remote->Contains(w.remote_addr + offset, bytes)) {
    Fail(w, IBV_WC_REM_ACCESS_ERR);  // remote MR deregistered while being read
    return false;
  }
  const bool copy = owner->fabric()->options().copy_data;
  const char* src = reinterpret_cast<const char*>(w.remote_addr + offset);
  uint64_t skip = offset, left = bytes;
  for (const ibv_sge& s : w.sges) {
    if (left == 0) break;
    if (skip >= s.length) {
      skip -= s.length;
      continue;
    }
    if (owner->FindMrByLkey(s.lkey) == nullptr) {
      Fail(w, IBV_WC_LOC_PROT_ERR);
      return false;
    }
    const uint64_t n = std::min<uint64_t>(s.length - skip, left);
    if (copy) std::memcpy(reinterpret_cast<char*>(s.addr + skip), src, n);
    src += n;
    left -= n;
    skip = 0;
  }
  return true;
}

void SimQp::AccessError(SimQp* responder, uint64_t seq) {
  // The responder reports IBV_EVENT_QP_ACCESS_ERR and goes to ERROR; the requester gets a NAK.
  responder->EnterError();
  ScheduleNak(seq, IBV_WC_REM_ACCESS_ERR);
}

void SimQp::ScheduleAck(uint64_t seq) {
  sim()->Schedule(PathLatency(), "rc.ack", [this, e = epoch_, seq] {
    if (e != epoch_) return;
    WorkRequest* w = Find(seq);
    if (w == nullptr || w->done) return;
    w->done = true;
    w->ack_pending = false;
    TryComplete();
  });
}

void SimQp::ScheduleNak(uint64_t seq, ibv_wc_status status) {
  sim()->Schedule(PathLatency(), "rc.nak", [this, e = epoch_, seq, status] {
    if (e != epoch_) return;
    WorkRequest* w = Find(seq);
    if (w == nullptr || w->done) return;
    Fail(*w, status);
  });
}

void SimQp::Fail(WorkRequest& w, ibv_wc_status status) {
  w.done = true;
  w.status = status;
  halt_seq_ = std::min(halt_seq_, w.seq);
  TryComplete();
}

void SimQp::FailOldest(ibv_wc_status status) {
  for (WorkRequest& w : sq_) {
    if (w.done || w.ack_pending) continue;
    Fail(w, status);
    return;
  }
}

// --- Requester: timers and recovery ---

void SimQp::Progress() {
  progress_ = true;
  timer_base_ = sim()->Now();
}

void SimQp::OnLoss(bool nak, SimTime nak_delay) {
  if (recovering_) return;
  recovering_ = true;
  if (nak) {
    nak_pending_ = true;
    sim()->Schedule(nak_delay, "rc.nak_seq", [this, e = epoch_] {
      if (e != epoch_ || !nak_pending_) return;
      Recover(/*timeout=*/false);
    });
  }
  ArmTimer();
}

void SimQp::ArmTimer() {
  if (timer_pending_ || AckTimeout() == 0) return;
  timer_pending_ = true;
  const SimTime at = std::max(sim()->Now(), timer_base_ + AckTimeout());
  sim()->ScheduleAt(at, "rc.ack_timer", [this, e = epoch_] { OnTimer(e); });
}

void SimQp::OnTimer(uint64_t e) {
  if (e != epoch_) return;
  timer_pending_ = false;
  if (dead_ || state != IBV_QPS_RTS || !HasOutstanding()) return;
  if (nak_pending_ || sim()->Now() < timer_base_ + AckTimeout()) {
    ArmTimer();  // progress since the timer was set (or a NAK will recover first)
    return;
  }
  ++owner->stats_.ack_timeouts;
  Recover(/*timeout=*/true);
}

void SimQp::Recover(bool timeout) {
  nak_pending_ = false;
  consecutive_retries_ = progress_ ? 1 : consecutive_retries_ + 1;
  progress_ = false;
  ++owner->stats_.retransmissions;
  sim()->Trace(timeout ? 0x7100u : 0x7101u);
  if (consecutive_retries_ > retry_cnt) {
    recovering_ = false;
    FailOldest(IBV_WC_RETRY_EXC_ERR);
    return;
  }
  if (timeout) {
    // Nothing came back for a whole timeout: resend what the responder has not accepted, and ask
    // again for every accepted READ whose response is incomplete.
    rewind_needed_ = true;
    for (WorkRequest& w : sq_) {
      if (w.seq >= acc_seq_) break;
      if (w.opcode == IBV_WR_RDMA_READ && !w.done && w.request_accepted && !w.rereq) {
        w.rereq = true;
        rereq_.push_back(w.seq);
      }
    }
  }
  if (rewind_needed_) {
    send_seq_ = acc_seq_;
    send_off_ = acc_off_;
    rewind_needed_ = false;
    ++send_gen_;
  }
  recovering_ = false;
  timer_base_ = sim()->Now();
  KickSend();
  if (HasOutstanding()) ArmTimer();
}

// --- Requester: completions ---

void SimQp::TryComplete() {
  while (!sq_.empty() && sq_.front().done) {
    WorkRequest w = std::move(sq_.front());
    sq_.pop_front();
    ++front_seq_;
    const bool error = w.status != IBV_WC_SUCCESS;
    if (w.signaled || error) {
      ibv_wc wc;
      std::memset(&wc, 0, sizeof(wc));
      wc.wr_id = w.wr_id;
      wc.status = w.status;
      wc.opcode = w.opcode == IBV_WR_RDMA_READ ? IBV_WC_RDMA_READ : IBV_WC_RDMA_WRITE;
      wc.byte_len = error ? 0 : static_cast<uint32_t>(w.length);
      wc.vendor_err = error ? 0x100u + static_cast<uint32_t>(w.status) : 0;
      wc.qp_num = qp_num;
      owner->PushCompletion(scq, this, w.seq, wc);
    }
    // The first error completion moves the QP to ERROR; everything behind it is flushed.
    if (error && state != IBV_QPS_ERR) MoveToError();
  }
  if (send_seq_ < front_seq_) {
    send_seq_ = front_seq_;
    send_off_ = 0;
  }
  if (acc_seq_ < front_seq_) {
    acc_seq_ = front_seq_;
    acc_off_ = 0;
  }
}

// --- Responder ---

SimMr* SimQp::CheckRemote(uint32_t rkey, uint64_t addr, uint64_t length, unsigned need) const {
  if (!(access_flags & need)) return nullptr;  // the QP does not allow this remote operation
  SimMr* mr = owner->FindMrByRkey(rkey);
  if (mr == nullptr || mr->spd != spd) return nullptr;  // unknown key or another PD / device
  if (!(static_cast<unsigned>(mr->access) & need)) return nullptr;
  if (!mr->Contains(addr, length)) return nullptr;
  return mr;
}

void SimQp::EnqueueResponse(SimQp* requester, const WorkRequest& w, uint64_t offset) {
  // A duplicate READ request restarts the response from its offset.
  CancelResponse(requester, w.seq);
  ResponseJob job;
  job.requester = requester;
  job.requester_epoch = requester->epoch_;
  job.seq = w.seq;
  job.next = offset;
  job.end = w.length;
  jobs_.push_back(job);
  net()->KickFlow(response_flow_);
}

void SimQp::CancelResponse(SimQp* requester, uint64_t seq) {
  for (auto it = jobs_.begin(); it != jobs_.end();) {
    if (it->requester == requester && it->seq == seq) {
      it = jobs_.erase(it);
    } else {
      ++it;
    }
  }
}

bool SimQp::PullResponse(Burst* b) {
  if (dead_ || (state != IBV_QPS_RTR && state != IBV_QPS_RTS)) return false;
  while (!jobs_.empty()) {
    ResponseJob& job = jobs_.front();
    SimQp* r = job.requester;
    if (r->dead_ || r->epoch_ != job.requester_epoch) {
      jobs_.pop_front();
      continue;
    }
    const uint64_t bytes =
        std::min<uint64_t>(job.end - job.next, uint64_t{r->MaxBurstPackets()} * r->pmtu);
    b->tag[0] = Tag0(kReadResponse, job.requester_epoch, 0);
    b->tag[1] = job.seq;
    b->tag[2] = job.next;
    b->tag[3] = reinterpret_cast<uintptr_t>(r);
    b->payload_bytes = static_cast<uint32_t>(bytes);
    b->packets = PacketsFor(bytes, r->pmtu);
    job.next += bytes;
    if (job.next >= job.end) jobs_.pop_front();
    return true;
  }
  return false;
}

}  // namespace internal
}  // namespace sim
