// Internal to SimVerbs: the objects behind the ibv_* pointers and the RC queue-pair engine.
// Control path (create, modify, destroy, post, poll) is in sim_verbs.cc; the data path (bursts,
// responder checks, copies, ACKs, retransmission, completions) in sim_qp.cc.
//
// Each object derives from its ibv_* struct, so the pointer handed to the caller is the object
// itself (as real providers do); `magic` identifies the type and turns to kDestroyedMagic on
// release. `incarnation` is the host incarnation the object was created in: after a host crash
// every older object is dead.
#ifndef SIM_VERBS_SIM_VERBS_INTERNAL_H_
#define SIM_VERBS_SIM_VERBS_INTERNAL_H_

#include <infiniband/verbs.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <string>

#include "absl/container/inlined_vector.h"
#include "sim/kernel/network.h"
#include "sim/kernel/simulator.h"

namespace sim {

class SimVerbs;

namespace internal {

constexpr uint32_t kContextMagic = 0x51c0e701;
constexpr uint32_t kPdMagic = 0x51c0e702;
constexpr uint32_t kMrMagic = 0x51c0e703;
constexpr uint32_t kCqMagic = 0x51c0e704;
constexpr uint32_t kQpMagic = 0x51c0e705;
constexpr uint32_t kDestroyedMagic = 0xdeadbeef;
constexpr uint32_t kPsnMask = 0xffffff;
constexpr uint64_t kNoHalt = ~uint64_t{0};

struct SimContext : ibv_context {
  SimContext() : ibv_context() {}
  uint32_t magic = kContextMagic;
  uint64_t id = 0;
  uint64_t incarnation = 0;
  SimVerbs* owner = nullptr;
  NicId nic = kNoId;
  int children = 0;  // PDs and CQs
  ibv_device device_storage{};
};

struct SimPd : ibv_pd {
  SimPd() : ibv_pd() {}
  uint32_t magic = kPdMagic;
  uint64_t id = 0;
  uint64_t incarnation = 0;
  SimVerbs* owner = nullptr;
  SimContext* ctx = nullptr;
  int children = 0;  // MRs and QPs
};

struct SimMr : ibv_mr {
  SimMr() : ibv_mr() {}
  uint32_t magic = kMrMagic;
  uint64_t id = 0;
  uint64_t incarnation = 0;
  SimVerbs* owner = nullptr;
  SimPd* spd = nullptr;
  int access = 0;
  // Contains is true if [addr, addr + len) lies inside this MR (overflow-safe).
  bool Contains(uint64_t a, uint64_t len) const {
    const uint64_t base = reinterpret_cast<uint64_t>(addr);
    return a >= base && len <= length && a - base <= length - len;
  }
};

class SimQp;

struct CqEntry {
  ibv_wc wc;
  SimQp* qp;     // the QP whose send queue produced it
  uint64_t seq;  // that request's sequence number on the QP
};

struct SimCq : ibv_cq {
  SimCq() : ibv_cq() {}
  uint32_t magic = kCqMagic;
  uint64_t id = 0;
  uint64_t incarnation = 0;
  SimVerbs* owner = nullptr;
  SimContext* ctx = nullptr;
  int capacity = 0;
  int qp_refs = 0;
  bool overrun = false;  // a completion did not fit: the CQ is broken (PollCq returns -1)
  std::deque<CqEntry> entries;
  std::function<void()> callback;
  bool callback_pending = false;
};

// WorkRequest is one posted send-queue entry and its progress through the RC engine.
struct WorkRequest {
  uint64_t seq = 0;  // 1-based, per QP, in posting order
  uint64_t wr_id = 0;
  ibv_wr_opcode opcode = IBV_WR_RDMA_WRITE;
  bool signaled = false;
  bool fence = false;
  bool is_inline = false;
  absl::InlinedVector<ibv_sge, 2> sges;
  std::string inline_data;  // IBV_SEND_INLINE: the payload, copied at post time
  uint64_t remote_addr = 0;
  uint32_t rkey = 0;
  uint64_t length = 0;
  uint32_t psn = 0;    // first PSN
  uint32_t npkts = 1;  // PSNs the request consumes (its packets; a READ: its response packets)

