#include "mooncake/transfer/rdma/rdma_transport.h"

#include <errno.h>
#include <string.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "nlohmann/json.hpp"

namespace mooncake {
namespace {

using Json = nlohmann::json;

// Completions drained per PollCq call.
constexpr int kPollBatch = 32;

std::string GidToString(const ibv_gid& gid) {
  std::string out;
  for (int i = 0; i < 16; i += 2) {
    if (i) out += ':';
    absl::StrAppendFormat(&out, "%02x%02x", gid.raw[i], gid.raw[i + 1]);
  }
  return out;
}

bool GidFromString(absl::string_view s, ibv_gid* gid) {
  std::vector<std::string> parts = absl::StrSplit(s, ':');
  if (parts.size() != 8) return false;
  for (int i = 0; i < 8; ++i) {
    unsigned v = 0;
    if (parts[i].size() != 4 || sscanf(parts[i].c_str(), "%4x", &v) != 1) return false;
    gid->raw[2 * i] = static_cast<uint8_t>(v >> 8);
    gid->raw[2 * i + 1] = static_cast<uint8_t>(v & 0xff);
  }
  return true;
}

// The transport does not link libibverbs (the simulator provides the Verbs), so it names completion
// statuses itself rather than calling ibv_wc_status_str.
const char* WcStatusName(ibv_wc_status status) {
  switch (status) {
    case IBV_WC_SUCCESS:
      return "success";
    case IBV_WC_LOC_LEN_ERR:
      return "local length error";
    case IBV_WC_LOC_QP_OP_ERR:
      return "local QP operation error";
    case IBV_WC_LOC_PROT_ERR:
      return "local protection error";
    case IBV_WC_WR_FLUSH_ERR:
      return "work request flushed";
    case IBV_WC_REM_INV_REQ_ERR:
      return "remote invalid request";
    case IBV_WC_REM_ACCESS_ERR:
      return "remote access error";
    case IBV_WC_REM_OP_ERR:
      return "remote operation error";
    case IBV_WC_RETRY_EXC_ERR:
      return "transport retry counter exceeded";
    case IBV_WC_RNR_RETRY_EXC_ERR:
      return "RNR retry counter exceeded";
    default:
      return "error completion";
  }
}

absl::Status TransferFail(absl::string_view why) {
  return MakeError(ErrorCode::TRANSFER_FAIL, absl::StrCat("rdma: ", why));
}

}  // namespace

std::string EndpointInfoToJson(const EndpointInfo& info) {
  return Json{{"segment", info.segment},   {"local_nic", info.local_nic},
              {"peer_nic", info.peer_nic}, {"gid", GidToString(info.gid)},
              {"lid", info.lid},           {"psn", info.psn},
              {"qp_nums", info.qp_nums},   {"instance", info.instance}}
      .dump();
}

absl::StatusOr<EndpointInfo> ParseEndpointInfo(absl::string_view text) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("endpoint info is not a JSON object");
  }
  EndpointInfo info;
  try {
    info.segment = j.at("segment").get<std::string>();
    info.local_nic = j.at("local_nic").get<std::string>();
    info.peer_nic = j.at("peer_nic").get<std::string>();
    if (!GidFromString(j.at("gid").get<std::string>(), &info.gid)) {
      return absl::InvalidArgumentError("endpoint info has a malformed gid");
    }
    info.lid = j.at("lid").get<uint16_t>();
    info.psn = j.at("psn").get<uint32_t>();
    info.qp_nums = j.at("qp_nums").get<std::vector<uint32_t>>();
    info.instance = j.value("instance", uint64_t{0});
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("malformed endpoint info: ", e.what()));
  }
  if (info.qp_nums.empty() || info.qp_nums.size() > 64) {
    return absl::InvalidArgumentError("endpoint info must list 1..64 QPs");
  }
  return info;
}

struct RdmaTransport::Device {
  std::string name;
  ibv_context* context = nullptr;
  ibv_pd* pd = nullptr;
  ibv_cq* cq = nullptr;
  ibv_gid gid{};
  uint16_t lid = 0;
  ibv_mtu mtu = IBV_MTU_4096;
  uint64_t max_mr_size = 0;
  int outstanding = 0;  // WRs posted and not yet completed, across all QPs (<= cq_entries)
};

