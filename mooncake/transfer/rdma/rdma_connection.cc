// RdmaTransport's control path: devices, memory registration, the descriptor it publishes, QP
// setup and the rail handshakes (ours and the ones peers start), and forgetting peers.
#include <errno.h>
#include <string.h>

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/transfer/rdma/rdma_internal.h"
#include "mooncake/transfer/rdma/rdma_transport.h"
#include "nlohmann/json.hpp"

namespace mooncake {

using rdma_internal::GidFromString;
using rdma_internal::GidToString;
using rdma_internal::MtuFromBytes;
using rdma_internal::TransferFail;

namespace rdma_internal {

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

ibv_mtu MtuFromBytes(int bytes) {
  switch (bytes) {
    case 256:
      return IBV_MTU_256;
    case 512:
      return IBV_MTU_512;
    case 1024:
      return IBV_MTU_1024;
    case 2048:
      return IBV_MTU_2048;
    case 4096:
      return IBV_MTU_4096;
    default:
      return static_cast<ibv_mtu>(0);
  }
}

}  // namespace rdma_internal

using Json = nlohmann::json;

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

RdmaTransport::RdmaTransport(Verbs* verbs, Clock* clock, RdmaHandshake* handshake,
                             std::string segment_name, RdmaOptions options, Executor* executor)
    : verbs_(verbs),
      clock_(clock),
      handshake_(handshake),
      segment_name_(std::move(segment_name)),
      options_(std::move(options)),
      executor_(executor),
      instance_(options_.instance) {}

RdmaTransport::~RdmaTransport() {
  absl::MutexLock lock(&mu_);
  *alive_ = false;
  for (auto& [name, peer] : peers_) {
    for (auto& rail : peer->rails) TearDownLocked(rail.get());
  }
  for (auto& [key, a] : accepted_) {
    for (ibv_qp* qp : a.qps) verbs_->DestroyQp(qp).IgnoreError();
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
  if (options_.qps_per_endpoint < 1 || options_.max_wr_per_qp < 1 || options_.slice_size == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS, "rdma: QPs, WRs and slice size must be positive");
  }
  // A work request's length is 32 bits; real NICs cap a message at 2 GiB (max_msg_sz).
  constexpr uint64_t kMaxSlice = uint64_t{1} << 31;
  if (options_.path_mtu != 0 && MtuFromBytes(options_.path_mtu) == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("rdma: path MTU ", options_.path_mtu,
                                  " is not one of 256, 512, 1024, 2048, 4096 (MC_MTU)"));
  }
  if (options_.slice_size > kMaxSlice) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("rdma: slice_size ", options_.slice_size,
                                  " exceeds the largest RDMA message (", kMaxSlice, " bytes)"));
  }
  absl::StatusOr<std::vector<std::string>> available = verbs_->ListDevices();
  if (!available.ok() || available->empty()) {
    // Say so plainly, and never fall back to another transport behind the user's back.
    return TransferFail(
        absl::StrCat("no RDMA device on this host (wanted ", absl::StrJoin(options_.devices, ","),
                     "): ", available.ok() ? "none listed" : available.status().message(),
                     "; use protocol tcp, or load the NIC's driver (or rdma_rxe)"));
  }
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
    if (!attr.ok()) return TransferFail(absl::StrCat(name, ": ", attr.status().message()));
    auto port = verbs_->QueryPort(dev->context, options_.port);
    if (!port.ok()) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("rdma: ", name, " has no port ", int{options_.port},
                                    " (MC_IB_PORT): ", port.status().message()));
    }
    auto gid = verbs_->QueryGid(dev->context, options_.port, options_.gid_index);
    ibv_gid zero{};
    if (!gid.ok() || memcmp(gid->raw, zero.raw, sizeof(zero.raw)) == 0) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("rdma: ", name, " port ", int{options_.port}, " has no GID at ",
                                    "index ", options_.gid_index, " (MC_GID_INDEX)",
                                    gid.ok() ? "" : absl::StrCat(": ", gid.status().message())));
    }
    if (port->max_msg_sz != 0 && options_.slice_size > port->max_msg_sz) {
      return MakeError(ErrorCode::INVALID_PARAMS,
                       absl::StrCat("rdma: slice_size ", options_.slice_size, " exceeds ", name,
                                    "'s max_msg_sz ", port->max_msg_sz));
    }
    dev->max_mr_size = attr->max_mr_size;
    dev->lid = port->lid;
    dev->mtu = port->active_mtu;
    if (options_.path_mtu != 0) dev->mtu = std::min(dev->mtu, MtuFromBytes(options_.path_mtu));
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
  mine.instance = instance_;
  for (ibv_qp* qp : *qps) mine.qp_nums.push_back(qp->qp_num);
  absl::Status s = ConnectQps(dev, *qps, remote, mine.psn);
  if (!s.ok()) {
    for (ibv_qp* q : *qps) verbs_->DestroyQp(q).IgnoreError();
    return s;
  }
  // A later process under the same name replaces everything the earlier one connected; a
  // reconnecting one replaces its previous QPs on this rail.
  for (auto it = accepted_.begin(); it != accepted_.end();) {
    if (it->second.segment == remote.segment && it->second.instance != remote.instance) {
      for (ibv_qp* old : it->second.qps) verbs_->DestroyQp(old).IgnoreError();
      it = accepted_.erase(it);
    } else {
      ++it;
    }
  }
  const std::string key = absl::StrCat(remote.segment, "|", remote.local_nic, "|", dev->name);
  Accepted& a = accepted_[key];
  for (ibv_qp* old : a.qps) verbs_->DestroyQp(old).IgnoreError();
  a.segment = remote.segment;
  a.instance = remote.instance;
  a.qps = std::move(*qps);
  return mine;
}