  bool processed = false;         // local SGEs checked (when the NIC first fetched the WQE)
  bool read_counted = false;      // READ: holds one of the max_rd_atomic credits
  bool request_accepted = false;  // READ: the responder accepted the request
  bool rereq = false;             // READ: queued for a re-request of the missing response bytes
  uint64_t landed = 0;            // READ: response bytes landed in local memory, in order
  bool ack_pending = false;       // WRITE: fully accepted; the ACK is on its way
  bool done = false;              // final status known; completes when every earlier one has
  ibv_wc_status status = IBV_WC_SUCCESS;
};

// ResponseJob is a READ being answered by a responder QP.
struct ResponseJob {
  SimQp* requester = nullptr;
  uint64_t requester_epoch = 0;
  uint64_t seq = 0;
  uint64_t next = 0;  // next response byte to send
  uint64_t end = 0;
};

// Burst kinds and tags: tag[0] = kind | (send generation & 0xffffff) << 8 | epoch << 32,
// tag[1] = request seq, tag[2] = byte offset, tag[3] = PSN (requests and data) or the requester
// SimQp* (READ responses).
enum BurstKind : uint64_t {
  kWriteData = 1,
  kReadRequest = 2,
  kReadReRequest = 3,  // a duplicate READ asking again from the first missing byte
  kReadResponse = 4,
};

// SimQp is an RC queue pair: the verbs-visible state plus the requester and responder engines.
//
// Requester invariants (positions are (seq, byte offset) pairs in posting order):
//   front_seq_ <= acc_ <= send_ <= next_seq_, where acc_ is what the responder has accepted (its
//   expected PSN), send_ is the next byte to put on the wire; rewinding send_ to acc_ is go-back-N.
//   Requests complete (CQEs) strictly in order; a request's slot stays in use until a CQE at or
//   after it is polled (retired_seq_).
//   epoch_ changes whenever the QP leaves RTS/RTR (reset, error, death): events and bursts tagged
//   with an older epoch are ignored.
class SimQp : public ibv_qp {
 public:
  SimQp(SimVerbs* owner, uint64_t id, SimPd* pd, SimCq* send_cq, SimCq* recv_cq,
        const ibv_qp_init_attr& init, uint32_t qp_number, NicId nic);
  ~SimQp();
  SimQp(const SimQp&) = delete;
  SimQp& operator=(const SimQp&) = delete;

  uint32_t magic = kQpMagic;
  const uint64_t object_id;
  uint64_t incarnation = 0;
  SimVerbs* const owner;
  SimPd* const spd;
  SimCq* const scq;
  SimCq* const rcq;
  const NicId nic;
  ibv_qp_cap cap;
  bool sq_sig_all;

  // Attributes set by ModifyQp.
  unsigned access_flags = 0;
  uint8_t port_num = 0;
  uint16_t pkey_index = 0;
  ibv_mtu path_mtu = IBV_MTU_1024;
  uint32_t pmtu = 1024;  // path MTU in bytes (min of path_mtu and the local link)
  NicId remote_nic = kNoId;
  uint32_t dest_qpn = 0;
  uint32_t rq_psn = 0;
  uint32_t sq_psn = 0;
  uint8_t max_dest_rd_atomic = 0;
  uint8_t max_rd_atomic = 0;
  uint8_t min_rnr_timer = 0;
  uint8_t timeout = 0;
  uint8_t retry_cnt = 0;
  uint8_t rnr_retry = 0;

  // --- Control path hooks (sim_verbs.cc calls these after validating) ---
  void OnEnterRtr();    // remote set: flows get their destination, expected PSN = rq_psn
  void OnEnterRts();    // next PSN = sq_psn
  void OnEnterReset();  // forget everything, no completions
  void EnterError();    // ERROR: flush every outstanding request (CQEs generated now)
  void Kill();          // destroyed or host crashed: silent, no completions, flows removed
  bool dead() const { return dead_; }
  int Post(ibv_send_wr* wr, ibv_send_wr** bad_wr);
  void OnCompletionPolled(uint64_t seq);
  int outstanding() const { return static_cast<int>(next_seq_ - 1 - retired_seq_); }

  // --- Data path (network callbacks through the two burst sources) ---
  bool PullSend(Burst* burst);
  void OnSendDelivery(const Burst& burst, const Delivery& delivery);
  bool PullResponse(Burst* burst);
  void OnReadData(SimQp* responder, const Burst& burst, const Delivery& delivery);

