// SimVerbs control path: devices, PDs, MRs, CQs, QP creation and the QP state machine, posting and
// polling. The RC data path is in sim_qp.cc.
#include "sim/verbs/sim_verbs.h"

#include <endian.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "mooncake/common/logging.h"
#include "sim/verbs/sim_verbs_internal.h"

namespace sim {

using internal::CqEntry;
using internal::SimContext;
using internal::SimCq;
using internal::SimMr;
using internal::SimPd;
using internal::SimQp;

namespace {

// Errno builds the status a failing libibverbs call would give: the errno text plus what was wrong.
absl::Status Errno(int err, absl::string_view call, absl::string_view detail) {
  std::string message = absl::StrCat(call, ": ", std::strerror(err));
  if (!detail.empty()) absl::StrAppend(&message, " (", detail, ")");
  switch (err) {
    case EINVAL:
      return absl::InvalidArgumentError(message);
    case ENOMEM:
      return absl::ResourceExhaustedError(message);
    case EBUSY:
      return absl::FailedPreconditionError(message);
    case ENODEV:
      return absl::NotFoundError(message);
    default:
      return absl::UnavailableError(message);
  }
}

const char* StateName(int state) {
  switch (state) {
    case IBV_QPS_RESET:
      return "RESET";
    case IBV_QPS_INIT:
      return "INIT";
    case IBV_QPS_RTR:
      return "RTR";
    case IBV_QPS_RTS:
      return "RTS";
    case IBV_QPS_SQD:
      return "SQD";
    case IBV_QPS_SQE:
      return "SQE";
    case IBV_QPS_ERR:
      return "ERR";
    default:
      return "?";
  }
}

std::string MaskNames(int mask) {
  static const struct {
    int bit;
    const char* name;
  } kNames[] = {
      {IBV_QP_STATE, "STATE"},
      {IBV_QP_CUR_STATE, "CUR_STATE"},
      {IBV_QP_EN_SQD_ASYNC_NOTIFY, "EN_SQD_ASYNC_NOTIFY"},
      {IBV_QP_ACCESS_FLAGS, "ACCESS_FLAGS"},
      {IBV_QP_PKEY_INDEX, "PKEY_INDEX"},
      {IBV_QP_PORT, "PORT"},
      {IBV_QP_QKEY, "QKEY"},
      {IBV_QP_AV, "AV"},
      {IBV_QP_PATH_MTU, "PATH_MTU"},
      {IBV_QP_TIMEOUT, "TIMEOUT"},
      {IBV_QP_RETRY_CNT, "RETRY_CNT"},
      {IBV_QP_RNR_RETRY, "RNR_RETRY"},
      {IBV_QP_RQ_PSN, "RQ_PSN"},
      {IBV_QP_MAX_QP_RD_ATOMIC, "MAX_QP_RD_ATOMIC"},
      {IBV_QP_ALT_PATH, "ALT_PATH"},
      {IBV_QP_MIN_RNR_TIMER, "MIN_RNR_TIMER"},
      {IBV_QP_SQ_PSN, "SQ_PSN"},
      {IBV_QP_MAX_DEST_RD_ATOMIC, "MAX_DEST_RD_ATOMIC"},
      {IBV_QP_PATH_MIG_STATE, "PATH_MIG_STATE"},
      {IBV_QP_CAP, "CAP"},
      {IBV_QP_DEST_QPN, "DEST_QPN"},
      {IBV_QP_RATE_LIMIT, "RATE_LIMIT"},
  };
  std::string out;
  int rest = mask;
  for (const auto& n : kNames) {
    if (mask & n.bit) {
      absl::StrAppend(&out, out.empty() ? "" : "|", "IBV_QP_", n.name);
      rest &= ~n.bit;
    }
  }
  if (rest != 0) absl::StrAppend(&out, out.empty() ? "" : "|", "0x", absl::Hex(rest));
  return out;
}

// TransitionMasks gives the required and optional attributes of an RC QP transition, as the
// kernel's ib_modify_qp_is_ok table has them; false if the transition is illegal (or SQD/SQE,
// which are not simulated).
bool TransitionMasks(int cur, int next, int* required, int* optional) {
  *required = 0;
  *optional = 0;
  const bool cur_valid = cur >= IBV_QPS_RESET && cur <= IBV_QPS_ERR;
  if (!cur_valid) return false;
  if (next == IBV_QPS_RESET || next == IBV_QPS_ERR) return true;
  if (cur == IBV_QPS_RESET && next == IBV_QPS_INIT) {
    *required = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
    return true;
  }
  if (cur == IBV_QPS_INIT && next == IBV_QPS_INIT) {
    *optional = IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS;
    return true;
  }
  if (cur == IBV_QPS_INIT && next == IBV_QPS_RTR) {
    *required = IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER;
    *optional = IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_PKEY_INDEX;
    return true;
  }
  if (cur == IBV_QPS_RTR && next == IBV_QPS_RTS) {
    *required = IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                IBV_QP_TIMEOUT;
    *optional = IBV_QP_CUR_STATE | IBV_QP_ALT_PATH | IBV_QP_ACCESS_FLAGS | IBV_QP_MIN_RNR_TIMER |
                IBV_QP_PATH_MIG_STATE | IBV_QP_RATE_LIMIT;
    return true;
  }
  if (cur == IBV_QPS_RTS && next == IBV_QPS_RTS) {
    *optional = IBV_QP_CUR_STATE | IBV_QP_ACCESS_FLAGS | IBV_QP_ALT_PATH | IBV_QP_PATH_MIG_STATE |
                IBV_QP_MIN_RNR_TIMER | IBV_QP_RATE_LIMIT;
    return true;
  }
  return false;
}

ibv_mtu MtuEnum(uint32_t bytes) {
  if (bytes >= 4096) return IBV_MTU_4096;
  if (bytes >= 2048) return IBV_MTU_2048;
  if (bytes >= 1024) return IBV_MTU_1024;
  if (bytes >= 512) return IBV_MTU_512;
  return IBV_MTU_256;
}

// GID table entries a port reports (rxe reports 1024); entries past kGidsPerNic are empty.
constexpr int kGidTableLength = 16;
constexpr unsigned kQpAccessFlags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
                                    IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_ATOMIC;

}  // namespace

// --- SimVerbsFabric ---

SimVerbsFabric::SimVerbsFabric(Simulator* sim, Network* network, SimVerbsOptions options)
    : sim_(sim), network_(network), options_(options) {}

SimVerbsFabric::~SimVerbsFabric() = default;

SimVerbs* SimVerbsFabric::ForHost(HostId host) {
  MC_CHECK(host >= 0 && host < network_->num_hosts()) << "no host " << host;
  std::unique_ptr<SimVerbs>& v = verbs_[host];
  if (v == nullptr) v = std::make_unique<SimVerbs>(this, host);
  return v.get();
}

// --- SimVerbs: plumbing ---

SimVerbs::SimVerbs(SimVerbsFabric* fabric, HostId host) : fabric_(fabric), host_(host) {
  network()->AddHostListener([this](HostId h, HostEvent event) {
    if (h == host_ && event == HostEvent::kCrashed) OnHostCrashed();
  });
}

SimVerbs::~SimVerbs() = default;

Simulator* SimVerbs::sim() const { return fabric_->sim(); }
Network* SimVerbs::network() const { return fabric_->network(); }
uint64_t SimVerbs::incarnation() const { return network()->host_incarnation(host_); }
const DeviceLimits& SimVerbs::limits(NicId nic) const { return network()->nic_spec(nic).device; }

absl::Status SimVerbs::CheckAlive(const char* call) const {
  if (!network()->host_alive(host_)) {
    return Errno(EIO, call, absl::StrCat("host ", network()->host_name(host_), " is down"));
  }
  return absl::OkStatus();
}

namespace {
// CheckObject validates an object pointer handed back by the caller.
template <typename T>
absl::Status CheckObject(const T* o, uint32_t magic, const SimVerbs* self, uint64_t incarnation,
                         const char* call, const char* what) {
  if (o == nullptr) return Errno(EINVAL, call, absl::StrCat("null ", what));
  if (o->magic == internal::kDestroyedMagic) {
    return Errno(EINVAL, call, absl::StrCat(what, " was already destroyed"));
  }
  if (o->magic != magic) return Errno(EINVAL, call, absl::StrCat("not a SimVerbs ", what));
  if (o->owner != self) return Errno(EINVAL, call, absl::StrCat(what, " belongs to another host"));
  if (o->incarnation != incarnation) {
    return Errno(EIO, call, absl::StrCat(what, " is from before its host crashed"));
  }
  return absl::OkStatus();
}
}  // namespace

absl::Status SimVerbs::CheckContext(ibv_context* context, SimContext** out) const {
  SimContext* c = static_cast<SimContext*>(context);
  absl::Status s =
      CheckObject(c, internal::kContextMagic, this, incarnation(), "ibv_context", "context");
  if (s.ok()) *out = c;
  return s;
}

absl::Status SimVerbs::CheckPd(ibv_pd* pd, SimPd** out) const {
  SimPd* p = static_cast<SimPd*>(pd);
  absl::Status s = CheckObject(p, internal::kPdMagic, this, incarnation(), "ibv_pd", "PD");
  if (s.ok()) *out = p;
  return s;
}

absl::Status SimVerbs::CheckCq(ibv_cq* cq, SimCq** out) const {
  SimCq* c = static_cast<SimCq*>(cq);
  absl::Status s = CheckObject(c, internal::kCqMagic, this, incarnation(), "ibv_cq", "CQ");
  if (s.ok()) *out = c;
  return s;
}

absl::Status SimVerbs::CheckQp(ibv_qp* qp, SimQp** out) const {
  SimQp* q = static_cast<SimQp*>(qp);
  absl::Status s = CheckObject(q, internal::kQpMagic, this, incarnation(), "ibv_qp", "QP");
  if (s.ok()) *out = q;
  return s;
}

SimMr* SimVerbs::FindMrByLkey(uint32_t lkey) const {
  auto it = mr_by_lkey_.find(lkey);
  return it == mr_by_lkey_.end() ? nullptr : it->second;
}

SimMr* SimVerbs::FindMrByRkey(uint32_t rkey) const {
  auto it = mr_by_rkey_.find(rkey);
  return it == mr_by_rkey_.end() ? nullptr : it->second;
}

SimQp* SimVerbs::FindQp(uint32_t qp_num) const {
  auto it = qp_by_num_.find(qp_num);
  return it == qp_by_num_.end() ? nullptr : it->second;
}

NicId SimVerbs::NicOf(ibv_context* context) const {
  SimContext* c = nullptr;
  return CheckContext(context, &c).ok() ? c->nic : kNoId;
}

int SimVerbs::CqDepth(ibv_cq* cq) const {
  SimCq* c = nullptr;
  return CheckCq(cq, &c).ok() ? static_cast<int>(c->entries.size()) : 0;
}

void SimVerbs::OnHostCrashed() {
  // The process is gone: its QPs stop answering, its keys stop resolving. The objects stay
  // allocated (as tombstones of an older incarnation) so stale pointers fail cleanly.
  for (auto& [id, qp] : qps_) qp->Kill();
  qp_by_num_.clear();
  mr_by_lkey_.clear();
  mr_by_rkey_.clear();
  live_mrs_ = 0;
  if (fabric_->options().reuse_keys_after_restart) next_key_index_ = 1;
  for (auto& [id, cq] : cqs_) {
    cq->entries.clear();
    cq->callback = nullptr;
  }
}

// --- Devices ---

absl::StatusOr<std::vector<std::string>> SimVerbs::ListDevices() {
  absl::Status alive = CheckAlive("ibv_get_device_list");
  if (!alive.ok()) return alive;
  std::vector<std::string> names;
  for (NicId nic : network()->host_nics(host_)) names.push_back(network()->nic_spec(nic).name);
  return names;
}

absl::StatusOr<ibv_context*> SimVerbs::OpenDevice(const std::string& name) {
  absl::Status alive = CheckAlive("ibv_open_device");
  if (!alive.ok()) return alive;
  const NicId nic = network()->FindNic(host_, name);
  if (nic == kNoId) {
    return Errno(ENODEV, "ibv_open_device",
                 absl::StrCat("no device ", name, " on host ", network()->host_name(host_)));
  }
  auto c = std::make_unique<SimContext>();
  c->id = next_object_id_++;
  c->incarnation = incarnation();
  c->owner = this;
  c->nic = nic;
  ibv_device& dev = c->device_storage;
  dev.node_type = IBV_NODE_CA;
  dev.transport_type = IBV_TRANSPORT_IB;
  std::snprintf(dev.name, sizeof(dev.name), "%s", name.c_str());
  std::snprintf(dev.dev_name, sizeof(dev.dev_name), "uverbs%d", nic);
  std::snprintf(dev.dev_path, sizeof(dev.dev_path), "/sys/class/infiniband_verbs/uverbs%d", nic);
  std::snprintf(dev.ibdev_path, sizeof(dev.ibdev_path), "/sys/class/infiniband/%s", name.c_str());
  c->device = &dev;
  c->cmd_fd = -1;
  c->async_fd = -1;
  c->num_comp_vectors = 1;
  ibv_context* out = c.get();
  contexts_[c->id] = std::move(c);
  return out;
}

absl::Status SimVerbs::CloseDevice(ibv_context* context) {
  SimContext* c = nullptr;
  absl::Status s = CheckContext(context, &c);
  if (!s.ok()) return s;
  if (c->children > 0) {
    return Errno(EBUSY, "ibv_close_device",
                 absl::StrCat(c->children, " PDs/CQs of this context are still allocated"));
  }
  c->magic = internal::kDestroyedMagic;
  return absl::OkStatus();
}

absl::StatusOr<ibv_device_attr> SimVerbs::QueryDevice(ibv_context* context) {
  SimContext* c = nullptr;
  absl::Status s = CheckContext(context, &c);
  if (!s.ok()) return s;
  const DeviceLimits& l = limits(c->nic);
  ibv_device_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  std::snprintf(attr.fw_ver, sizeof(attr.fw_ver), "sim-1.0");
  attr.node_guid = htobe64(0x5100000000000000ull | static_cast<uint64_t>(c->nic + 1));
  attr.sys_image_guid = htobe64(0x5100000100000000ull | static_cast<uint64_t>(host_ + 1));
  attr.max_mr_size = l.max_mr_size;
  attr.page_size_cap = 0xfffffffffffff000ull;
  attr.vendor_id = l.vendor_id;
  attr.vendor_part_id = l.vendor_part_id;
  attr.max_qp = l.max_qp;
  attr.max_qp_wr = l.max_qp_wr;
  attr.device_cap_flags = IBV_DEVICE_RC_RNR_NAK_GEN;
  attr.max_sge = l.max_sge;
  attr.max_sge_rd = l.max_sge;
  attr.max_cq = l.max_cq;
  attr.max_cqe = l.max_cqe;
  attr.max_mr = l.max_mr;
  attr.max_pd = l.max_pd;
  attr.max_qp_rd_atom = l.max_qp_rd_atom;
  attr.max_res_rd_atom = l.max_qp_rd_atom * 1024;
  attr.max_qp_init_rd_atom = l.max_qp_init_rd_atom;
  attr.atomic_cap = IBV_ATOMIC_NONE;
  attr.max_pkeys = 1;
  attr.local_ca_ack_delay = 16;
  attr.phys_port_cnt = 1;
  return attr;
}

absl::StatusOr<ibv_port_attr> SimVerbs::QueryPort(ibv_context* context, uint8_t port) {
  SimContext* c = nullptr;
  absl::Status s = CheckContext(context, &c);
  if (!s.ok()) return s;
  if (port != 1) return Errno(EINVAL, "ibv_query_port", absl::StrCat("no port ", int{port}));
  const NicSpec& spec = network()->nic_spec(c->nic);
  const bool up = network()->nic_usable(c->nic);
  ibv_port_attr attr;
  std::memset(&attr, 0, sizeof(attr));
  attr.state = up ? IBV_PORT_ACTIVE : IBV_PORT_DOWN;
  attr.max_mtu = MtuEnum(spec.mtu);
  attr.active_mtu = MtuEnum(spec.mtu);
  attr.gid_tbl_len = kGidTableLength;
  attr.max_msg_sz = spec.device.max_msg_sz;
  attr.pkey_tbl_len = 1;
  attr.max_vl_num = 1;
  attr.active_width = 2;  // 4x
  const double lane_gbps = spec.rate_bps / 4 / 1e9;
  attr.active_speed = lane_gbps >= 100 ? 128 : lane_gbps >= 50 ? 64 : lane_gbps >= 25 ? 32 : 16;
  attr.phys_state = up ? 5 : 3;  // LinkUp : Disabled
  attr.link_layer = IBV_LINK_LAYER_ETHERNET;
  return attr;
}

absl::StatusOr<ibv_gid> SimVerbs::QueryGid(ibv_context* context, uint8_t port, int index) {
  SimContext* c = nullptr;
  absl::Status s = CheckContext(context, &c);
  if (!s.ok()) return s;
  if (port != 1) return Errno(EINVAL, "ibv_query_gid", absl::StrCat("no port ", int{port}));
  if (index < 0 || index >= kGidTableLength) {
    return Errno(EINVAL, "ibv_query_gid",
                 absl::StrCat("GID index ", index, " out of range (the table has ", kGidTableLength,
                              " entries)"));
  }
  ibv_gid gid;
  std::memset(gid.raw, 0, sizeof(gid.raw));  // an unused entry reads as zeros, as on rxe
  if (index < kGidsPerNic) {
    const Gid& g = network()->nic_gid(c->nic, index);
    std::memcpy(gid.raw, g.data(), sizeof(gid.raw));
  }
  return gid;
}

// --- PDs and MRs ---

absl::StatusOr<ibv_pd*> SimVerbs::AllocPd(ibv_context* context) {
  SimContext* c = nullptr;
  absl::Status s = CheckContext(context, &c);
  if (!s.ok()) return s;
  auto p = std::make_unique<SimPd>();
  p->id = next_object_id_++;
  p->incarnation = incarnation();
  p->owner = this;
  p->ctx = c;
  p->context = c;
  p->handle = static_cast<uint32_t>(p->id);
  ++c->children;
  ibv_pd* out = p.get();
  pds_[p->id] = std::move(p);
  return out;
}

absl::Status SimVerbs::DeallocPd(ibv_pd* pd) {
  SimPd* p = nullptr;
  absl::Status s = CheckPd(pd, &p);
  if (!s.ok()) return s;
  if (p->children > 0) {
    return Errno(EBUSY, "ibv_dealloc_pd",
                 absl::StrCat(p->children, " MRs/QPs of this PD are still allocated"));
  }
  --p->ctx->children;
  p->magic = internal::kDestroyedMagic;
  return absl::OkStatus();
}

absl::StatusOr<ibv_mr*> SimVerbs::RegMr(ibv_pd* pd, void* addr, size_t length, int access) {
  SimPd* p = nullptr;
  absl::Status s = CheckPd(pd, &p);
  if (!s.ok()) return s;
  const DeviceLimits& l = limits(p->ctx->nic);
  if (addr == nullptr || length == 0) {
    return Errno(EINVAL, "ibv_reg_mr", "null address or zero length");
  }
  if (length > l.max_mr_size) {
    return Errno(EINVAL, "ibv_reg_mr",
                 absl::StrCat("length ", length, " exceeds max_mr_size ", l.max_mr_size, " of ",
                              network()->nic_spec(p->ctx->nic).name));
  }
  if ((access & (IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_ATOMIC)) &&
      !(access & IBV_ACCESS_LOCAL_WRITE)) {
    return Errno(EINVAL, "ibv_reg_mr", "REMOTE_WRITE/REMOTE_ATOMIC need LOCAL_WRITE");
  }
  if (live_mrs_ >= l.max_mr) {
    return Errno(ENOMEM, "ibv_reg_mr", absl::StrCat("max_mr ", l.max_mr, " reached"));
  }
  const uint32_t index = next_key_index_++;
  MC_CHECK(index < (1u << 19)) << "simulated key space exhausted";
  // Keys: <index, lkey/rkey bit> in the high 20 bits, the host in the low 12 bits: unique across
  // the whole simulated cluster, never reused (unless reuse_keys_after_restart).
  const uint32_t host_tag = static_cast<uint32_t>(host_ + 1) & 0xfff;
  auto m = std::make_unique<SimMr>();
  m->id = next_object_id_++;
  m->incarnation = incarnation();
  m->owner = this;
  m->spd = p;
  m->access = access;
  m->context = p->context;
  m->pd = p;
  m->addr = addr;
  m->length = length;
  m->handle = static_cast<uint32_t>(m->id);
  m->lkey = ((index * 2) << 12) | host_tag;
  m->rkey = ((index * 2 + 1) << 12) | host_tag;
  ++p->children;
  ++live_mrs_;
  mr_by_lkey_[m->lkey] = m.get();
  mr_by_rkey_[m->rkey] = m.get();
  ibv_mr* out = m.get();
  mrs_[m->id] = std::move(m);
  return out;
}

absl::Status SimVerbs::DeregMr(ibv_mr* mr) {
  SimMr* m = static_cast<SimMr*>(mr);
  absl::Status s = CheckObject(m, internal::kMrMagic, this, incarnation(), "ibv_dereg_mr", "MR");
  if (!s.ok()) return s;
  mr_by_lkey_.erase(m->lkey);
  mr_by_rkey_.erase(m->rkey);
  --live_mrs_;
  --m->spd->children;
  m->magic = internal::kDestroyedMagic;
  return absl::OkStatus();
}

// --- CQs ---

absl::StatusOr<ibv_cq*> SimVerbs::CreateCq(ibv_context* context, int cqe) {
  SimContext* c = nullptr;
  absl::Status s = CheckContext(context, &c);
  if (!s.ok()) return s;
  const DeviceLimits& l = limits(c->nic);
  if (cqe < 1 || cqe > l.max_cqe) {
    return Errno(EINVAL, "ibv_create_cq",
                 absl::StrCat("cqe ", cqe, " outside [1, ", l.max_cqe, "]"));
  }
  auto q = std::make_unique<SimCq>();
  q->id = next_object_id_++;
  q->incarnation = incarnation();
  q->owner = this;
  q->ctx = c;
  q->context = c;
  q->cqe = cqe;
  q->capacity = cqe;
  q->handle = static_cast<uint32_t>(q->id);
  ++c->children;
  ibv_cq* out = q.get();
  cqs_[q->id] = std::move(q);
  return out;
}

absl::Status SimVerbs::DestroyCq(ibv_cq* cq) {
  SimCq* q = nullptr;
  absl::Status s = CheckCq(cq, &q);
  if (!s.ok()) return s;
  if (q->qp_refs > 0) {
    return Errno(EBUSY, "ibv_destroy_cq", "QPs still use this CQ");
  }
  q->entries.clear();
  q->callback = nullptr;
  --q->ctx->children;
  q->magic = internal::kDestroyedMagic;
  return absl::OkStatus();
}

absl::Status SimVerbs::SetCompletionCallback(ibv_cq* cq, std::function<void()> callback) {
  SimCq* q = nullptr;
  absl::Status s = CheckCq(cq, &q);
  if (!s.ok()) return s;
  q->callback = std::move(callback);
  return absl::OkStatus();
}

void SimVerbs::PushCompletion(SimCq* cq, SimQp* qp, uint64_t seq, const ibv_wc& wc) {
  ++stats_.completions;
  if (wc.status != IBV_WC_SUCCESS) ++stats_.error_completions;
  sim()->Trace(static_cast<uint64_t>(wc.status) << 32 | wc.qp_num);
  if (cq->magic != internal::kCqMagic || cq->overrun) return;
  if (static_cast<int>(cq->entries.size()) >= cq->capacity) {
    // CQ overrun is fatal for the CQ (IBV_EVENT_CQ_ERR): the completion is lost.
    cq->overrun = true;
    ++stats_.cq_overruns;
    MC_LOG(ERROR) << "sim: CQ overrun on host " << network()->host_name(host_) << " ("
                  << cq->capacity << " entries): completions are being lost; PollCq now fails";
    return;
  }
  cq->entries.push_back(CqEntry{wc, qp, seq});
  if (cq->callback && !cq->callback_pending) {
    cq->callback_pending = true;
    sim()->Schedule(0, "verbs.cq_callback", [cq] {
      cq->callback_pending = false;
      if (cq->magic == internal::kCqMagic && cq->callback) cq->callback();
    });
  }
}

void SimVerbs::PurgeCompletions(SimQp* qp) {
  std::deque<CqEntry>& entries = qp->scq->entries;
  for (auto it = entries.begin(); it != entries.end();) {
    it = it->qp == qp ? entries.erase(it) : it + 1;
  }
}

int SimVerbs::PollCq(ibv_cq* cq, int num_entries, ibv_wc* wc) {
  SimCq* q = nullptr;
  absl::Status s = CheckCq(cq, &q);
  if (!s.ok()) {
    MC_LOG(ERROR) << s;
    return -1;
  }
  if (num_entries < 0 || (num_entries > 0 && wc == nullptr)) return -1;
  if (q->overrun) return -1;
  int n = 0;
  while (n < num_entries && !q->entries.empty()) {
    const CqEntry& e = q->entries.front();
    wc[n++] = e.wc;
    // Polling a completion frees its send-queue slot and every earlier one.
    e.qp->OnCompletionPolled(e.seq);
    q->entries.pop_front();
  }
  return n;
}

// --- QPs ---

absl::StatusOr<ibv_qp*> SimVerbs::CreateQp(ibv_pd* pd, ibv_qp_init_attr* attr) {
  SimPd* p = nullptr;
  absl::Status s = CheckPd(pd, &p);
  if (!s.ok()) return s;
  if (attr == nullptr) return Errno(EINVAL, "ibv_create_qp", "null attributes");
  if (attr->qp_type != IBV_QPT_RC) {
    return Errno(EINVAL, "ibv_create_qp", "only RC QPs are simulated");
  }
  if (attr->srq != nullptr) return Errno(EINVAL, "ibv_create_qp", "SRQs are not simulated");
  SimCq* scq = nullptr;
  SimCq* rcq = nullptr;
  s = CheckCq(attr->send_cq, &scq);
  if (!s.ok()) return Errno(EINVAL, "ibv_create_qp", absl::StrCat("send_cq: ", s.message()));
  s = CheckCq(attr->recv_cq, &rcq);
  if (!s.ok()) return Errno(EINVAL, "ibv_create_qp", absl::StrCat("recv_cq: ", s.message()));
  if (scq->ctx != p->ctx || rcq->ctx != p->ctx) {
    return Errno(EINVAL, "ibv_create_qp", "CQs and PD belong to different devices");
  }
  const DeviceLimits& l = limits(p->ctx->nic);
  const ibv_qp_cap& cap = attr->cap;
  if (cap.max_send_wr < 1 || cap.max_send_wr > static_cast<uint32_t>(l.max_qp_wr) ||
      cap.max_recv_wr > static_cast<uint32_t>(l.max_qp_wr) ||
      cap.max_send_sge > static_cast<uint32_t>(l.max_sge) ||
      cap.max_recv_sge > static_cast<uint32_t>(l.max_sge) ||
      cap.max_inline_data > l.max_inline_data) {
    return Errno(
        EINVAL, "ibv_create_qp",
        absl::StrCat("capabilities exceed the device (max_qp_wr ", l.max_qp_wr, ", max_sge ",
                     l.max_sge, ", max_inline_data ", l.max_inline_data, ") or max_send_wr is 0"));
  }
  if (static_cast<int>(qp_by_num_.size()) >= l.max_qp) {
    return Errno(ENOMEM, "ibv_create_qp", absl::StrCat("max_qp ", l.max_qp, " reached"));
  }
  const uint32_t qpn = next_qp_num_++ & internal::kPsnMask;
  auto q = std::make_unique<SimQp>(this, next_object_id_++, p, scq, rcq, *attr, qpn, p->ctx->nic);
  q->incarnation = incarnation();
  ++p->children;
  ++scq->qp_refs;
  ++rcq->qp_refs;
  qp_by_num_[qpn] = q.get();
  ibv_qp* out = q.get();
  qps_[q->object_id] = std::move(q);
  return out;
}

absl::Status SimVerbs::DestroyQp(ibv_qp* qp) {
  SimQp* q = nullptr;
  absl::Status s = CheckQp(qp, &q);
  if (!s.ok()) return s;
  q->Kill();
  PurgeCompletions(q);
  qp_by_num_.erase(q->qp_num);
  --q->spd->children;
  --q->scq->qp_refs;
  --q->rcq->qp_refs;
  q->magic = internal::kDestroyedMagic;
  return absl::OkStatus();
}

absl::StatusOr<ibv_qp_state> SimVerbs::QueryQpState(ibv_qp* qp) {
  SimQp* q = nullptr;
  absl::Status s = CheckQp(qp, &q);
  if (!s.ok()) return s;
  return q->state;
}

absl::Status SimVerbs::ModifyQp(ibv_qp* qp, ibv_qp_attr* attr, int mask) {
  SimQp* q = nullptr;
  absl::Status s = CheckQp(qp, &q);
  if (!s.ok()) return s;
  const char* call = "ibv_modify_qp";
  if (attr == nullptr) return Errno(EINVAL, call, "null attributes");
  const int cur = q->state;
  if ((mask & IBV_QP_CUR_STATE) && attr->cur_qp_state != cur) {
    return Errno(EINVAL, call,
                 absl::StrCat("cur_qp_state ", StateName(attr->cur_qp_state), " but the QP is in ",
                              StateName(cur)));
  }
  const int next = (mask & IBV_QP_STATE) ? attr->qp_state : cur;
  int required = 0, optional = 0;
  if (!TransitionMasks(cur, next, &required, &optional)) {
    return Errno(EINVAL, call,
                 absl::StrCat("illegal transition ", StateName(cur), " -> ", StateName(next)));
  }
  const std::string transition = absl::StrCat(StateName(cur), " -> ", StateName(next));
  if ((mask & required) != required) {
    return Errno(EINVAL, call, absl::StrCat(transition, " needs ", MaskNames(required & ~mask)));
  }
  const int extra = mask & ~(required | optional | IBV_QP_STATE);
  if (extra != 0) {
    return Errno(EINVAL, call, absl::StrCat(MaskNames(extra), " not allowed in ", transition));
  }
  if (mask & (IBV_QP_ALT_PATH | IBV_QP_RATE_LIMIT)) {
    return Errno(EINVAL, call, "alternate paths and rate limits are not simulated");
  }
  const DeviceLimits& l = limits(q->nic);
  if ((mask & IBV_QP_PORT) && attr->port_num != 1) {
    return Errno(EINVAL, call, absl::StrCat("no port ", int{attr->port_num}));
  }
  if ((mask & IBV_QP_PKEY_INDEX) && attr->pkey_index != 0) {
    return Errno(EINVAL, call, "pkey_index out of range (the table has 1 entry)");
  }
  if ((mask & IBV_QP_ACCESS_FLAGS) && (attr->qp_access_flags & ~kQpAccessFlags)) {
    return Errno(EINVAL, call, "unknown qp_access_flags");
  }
  NicId remote = kNoId;
  if (mask & IBV_QP_AV) {
    const ibv_ah_attr& ah = attr->ah_attr;
    if (!ah.is_global) {
      return Errno(EINVAL, call, "RoCE needs a GRH: set ah_attr.is_global = 1 and grh.dgid");
    }
    if (ah.port_num != 1) {
      return Errno(EINVAL, call, absl::StrCat("ah_attr.port_num ", int{ah.port_num}));
    }
    if (ah.grh.sgid_index >= kGidsPerNic) {
      return Errno(EINVAL, call,
                   absl::StrCat("grh.sgid_index ", int{ah.grh.sgid_index},
                                " names no GID (entries 0 and 1 are set)"));
    }
    Gid gid;
    std::memcpy(gid.data(), ah.grh.dgid.raw, gid.size());
    remote = network()->FindNicByGid(gid);
    if (remote == kNoId) {
      // As on RoCE NICs and rxe: the kernel resolves the GID's neighbour for the address vector,
      // and nobody answers for a GID no NIC has.
      return Errno(ETIMEDOUT, call, "no neighbour answers for grh.dgid");
    }
  }
  if ((mask & IBV_QP_PATH_MTU) && (attr->path_mtu < IBV_MTU_256 || attr->path_mtu > IBV_MTU_4096)) {
    return Errno(EINVAL, call, "path_mtu is not an ibv_mtu value");
  }
  if ((mask & IBV_QP_MAX_DEST_RD_ATOMIC) && attr->max_dest_rd_atomic > l.max_qp_rd_atom) {
    return Errno(EINVAL, call,
                 absl::StrCat("max_dest_rd_atomic above max_qp_rd_atom ", l.max_qp_rd_atom));
  }
  if ((mask & IBV_QP_MAX_QP_RD_ATOMIC) && attr->max_rd_atomic > l.max_qp_init_rd_atom) {
    return Errno(EINVAL, call,
                 absl::StrCat("max_rd_atomic above max_qp_init_rd_atom ", l.max_qp_init_rd_atom));
  }
  if ((mask & IBV_QP_TIMEOUT) && attr->timeout > 31) return Errno(EINVAL, call, "timeout > 31");
  if ((mask & IBV_QP_RETRY_CNT) && attr->retry_cnt > 7) {
    return Errno(EINVAL, call, "retry_cnt > 7");
  }
  if ((mask & IBV_QP_RNR_RETRY) && attr->rnr_retry > 7) {
    return Errno(EINVAL, call, "rnr_retry > 7");
  }
  if ((mask & IBV_QP_MIN_RNR_TIMER) && attr->min_rnr_timer > 31) {
    return Errno(EINVAL, call, "min_rnr_timer > 31");
  }
  if ((mask & IBV_QP_DEST_QPN) && attr->dest_qp_num > internal::kPsnMask) {
    return Errno(EINVAL, call, "dest_qp_num is wider than 24 bits");
  }

  // Valid: apply the attributes, then the state change.
  if (mask & IBV_QP_ACCESS_FLAGS) q->access_flags = attr->qp_access_flags;
  if (mask & IBV_QP_PORT) q->port_num = attr->port_num;
  if (mask & IBV_QP_PKEY_INDEX) q->pkey_index = attr->pkey_index;
  if (mask & IBV_QP_AV) q->remote_nic = remote;
  if (mask & IBV_QP_PATH_MTU) q->path_mtu = attr->path_mtu;
  if (mask & IBV_QP_DEST_QPN) q->dest_qpn = attr->dest_qp_num;
  if (mask & IBV_QP_RQ_PSN) q->rq_psn = attr->rq_psn & internal::kPsnMask;
  if (mask & IBV_QP_SQ_PSN) q->sq_psn = attr->sq_psn & internal::kPsnMask;
  if (mask & IBV_QP_MAX_DEST_RD_ATOMIC) q->max_dest_rd_atomic = attr->max_dest_rd_atomic;
  if (mask & IBV_QP_MAX_QP_RD_ATOMIC) q->max_rd_atomic = attr->max_rd_atomic;
  if (mask & IBV_QP_MIN_RNR_TIMER) q->min_rnr_timer = attr->min_rnr_timer;
  if (mask & IBV_QP_TIMEOUT) q->timeout = attr->timeout;
  if (mask & IBV_QP_RETRY_CNT) q->retry_cnt = attr->retry_cnt;
  if (mask & IBV_QP_RNR_RETRY) q->rnr_retry = attr->rnr_retry;
  if (next == cur) return absl::OkStatus();
  sim()->Trace(static_cast<uint64_t>(cur) << 8 | static_cast<uint64_t>(next));
  switch (next) {
    case IBV_QPS_RESET:
      q->state = IBV_QPS_RESET;
      q->OnEnterReset();
      PurgeCompletions(q);
      break;
    case IBV_QPS_RTR:
      q->state = IBV_QPS_RTR;
      q->OnEnterRtr();
      break;
    case IBV_QPS_RTS:
      q->state = IBV_QPS_RTS;
      q->OnEnterRts();
      break;
    case IBV_QPS_ERR:
      q->EnterError();
      break;
    default:
      q->state = static_cast<ibv_qp_state>(next);
      break;
  }
  return absl::OkStatus();
}

int SimVerbs::PostSend(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad_wr) {
  SimQp* q = nullptr;
  absl::Status s = CheckQp(qp, &q);
  if (!s.ok()) {
    if (bad_wr != nullptr) *bad_wr = wr;
    return s.code() == absl::StatusCode::kInvalidArgument ? EINVAL : EIO;
  }
  return q->Post(wr, bad_wr);
}

}  // namespace sim