struct RdmaTransport::Region {
  struct Chunk {
    uint64_t addr;
    uint64_t length;
    std::vector<ibv_mr*> mrs;  // one per device
  };
  uint64_t addr = 0;
  uint64_t length = 0;
  bool remote = false;
  std::string location;
  std::vector<Chunk> chunks;
};

struct RdmaTransport::Rail {
  int local_device = 0;
  int remote_device = 0;  // index in the peer descriptor's devices (selects the rkey)
  std::string remote_nic;
  std::vector<ibv_qp*> qps;
  std::vector<int> outstanding;  // per QP
  int total_outstanding = 0;
  size_t next_qp = 0;
  bool connected = false;
  bool connecting = false;
  bool broken = false;       // a QP hit an error: tear down once drained, reconnect on next use
  int64_t paused_until = 0;  // nanos; 0 = not paused. Once expired, one probe slice at a time.
  RailStats stats;
};

struct RdmaTransport::Peer {
  std::string name;
  std::shared_ptr<const SegmentDescriptor> desc;
  std::vector<std::unique_ptr<Rail>> rails;
  size_t next_rail = 0;
  std::deque<uint32_t> waiting;  // slots not yet posted, FIFO
};

struct RdmaTransport::Slice {
  std::shared_ptr<TransferBatch> batch;
  size_t request = 0;
  bool write = false;
  uint64_t local = 0;
  uint64_t remote = 0;
  uint64_t length = 0;
  Peer* peer = nullptr;
  // The peer process the slice was submitted for (SegmentDescriptor::instance; 0 = unknown). A
  // retry never goes to a later incarnation of the peer: its memory holds other objects now.
  uint64_t instance = 0;
  Rail* rail = nullptr;
  size_t qp = 0;
  int attempts = 0;
};

RdmaTransport::RdmaTransport(Verbs* verbs, Clock* clock, RdmaHandshake* handshake,
                             std::string segment_name, RdmaOptions options)
    : verbs_(verbs),
      clock_(clock),
      handshake_(handshake),
      segment_name_(std::move(segment_name)),
      options_(std::move(options)) {}

RdmaTransport::~RdmaTransport() {
  absl::MutexLock lock(&mu_);
  for (auto& [name, peer] : peers_) {
    for (auto& rail : peer->rails) TearDownLocked(rail.get());
  }
  for (auto& [key, qps] : accepted_) {
    for (ibv_qp* qp : qps) verbs_->DestroyQp(qp).IgnoreError();
  }
  for (auto& [addr, region] : regions_) {
    for (auto& chunk : region->chunks) {
      for (ibv_mr* mr : chunk.mrs) verbs_->DeregMr(mr).IgnoreError();
    }
  }
  for (auto& dev : devices_) {
    if (dev->cq) verbs_->DestroyCq(dev->cq).IgnoreError();
    if (dev->pd) verbs_->DeallocPd(dev->pd).IgnoreError();
    if (dev->context) verbs_->CloseDevice(dev->context).IgnoreError();
  }
}

absl::Status RdmaTransport::Init() {
  absl::MutexLock lock(&mu_);
  if (options_.devices.empty()) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     "rdma: no devices named (set MOONCAKE_DEVICE, e.g. erdma_0,erdma_1)");
  }
  static_assert(kPollBatch > 0, "poll batch");
  if (options_.qps_per_endpoint < 1 || options_.max_wr_per_qp < 1 || options_.slice_size == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS, "rdma: QPs, WRs and slice size must be positive");
  }
  absl::StatusOr<std::vector<std::string>> available = verbs_->ListDevices();
  if (!available.ok()) return TransferFail(available.status().message());
  for (const std::string& name : options_.devices) {
    if (std::find(available->begin(), available->end(), name) == available->end()) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("rdma: device ", name,
                                    " not found (have: ", absl::StrJoin(*available, ","), ")"));
    }
    auto dev = std::make_unique<Device>();
    dev->name = name;
    auto ctx = verbs_->OpenDevice(name);
    if (!ctx.ok()) return TransferFail(absl::StrCat(name, ": ", ctx.status().message()));
    dev->context = *ctx;
    auto attr = verbs_->QueryDevice(dev->context);
    auto port = verbs_->QueryPort(dev->context, options_.port);
    auto gid = verbs_->QueryGid(dev->context, options_.port, options_.gid_index);
    if (!attr.ok() || !port.ok() || !gid.ok()) {
      return TransferFail(absl::StrCat(name, ": cannot query device, port or gid"));
    }
    dev->max_mr_size = attr->max_mr_size;
    dev->lid = port->lid;
    dev->mtu = port->active_mtu;
    dev->gid = *gid;
    auto pd = verbs_->AllocPd(dev->context);
    if (!pd.ok()) return TransferFail(absl::StrCat(name, ": ", pd.status().message()));
    dev->pd = *pd;
    auto cq = verbs_->CreateCq(dev->context, options_.cq_entries);
    if (!cq.ok()) return TransferFail(absl::StrCat(name, ": ", cq.status().message()));
    dev->cq = *cq;
    devices_.push_back(std::move(dev));
  }
  return absl::OkStatus();
}

