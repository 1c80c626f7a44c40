// RdmaTransport's data path: slicing requests, posting slices to rails, completions, retries on
// other rails, and failing slices that run out of tries.
#include "mooncake/transfer/rdma/rdma_transport.h"

#include <errno.h>
#include <string.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/transfer/rdma/rdma_internal.h"

namespace mooncake {
namespace {

using rdma_internal::TransferFail;
using rdma_internal::WcStatusName;

// Completions drained per PollCq call.
constexpr int kPollBatch = 32;
static_assert(kPollBatch > 0, "poll batch");

}  // namespace

const ibv_mr* RdmaTransport::LocalMrLocked(uint64_t addr, uint64_t length, int device,
                                           uint64_t* chunk_end) {
  auto it = regions_.upper_bound(addr);
  if (it == regions_.begin()) return nullptr;
  --it;
  const Region& r = *it->second;
  if (addr + length < addr || addr + length > r.addr + r.length) return nullptr;
  for (const auto& c : r.chunks) {
    if (addr >= c.addr && addr < c.addr + c.length) {
      if (chunk_end) *chunk_end = c.addr + c.length;
      return c.mrs[device];
    }
  }
  return nullptr;
}

void RdmaTransport::Submit(const std::shared_ptr<TransferBatch>& batch, size_t request,
                           bool is_write, uint64_t local_addr, uint64_t remote_addr,
                           uint64_t length, const std::shared_ptr<const SegmentDescriptor>& peer) {
  std::vector<Completion> done;
  {
    absl::MutexLock lock(&mu_);
    SubmitLocked(batch, request, is_write, local_addr, remote_addr, length, peer);
    done.swap(completions_);
  }
  Deliver(&done);
}

void RdmaTransport::Deliver(std::vector<Completion>* done) {
  for (Completion& c : *done) {
    if (c.slice) {
      c.batch->SliceDone(c.request, c.status);
    } else {
      c.batch->Finish(c.request, c.status);
    }
  }
  done->clear();
}

void RdmaTransport::SubmitLocked(const std::shared_ptr<TransferBatch>& batch, size_t request,
                                 bool is_write, uint64_t local_addr, uint64_t remote_addr,
                                 uint64_t length,
                                 const std::shared_ptr<const SegmentDescriptor>& peer) {
  auto finish = [&](absl::Status status) {
    completions_.push_back({batch, request, std::move(status), /*slice=*/false});
  };
  if (length == 0) {
    finish(absl::OkStatus());
    return;
  }
  if (LocalMrLocked(local_addr, length, 0, nullptr) == nullptr) {
    finish(MakeError(
        ErrorCode::INVALID_PARAMS,
        absl::StrFormat("rdma: local range [%#x, +%u) is not registered", local_addr, length)));
    return;
  }
  // The remote range may span several adjacent MR chunks; every byte must be covered.
  for (uint64_t at = remote_addr; at < remote_addr + length;) {
    const BufferDesc* b = peer->FindBuffer(at, 1);
    if (b == nullptr || remote_addr + length < remote_addr) {
      finish(MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrFormat("rdma: remote range [%#x, +%u) is outside the buffers of "
                                       "segment %s",
                                       remote_addr, length, peer->name)));
      return;
    }
    at = b->addr + b->length;
  }
  absl::StatusOr<Peer*> p = GetPeerLocked(peer);
  if (!p.ok()) {
    finish(p.status());
    return;
  }
  // Cut at the slice size and at MR chunk boundaries on both sides.
  std::vector<std::pair<uint64_t, uint64_t>> cuts;  // offset, length
  for (uint64_t off = 0; off < length;) {
    uint64_t n = std::min(options_.slice_size, length - off);
    uint64_t local_end = 0;
    LocalMrLocked(local_addr + off, 1, 0, &local_end);
    n = std::min(n, local_end - (local_addr + off));
    const BufferDesc* b = peer->FindBuffer(remote_addr + off, 1);
    n = std::min(n, b->addr + b->length - (remote_addr + off));
    cuts.emplace_back(off, n);
    off += n;
  }
  batch->AddSlices(request, static_cast<int>(cuts.size()));
  for (const auto& [off, n] : cuts) {
    uint32_t slot;
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = static_cast<uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    Slice& s = slots_[slot];
    s = Slice();
    s.batch = batch;
    s.request = request;
    s.write = is_write;
    s.local = local_addr + off;
    s.remote = remote_addr + off;
    s.length = n;
    s.peer = *p;
    s.instance = peer->instance;
    (*p)->waiting.push_back(slot);
  }
}