std::vector<std::pair<std::string, uint64_t>> RdmaTransport::AcceptedPeers() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<std::string, uint64_t>> out;
  for (const auto& [key, a] : accepted_) {
    if (out.empty() || out.back() != std::make_pair(a.segment, a.instance)) {
      out.emplace_back(a.segment, a.instance);
    }
  }
  return out;
}

void RdmaTransport::Fence(uint64_t instance) {
  absl::MutexLock lock(&mu_);
  instance_ = instance;
  for (auto& [key, a] : accepted_) {
    for (ibv_qp* qp : a.qps) verbs_->DestroyQp(qp).IgnoreError();
  }
  accepted_.clear();
}

void RdmaTransport::DropAccepted(const std::string& peer_segment, uint64_t instance) {
  absl::MutexLock lock(&mu_);
  for (auto it = accepted_.begin(); it != accepted_.end();) {
    if (it->second.segment == peer_segment && (instance == 0 || it->second.instance == instance)) {
      for (ibv_qp* qp : it->second.qps) verbs_->DestroyQp(qp).IgnoreError();
      it = accepted_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t RdmaTransport::num_accepted() const {
  absl::MutexLock lock(&mu_);
  size_t n = 0;
  std::string last;
  for (const auto& [key, a] : accepted_) {
    if (a.segment != last) ++n;
    last = a.segment;
  }
  return n;
}

size_t RdmaTransport::num_peers() const {
  absl::MutexLock lock(&mu_);
  return peers_.size();
}

bool RdmaTransport::ForgetPeer(const std::string& peer_segment) {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(peer_segment);
  if (it == peers_.end()) return true;
  Peer* p = it->second.get();
  if (!p->waiting.empty()) return false;
  for (auto& r : p->rails) {
    if (r->total_outstanding > 0 || r->connecting) return false;
  }
  for (auto& r : p->rails) TearDownLocked(r.get());
  peers_.erase(it);
  return true;
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

absl::Status RdmaTransport::StartConnectLocked(Peer* peer, size_t rail_index) {
  Rail* rail = peer->rails[rail_index].get();
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
  mine.instance = instance_;
  for (ibv_qp* qp : *qps) mine.qp_nums.push_back(qp->qp_num);
  rail->connecting = true;
  const uint64_t seq = ++rail->connect_seq;
  const std::string peer_name = peer->name;
  if (executor_ != nullptr) {
    // The handshake may block on the network: never on the poller, never under mu_.
    executor_->Schedule([this, alive = std::weak_ptr<bool>(alive_), peer_name, rail_index, seq,
                         qps = std::move(*qps), mine] {
      if (alive.expired()) return;
      absl::StatusOr<EndpointInfo> theirs = handshake_->Exchange(peer_name, mine);
      std::vector<Completion> done;
      {
        absl::MutexLock lock(&mu_);
        absl::Status s = FinishConnectLocked(peer_name, rail_index, seq, qps, mine.psn, theirs);
        auto it = peers_.find(peer_name);
        if (!s.ok() && it != peers_.end()) {
          if (ToErrorCode(s) == ErrorCode::INVALID_REPLICA && theirs.ok()) {
            FailOtherIncarnationLocked(it->second.get(), theirs->instance, s);
          } else {
            bool any_connected = false;
            for (auto& r : it->second->rails) any_connected |= r->connected;
            if (!any_connected) ChargeWaitingLocked(it->second.get(), s);
          }
        }
        done.swap(completions_);
      }
      Deliver(&done);
    });
    return absl::OkStatus();
  }
  // No executor: handshake inline. The handshake may block on the network; never hold mu_ across
  // it (the peer may be handshaking with us at the same time).
  mu_.Unlock();
  absl::StatusOr<EndpointInfo> theirs = handshake_->Exchange(peer_name, mine);
  mu_.Lock();
  return FinishConnectLocked(peer_name, rail_index, seq, std::move(*qps), mine.psn, theirs);
}

absl::Status RdmaTransport::FinishConnectLocked(const std::string& peer_name, size_t rail_index,
                                                uint64_t seq, std::vector<ibv_qp*> qps,
                                                uint32_t psn,
                                                const absl::StatusOr<EndpointInfo>& theirs) {
  auto destroy = [&] {
    for (ibv_qp* q : qps) verbs_->DestroyQp(q).IgnoreError();
  };
  auto it = peers_.find(peer_name);
  if (it == peers_.end() || rail_index >= it->second->rails.size() ||
      it->second->rails[rail_index]->connect_seq != seq) {
    destroy();  // the peer was forgotten or rebuilt meanwhile
    return absl::CancelledError("rail gone");
  }
  Peer* peer = it->second.get();
  Rail* rail = peer->rails[rail_index].get();
  rail->connecting = false;
  absl::Status s = theirs.ok() ? absl::OkStatus() : theirs.status();
  if (s.ok() && theirs->instance != 0 && peer->desc->instance != 0 &&
      theirs->instance != peer->desc->instance) {
    // The peer restarted since we read its descriptor: its keys and memory are not the ones we
    // hold. Slices for the old process must fail, never reach the new one.
    s = MakeError(
        ErrorCode::INVALID_REPLICA,
        absl::StrCat("rdma: segment ", peer_name, " restarted since its descriptor was read"));
  }
  if (s.ok()) s = ConnectQps(devices_[rail->local_device].get(), qps, *theirs, psn);
  if (!s.ok()) {
    destroy();
    if (ToErrorCode(s) != ErrorCode::INVALID_REPLICA) {
      MC_LOG(WARNING) << "rdma: cannot connect " << devices_[rail->local_device]->name << " -> "
                      << peer_name << ":" << rail->remote_nic << ": " << s;
      PauseRailLocked(rail);  // the rail is fine for INVALID_REPLICA: the peer process is gone
      s = TransferFail(s.message());
    }
    return s;
  }
  rail->qps = std::move(qps);
  rail->outstanding.assign(rail->qps.size(), 0);
  rail->total_outstanding = 0;
  rail->connected = true;
  return absl::OkStatus();
}

}  // namespace mooncake