absl::Status RdmaTransport::RegisterMemory(uint64_t addr, uint64_t length, bool remote_accessible,
                                           const std::string& location) {
  absl::MutexLock lock(&mu_);
  if (addr == 0 || length == 0) return MakeError(ErrorCode::INVALID_PARAMS, "rdma: empty region");
  uint64_t chunk = UINT64_MAX;
  for (const auto& dev : devices_) {
    if (dev->max_mr_size > 0) chunk = std::min(chunk, dev->max_mr_size);
  }
  if (options_.max_mr_chunk > 0) chunk = std::min(chunk, options_.max_mr_chunk);
  int access = IBV_ACCESS_LOCAL_WRITE;
  if (remote_accessible) access |= IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
  auto region = std::make_unique<Region>();
  region->addr = addr;
  region->length = length;
  region->remote = remote_accessible;
  region->location = location;
  absl::Status failure;
  for (uint64_t off = 0; off < length && failure.ok(); off += chunk) {
    Region::Chunk c{addr + off, std::min(chunk, length - off), {}};
    for (auto& dev : devices_) {
      auto mr = verbs_->RegMr(dev->pd, reinterpret_cast<void*>(c.addr), c.length, access);
      if (!mr.ok()) {
        failure = TransferFail(absl::StrFormat("%s: cannot register [%#x, +%u): %s", dev->name,
                                               c.addr, c.length, mr.status().message()));
        break;
      }
      c.mrs.push_back(*mr);
    }
    region->chunks.push_back(std::move(c));
  }
  if (!failure.ok()) {
    for (auto& c : region->chunks) {
      for (ibv_mr* mr : c.mrs) verbs_->DeregMr(mr).IgnoreError();
    }
    return failure;
  }
  regions_[addr] = std::move(region);
  return absl::OkStatus();
}

absl::Status RdmaTransport::UnregisterMemory(uint64_t addr) {
  absl::MutexLock lock(&mu_);
  auto it = regions_.find(addr);
  if (it == regions_.end()) {
    return MakeError(ErrorCode::INVALID_PARAMS, absl::StrFormat("rdma: no region at %#x", addr));
  }
  for (auto& c : it->second->chunks) {
    for (ibv_mr* mr : c.mrs) verbs_->DeregMr(mr).IgnoreError();
  }
  regions_.erase(it);
  return absl::OkStatus();
}

void RdmaTransport::FillDescriptor(SegmentDescriptor* desc) const {
  absl::MutexLock lock(&mu_);
  desc->protocol = "rdma";
  desc->devices.clear();
  std::vector<std::string> names;
  for (const auto& dev : devices_) {
    desc->devices.push_back({dev->name, dev->lid, GidToString(dev->gid)});
    names.push_back(dev->name);
  }
  desc->priority_matrix["cpu:0"] = {names, {}};
  for (const auto& [addr, region] : regions_) {
    if (!region->remote) continue;
    for (const auto& c : region->chunks) {
      BufferDesc b;
      b.name = region->location;
      b.addr = c.addr;
      b.length = c.length;
      for (ibv_mr* mr : c.mrs) {
        b.rkey.push_back(mr->rkey);
        b.lkey.push_back(mr->lkey);
      }
      desc->buffers.push_back(std::move(b));
    }
  }
}