void RdmaTransport::FinishLocked(uint32_t slot, const absl::Status& status) {
  Slice& s = slots_[slot];
  std::shared_ptr<TransferBatch> batch = std::move(s.batch);
  size_t request = s.request;
  s = Slice();
  free_slots_.push_back(slot);
  // Delivered once mu_ is released: a completion callback may submit again.
  completions_.push_back({std::move(batch), request, status, /*slice=*/true});
}

void RdmaTransport::RetryOrFailLocked(uint32_t slot, const absl::Status& why) {
  Slice& s = slots_[slot];
  if (++s.attempts >= options_.max_attempts) {
    FinishLocked(slot, why);
    return;
  }
  s.rail = nullptr;
  s.peer->waiting.push_back(slot);
}

void RdmaTransport::ChargeWaitingLocked(Peer* peer, const absl::Status& why) {
  std::deque<uint32_t> waiting;
  waiting.swap(peer->waiting);
  for (uint32_t slot : waiting) {
    if (++slots_[slot].attempts >= options_.max_attempts) {
      FinishLocked(slot, why);
    } else {
      peer->waiting.push_back(slot);
    }
  }
}

void RdmaTransport::FailOtherIncarnationLocked(Peer* peer, uint64_t instance,
                                               const absl::Status& why) {
  std::deque<uint32_t> waiting;
  waiting.swap(peer->waiting);
  for (uint32_t slot : waiting) {
    if (slots_[slot].instance != 0 && slots_[slot].instance != instance) {
      FinishLocked(slot, why);
    } else {
      peer->waiting.push_back(slot);
    }
  }
}

void RdmaTransport::CompleteLocked(const ibv_wc& wc) {
  const uint32_t slot = static_cast<uint32_t>(wc.wr_id);
  if (slot >= slots_.size() || slots_[slot].rail == nullptr) {
    MC_LOG(ERROR) << "rdma: completion for unknown work request " << wc.wr_id;
    return;
  }
  Slice& s = slots_[slot];
  Rail* rail = s.rail;
  rail->outstanding[s.qp]--;
  rail->total_outstanding--;
  devices_[rail->local_device]->outstanding--;
  --in_flight_;
  switch (wc.status) {
    case IBV_WC_SUCCESS:
      rail->stats.bytes += s.length;
      rail->stats.slices++;
      rail->paused_until = 0;  // a successful probe reopens the rail
      FinishLocked(slot, absl::OkStatus());
      return;
    case IBV_WC_WR_FLUSH_ERR:
      // Not this slice's fault: its QP failed on an earlier request. Post it again elsewhere.
      rail->broken = true;
      s.rail = nullptr;
      s.peer->waiting.push_front(slot);
      return;
    case IBV_WC_REM_ACCESS_ERR:
    case IBV_WC_REM_INV_REQ_ERR:
      rail->broken = true;
      FinishLocked(slot, MakeError(ErrorCode::INVALID_PARAMS,
                                   absl::StrFormat("rdma: peer %s refused access to [%#x, +%u) "
                                                   "(%s)",
                                                   s.peer->name, s.remote, s.length,
                                                   WcStatusName(wc.status))));
      return;
    case IBV_WC_LOC_PROT_ERR:
    case IBV_WC_LOC_LEN_ERR:
      // Slices are cut within registered chunks and the message size limit, so these mean the
      // caller's memory changed under the request (deregistered mid-transfer).
      rail->broken = true;
      FinishLocked(slot, MakeError(ErrorCode::INVALID_PARAMS,
                                   absl::StrFormat("rdma: local buffer [%#x, +%u) rejected (%s)",
                                                   s.local, s.length, WcStatusName(wc.status))));
      return;
    default:
      // Includes LOC_QP_OP_ERR: rxe fails requests that way when the local link is down (the
      // route to the peer is gone), so it is the rail's failure (docs/verbs.md, "Local port down").
      if (!rail->broken && rail->paused_until <= clock_->NowNanos()) {
        MC_LOG(WARNING) << "rdma: rail " << devices_[rail->local_device]->name << " -> "
                        << s.peer->name << ":" << rail->remote_nic << " failed ("
                        << WcStatusName(wc.status) << "); paused, its requests move elsewhere";
      }
      rail->broken = true;
      PauseRailLocked(rail);
      RetryOrFailLocked(slot, TransferFail(absl::StrFormat(
                                  "%s -> %s:%s failed: %s", devices_[rail->local_device]->name,
                                  s.peer->name, rail->remote_nic, WcStatusName(wc.status))));
      return;
  }
}