 private:
  class SendSource : public BurstSource {
   public:
    explicit SendSource(SimQp* qp) : qp_(qp) {}
    bool PullBurst(Burst* burst) override { return qp_->PullSend(burst); }
    void OnDelivery(const Burst& burst, const Delivery& delivery) override {
      qp_->OnSendDelivery(burst, delivery);
    }

   private:
    SimQp* qp_;
  };
  class ResponseSource : public BurstSource {
   public:
    explicit ResponseSource(SimQp* qp) : qp_(qp) {}
    bool PullBurst(Burst* burst) override { return qp_->PullResponse(burst); }
    void OnDelivery(const Burst& burst, const Delivery& delivery) override;

   private:
    SimQp* qp_;
  };

  Simulator* sim() const;
  Network* net() const;
  WorkRequest* Find(uint64_t seq);
  uint32_t MaxBurstPackets() const;
  uint32_t PsnAt(const WorkRequest& w, uint64_t offset) const;
  SimTime AckTimeout() const;
  SimTime PathLatency() const;
  int ReadLimit();
  bool HasOutstanding() const;
  void BumpEpoch();
  void KickSend();

  // Requester.
  int Validate(const ibv_send_wr& wr) const;
  void Enqueue(const ibv_send_wr& wr);
  bool FillSendBurst(Burst* burst);
  // FailsAtSend fails `w` with LOC_QP_OP_ERR when the fabric models rxe and this NIC is down.
  bool FailsAtSend(WorkRequest& w);
  ibv_wc_status CheckLocal(const WorkRequest& w) const;
  SimQp* FindResponder() const;
  bool SentBeyond(uint64_t seq, uint64_t end_offset, uint64_t length) const;
  bool CopyWrite(SimQp* responder, WorkRequest& w, uint64_t offset, uint64_t bytes);
  bool CopyRead(SimQp* responder, WorkRequest& w, uint64_t offset, uint64_t bytes);
  void AccessError(SimQp* responder, uint64_t seq);
  void ScheduleAck(uint64_t seq);
  void ScheduleNak(uint64_t seq, ibv_wc_status status);
  void Fail(WorkRequest& w, ibv_wc_status status);
  void FailOldest(ibv_wc_status status);
  void Progress();
  void OnLoss(bool nak, SimTime nak_delay);
  void ArmTimer();
  void OnTimer(uint64_t epoch);
  void Recover(bool timeout);
  void TryComplete();
  void MoveToError();

  // Responder.
  SimMr* CheckRemote(uint32_t rkey, uint64_t addr, uint64_t length, unsigned need) const;
  void EnqueueResponse(SimQp* requester, const WorkRequest& w, uint64_t offset);
  void CancelResponse(SimQp* requester, uint64_t seq);

  SendSource send_source_;
  ResponseSource response_source_;
  FlowId send_flow_;
  FlowId response_flow_;

  bool dead_ = false;
  uint64_t epoch_ = 1;

  // Requester state.
  std::deque<WorkRequest> sq_;  // requests not yet completed; sq_[i].seq == front_seq_ + i
  uint64_t front_seq_ = 1;
  uint64_t next_seq_ = 1;
  uint64_t retired_seq_ = 0;  // send-queue slots up to here are free again
  uint64_t send_seq_ = 1;
  uint64_t send_off_ = 0;
  uint64_t acc_seq_ = 1;
  uint64_t acc_off_ = 0;
  uint32_t next_psn_ = 0;
  int reads_in_flight_ = 0;
  std::deque<uint64_t> rereq_;   // READs whose missing response bytes must be asked again
  uint64_t halt_seq_ = kNoHalt;  // a request failed: send nothing from it on (earlier may resend)
  bool recovering_ = false;      // a loss was seen: send nothing until Recover
  bool rewind_needed_ = false;   // Recover must go back to acc_
  bool nak_pending_ = false;     // a NAK-triggered Recover is scheduled
  bool timer_pending_ = false;
  uint64_t send_gen_ = 0;  // bumped by each rewind; older bursts cannot start a recovery
  bool progress_ = false;  // something was accepted or landed since the last Recover
  int consecutive_retries_ = 0;
  SimTime timer_base_ = 0;  // the ACK timer expires at timer_base_ + AckTimeout()

  // Responder state.
  uint32_t epsn_ = 0;  // next PSN expected from the requester
  std::deque<ResponseJob> jobs_;
};

}  // namespace internal
}  // namespace sim

#endif  // SIM_VERBS_SIM_VERBS_INTERNAL_H_