absl::StatusOr<std::vector<ibv_qp*>> RdmaTransport::CreateQps(Device* dev, int count) {
  std::vector<ibv_qp*> qps;
  for (int i = 0; i < count; ++i) {
    ibv_qp_init_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.send_cq = dev->cq;
    attr.recv_cq = dev->cq;
    attr.qp_type = IBV_QPT_RC;
    attr.cap.max_send_wr = options_.max_wr_per_qp;
    attr.cap.max_recv_wr = 1;
    attr.cap.max_send_sge = 1;
    attr.cap.max_recv_sge = 1;
    attr.sq_sig_all = 0;
    auto qp = verbs_->CreateQp(dev->pd, &attr);
    if (!qp.ok()) {
      for (ibv_qp* q : qps) verbs_->DestroyQp(q).IgnoreError();
      return qp.status();
    }
    ibv_qp_attr init;
    memset(&init, 0, sizeof(init));
    init.qp_state = IBV_QPS_INIT;
    init.pkey_index = 0;
    init.port_num = options_.port;
    init.qp_access_flags =
        IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;
    absl::Status s = verbs_->ModifyQp(
        *qp, &init, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS);
    qps.push_back(*qp);
    if (!s.ok()) {
      for (ibv_qp* q : qps) verbs_->DestroyQp(q).IgnoreError();
      return s;
    }
  }
  return qps;
}

absl::Status RdmaTransport::ConnectQps(Device* dev, const std::vector<ibv_qp*>& qps,
                                       const EndpointInfo& remote, uint32_t local_psn) {
  if (remote.qp_nums.size() != qps.size()) {
    return absl::InvalidArgumentError("peer answered with a different number of QPs");
  }
  for (size_t i = 0; i < qps.size(); ++i) {
    ibv_qp_attr rtr;
    memset(&rtr, 0, sizeof(rtr));
    rtr.qp_state = IBV_QPS_RTR;
    rtr.path_mtu = dev->mtu;
    rtr.dest_qp_num = remote.qp_nums[i];
    rtr.rq_psn = remote.psn;
    rtr.max_dest_rd_atomic = 16;
    rtr.min_rnr_timer = 12;
    rtr.ah_attr.is_global = 1;
    rtr.ah_attr.grh.dgid = remote.gid;
    rtr.ah_attr.grh.sgid_index = static_cast<uint8_t>(options_.gid_index);
    rtr.ah_attr.grh.hop_limit = 1;
    rtr.ah_attr.dlid = remote.lid;
    rtr.ah_attr.port_num = options_.port;
    absl::Status s =
        verbs_->ModifyQp(qps[i], &rtr,
                         IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
                             IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER);
    if (!s.ok()) return s;
    ibv_qp_attr rts;
    memset(&rts, 0, sizeof(rts));
    rts.qp_state = IBV_QPS_RTS;
    rts.timeout = options_.qp_timeout;
    rts.retry_cnt = options_.retry_cnt;
    rts.rnr_retry = 7;
    rts.sq_psn = local_psn;
    rts.max_rd_atomic = 16;
    s = verbs_->ModifyQp(qps[i], &rts,
                         IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                             IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC);
    if (!s.ok()) return s;
  }
  return absl::OkStatus();
}

absl::StatusOr<EndpointInfo> RdmaTransport::Accept(const EndpointInfo& remote) {
  absl::MutexLock lock(&mu_);
  Device* dev = nullptr;
  for (auto& d : devices_) {
    if (d->name == remote.peer_nic) dev = d.get();
  }
  if (dev == nullptr) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("rdma: no local NIC ", remote.peer_nic, " to accept on"));
  }
  auto qps = CreateQps(dev, static_cast<int>(remote.qp_nums.size()));
  if (!qps.ok()) return qps.status();
  EndpointInfo mine;
  mine.segment = segment_name_;
  mine.local_nic = dev->name;
  mine.peer_nic = remote.local_nic;
  mine.gid = dev->gid;
  mine.lid = dev->lid;
  mine.psn = next_psn_++;
  mine.instance = options_.instance;
  for (ibv_qp* qp : *qps) mine.qp_nums.push_back(qp->qp_num);
  absl::Status s = ConnectQps(dev, *qps, remote, mine.psn);
  if (!s.ok()) {
    for (ibv_qp* q : *qps) verbs_->DestroyQp(q).IgnoreError();
    return s;
  }
  // A reconnecting peer replaces its previous QPs on this rail.
  std::string key = absl::StrCat(remote.segment, "|", remote.local_nic, "|", dev->name);
  for (ibv_qp* old : accepted_[key]) verbs_->DestroyQp(old).IgnoreError();
  accepted_[key] = std::move(*qps);
  return mine;
}