RdmaTransport::PostResult RdmaTransport::TryPostLocked(Peer* peer, uint32_t slot, int64_t now,
                                                       absl::Status* error) {
  const size_t n = peer->rails.size();
  for (size_t t = 0; t < n; ++t) {
    size_t index = (peer->next_rail + t) % n;
    Rail* rail = peer->rails[index].get();
    if (rail->connecting) continue;
    if (rail->broken) {
      if (rail->total_outstanding > 0) continue;  // let the flush drain first
      TearDownLocked(rail);
    }
    if (rail->paused_until > now) continue;
    // An expired pause means "probing": one slice at a time until one succeeds.
    if (rail->paused_until != 0 && rail->total_outstanding > 0) continue;
    Device* dev = devices_[rail->local_device].get();
    if (dev->outstanding >= options_.cq_entries) continue;
    if (!rail->connected) {
      // With an executor the handshake runs there and this rail is skipped until it is done;
      // without one it runs now.
      absl::Status c = StartConnectLocked(peer, index);
      if (ToErrorCode(c) == ErrorCode::INVALID_REPLICA) {
        FinishLocked(slot, c);  // the rail is fine; this slice's peer process is gone
        return PostResult::kFinished;
      }
      if (!c.ok()) {
        *error = c;
        return PostResult::kFailed;
      }
      if (!rail->connected) continue;
    }
    size_t q = rail->qps.size();
    size_t chosen = q;
    for (size_t k = 0; k < q; ++k) {
      size_t cand = (rail->next_qp + k) % q;
      if (rail->outstanding[cand] < options_.max_wr_per_qp) {
        chosen = cand;
        break;
      }
    }
    if (chosen == q) continue;
    Slice& s = slots_[slot];  // re-read: a handshake may have let slots_ grow
    if (s.instance != 0 && s.peer->desc->instance != s.instance) {
      // The peer restarted (same name, maybe the same addresses) after the slice was submitted:
      // writing or reading the new process's memory would touch some other object.
      FinishLocked(slot, MakeError(ErrorCode::INVALID_REPLICA,
                                   absl::StrCat("rdma: segment ", s.peer->name,
                                                " restarted since the transfer was submitted")));
      return PostResult::kFinished;
    }
    const BufferDesc* remote = s.peer->desc->FindBuffer(s.remote, s.length);
    const ibv_mr* mr = LocalMrLocked(s.local, s.length, rail->local_device, nullptr);
    if (remote == nullptr || mr == nullptr ||
        remote->rkey.size() <= static_cast<size_t>(rail->remote_device)) {
      FinishLocked(slot, MakeError(ErrorCode::INVALID_PARAMS,
                                   "rdma: buffer was unregistered before the transfer ran"));
      return PostResult::kFinished;
    }
    ibv_sge sge;
    sge.addr = s.local;
    sge.length = static_cast<uint32_t>(s.length);
    sge.lkey = mr->lkey;
    ibv_send_wr wr;
    memset(&wr, 0, sizeof(wr));
    wr.wr_id = slot;
    wr.sg_list = &sge;
    wr.num_sge = 1;
    wr.opcode = s.write ? IBV_WR_RDMA_WRITE : IBV_WR_RDMA_READ;
    wr.send_flags = IBV_SEND_SIGNALED;
    wr.wr.rdma.remote_addr = s.remote;
    wr.wr.rdma.rkey = remote->rkey[rail->remote_device];
    ibv_send_wr* bad = nullptr;
    int rc = verbs_->PostSend(rail->qps[chosen], &wr, &bad);
    if (rc == ENOMEM) continue;
    if (rc != 0) {
      rail->broken = true;
      PauseRailLocked(rail);
      *error = TransferFail(absl::StrCat("post_send: ", strerror(rc)));
      return PostResult::kFailed;
    }
    s.rail = rail;
    s.qp = chosen;
    rail->outstanding[chosen]++;
    rail->total_outstanding++;
    rail->next_qp = (chosen + 1) % q;
    dev->outstanding++;
    ++in_flight_;
    peer->next_rail = (index + 1) % n;
    return PostResult::kPosted;
  }
  return PostResult::kNoRoom;  // every rail full, paused or busy: wait for completions
}