absl::StatusOr<RdmaTransport::Peer*> RdmaTransport::GetPeerLocked(
    const std::shared_ptr<const SegmentDescriptor>& desc) {
  auto it = peers_.find(desc->name);
  if (it != peers_.end()) {
    Peer* p = it->second.get();
    if (p->desc != desc) {
      bool same_nics = p->desc->devices.size() == desc->devices.size();
      for (size_t i = 0; same_nics && i < desc->devices.size(); ++i) {
        same_nics = p->desc->devices[i].name == desc->devices[i].name;
      }
      p->desc = desc;  // newer rkeys; a slice of an earlier peer instance is never reposted
      if (same_nics) return p;
      bool busy = false;
      for (auto& r : p->rails) busy |= r->total_outstanding > 0 || r->connecting;
      if (busy) return p;  // rebuild once drained
      for (auto& r : p->rails) TearDownLocked(r.get());
      p->rails.clear();
    } else {
      return p;
    }
  }
  if (desc->devices.empty()) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("rdma: segment ", desc->name, " publishes no RDMA devices"));
  }
  Peer* p;
  if (it == peers_.end()) {
    auto fresh = std::make_unique<Peer>();
    fresh->name = desc->name;
    fresh->desc = desc;
    p = fresh.get();
    peers_[desc->name] = std::move(fresh);
  } else {
    p = it->second.get();
  }
  // Remote NICs in the peer's priority order for its memory, then the rest.
  std::vector<int> remote;
  auto pm = desc->priority_matrix.find("cpu:0");
  if (pm != desc->priority_matrix.end()) {
    for (const std::string& n : pm->second.first) {
      for (size_t j = 0; j < desc->devices.size(); ++j) {
        if (desc->devices[j].name == n) remote.push_back(static_cast<int>(j));
      }
    }
  }
  if (remote.empty()) {
    for (size_t j = 0; j < desc->devices.size(); ++j) remote.push_back(static_cast<int>(j));
  }
  // One rail per NIC on the wider side: rail k pairs local k % L with remote k % R.
  size_t rails = std::max(devices_.size(), remote.size());
  for (size_t k = 0; k < rails; ++k) {
    auto rail = std::make_unique<Rail>();
    rail->local_device = static_cast<int>(k % devices_.size());
    rail->remote_device = remote[k % remote.size()];
    rail->remote_nic = desc->devices[rail->remote_device].name;
    rail->stats.local_nic = devices_[rail->local_device]->name;
    rail->stats.remote_nic = rail->remote_nic;
    p->rails.push_back(std::move(rail));
  }
  return p;
}

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
  absl::MutexLock lock(&mu_);
  if (length == 0) {
    batch->Finish(request, absl::OkStatus());
    return;
  }
  if (LocalMrLocked(local_addr, length, 0, nullptr) == nullptr) {
    batch->Finish(request, MakeError(ErrorCode::INVALID_PARAMS,
                                     absl::StrFormat("rdma: local range [%#x, +%u) is not "
                                                     "registered",
                                                     local_addr, length)));
    return;
  }
  // The remote range may span several adjacent MR chunks; every byte must be covered.
  for (uint64_t at = remote_addr; at < remote_addr + length;) {
    const BufferDesc* b = peer->FindBuffer(at, 1);
    if (b == nullptr || remote_addr + length < remote_addr) {
      batch->Finish(request, MakeError(ErrorCode::INVALID_PARAMS,
                                       absl::StrFormat("rdma: remote range [%#x, +%u) is outside "
                                                       "the buffers of segment %s",
                                                       remote_addr, length, peer->name)));
      return;
    }
    at = b->addr + b->length;
  }
  absl::StatusOr<Peer*> p = GetPeerLocked(peer);
  if (!p.ok()) {
    batch->Finish(request, p.status());
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

void RdmaTransport::TearDownLocked(Rail* rail) {
  for (ibv_qp* qp : rail->qps) verbs_->DestroyQp(qp).IgnoreError();
  rail->qps.clear();
  rail->outstanding.clear();
  rail->total_outstanding = 0;
  rail->connected = false;
  rail->broken = false;
}

void RdmaTransport::PauseRailLocked(Rail* rail) {
  rail->paused_until = clock_->NowNanos() + absl::ToInt64Nanoseconds(options_.rail_pause);
  rail->stats.failures++;
}

absl::Status RdmaTransport::ConnectLocked(Rail* rail) {
  Device* dev = devices_[rail->local_device].get();
  auto qps = CreateQps(dev, options_.qps_per_endpoint);
  if (!qps.ok()) return qps.status();
  EndpointInfo mine;
  mine.segment = segment_name_;
  mine.local_nic = dev->name;
  mine.peer_nic = rail->remote_nic;
  mine.gid = dev->gid;
  mine.lid = dev->lid;
  mine.psn = next_psn_++;
  mine.instance = options_.instance;
  for (ibv_qp* qp : *qps) mine.qp_nums.push_back(qp->qp_num);
  Peer* peer = nullptr;
  for (auto& [name, p] : peers_) {
    for (auto& r : p->rails) {
      if (r.get() == rail) peer = p.get();
    }
  }
  const std::string peer_name = peer ? peer->name : "";
  rail->connecting = true;
  // The handshake may block on the network; never hold mu_ across it (the peer may be
  // handshaking with us at the same time).
  mu_.Unlock();
  absl::StatusOr<EndpointInfo> theirs = handshake_->Exchange(peer_name, mine);
  mu_.Lock();
  rail->connecting = false;
  absl::Status s = theirs.ok() ? absl::OkStatus() : theirs.status();
  if (s.ok() && peer != nullptr && theirs->instance != 0 && peer->desc->instance != 0 &&
      theirs->instance != peer->desc->instance) {
    // The peer restarted since we read its descriptor: its keys and memory are not the ones we
    // hold. Slices for the old process must fail, never reach the new one.
    s = MakeError(
        ErrorCode::INVALID_REPLICA,
        absl::StrCat("rdma: segment ", peer_name, " restarted since its descriptor was read"));
  }
  if (s.ok()) s = ConnectQps(dev, *qps, *theirs, mine.psn);
  if (!s.ok()) {
    for (ibv_qp* q : *qps) verbs_->DestroyQp(q).IgnoreError();
    return s;
  }
  rail->qps = std::move(*qps);
  rail->outstanding.assign(rail->qps.size(), 0);
  rail->total_outstanding = 0;
  rail->connected = true;
  return absl::OkStatus();
}

void RdmaTransport::FinishLocked(uint32_t slot, const absl::Status& status) {
  Slice& s = slots_[slot];
  std::shared_ptr<TransferBatch> batch = std::move(s.batch);
  size_t request = s.request;
  s = Slice();
  free_slots_.push_back(slot);
  batch->SliceDone(request, status);
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
    case IBV_WC_LOC_QP_OP_ERR:
      rail->broken = true;
      FinishLocked(slot, MakeError(ErrorCode::INVALID_PARAMS,
                                   absl::StrFormat("rdma: local buffer [%#x, +%u) rejected (%s)",
                                                   s.local, s.length, WcStatusName(wc.status))));
      return;
    default:
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
      absl::Status c = ConnectLocked(rail);
      if (ToErrorCode(c) == ErrorCode::INVALID_REPLICA) {
        FinishLocked(slot, c);  // the rail is fine; this slice's peer process is gone
        return PostResult::kFinished;
      }
      if (!c.ok()) {
        MC_LOG(WARNING) << "rdma: cannot connect " << dev->name << " -> " << peer->name << ":"
                        << rail->remote_nic << ": " << c;
        PauseRailLocked(rail);
        *error = TransferFail(c.message());
        return PostResult::kFailed;
      }
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
    Slice& s = slots_[slot];  // re-read: ConnectLocked may have let slots_ grow
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