int RdmaTransport::Poll() {
  std::vector<Completion> done;
  int work = PollLocked(&done);
  Deliver(&done);
  return work;
}

int RdmaTransport::PollLocked(std::vector<Completion>* done) {
  absl::MutexLock lock(&mu_);
  int work = 0;
  ibv_wc wcs[kPollBatch];
  for (auto& dev : devices_) {
    while (true) {
      int n = verbs_->PollCq(dev->cq, kPollBatch, wcs);
      if (n < 0) {
        MC_LOG(ERROR) << "rdma: poll_cq on " << dev->name << " failed (" << n << ")";
        break;
      }
      for (int i = 0; i < n; ++i) CompleteLocked(wcs[i]);
      work += n;
      if (n < kPollBatch) break;
    }
  }
  const int64_t now = clock_->NowNanos();
  // Post waiting slices, per peer in FIFO order, until that peer has no rail with room.
  for (auto& [name, peer] : peers_) {
    while (!peer->waiting.empty()) {
      uint32_t slot = peer->waiting.front();
      peer->waiting.pop_front();
      absl::Status error;
      PostResult result = TryPostLocked(peer.get(), slot, now, &error);
      if (result == PostResult::kNoRoom) {
        peer->waiting.push_front(slot);
        break;
      }
      if (result == PostResult::kFailed) {
        RetryOrFailLocked(slot, error);
        continue;
      }
      ++work;
    }
  }
  done->swap(completions_);
  return work;
}

bool RdmaTransport::Idle() const {
  absl::MutexLock lock(&mu_);
  if (in_flight_ != 0) return false;
  for (const auto& [name, peer] : peers_) {
    if (!peer->waiting.empty()) return false;
  }
  return true;
}

std::vector<RdmaTransport::RailStats> RdmaTransport::Stats(const std::string& peer_segment) const {
  absl::MutexLock lock(&mu_);
  std::vector<RailStats> out;
  auto it = peers_.find(peer_segment);
  if (it == peers_.end()) return out;
  const int64_t now = clock_->NowNanos();
  for (const auto& r : it->second->rails) {
    RailStats s = r->stats;
    s.paused = r->paused_until > now;
    out.push_back(s);
  }
  return out;
}

}  // namespace mooncake
