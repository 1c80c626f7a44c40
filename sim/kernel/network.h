// Network: the simulated fabric. Hosts carry NICs; every NIC hangs off one switch through a link
// with a line rate, a one-way latency and an MTU. A transfer engine (SimVerbs) moves data as
// *bursts* (a run of up to NetworkOptions::max_burst_bytes of payload, cut into MTU packets)
// through *flows* (one per direction of a queue pair); the network decides when each burst arrives
// and whether its packets survive.
//
// Timing model (per burst of B wire bytes, P packets, from NIC A to NIC B):
//   - A's egress port serializes one burst at a time, for B*8/rate(A), taking flows round-robin,
//     so QPs sharing a NIC share its bandwidth.
//   - The first packet reaches B's ingress after one packet's serialization plus the path latency
//     (latency(A) + latency(B)); B's ingress serializes the burst for B*8/rate(B) once it is free
//     (bursts from all senders in arrival order), and the burst is delivered when both its ingress
//     serialization and its last packet's flight are done (cut-through, not store-and-forward).
//   - Backpressure (like PFC): a (source NIC, destination NIC) pair has a window of bytes in flight
//     (a few bursts or two bandwidth-delay products); a flow whose pair window is full waits, so
//     N senders into one port each get about 1/N of it and a late sender is not stuck behind an
//     unbounded queue. Bursts of one pair are delivered in order, even across latency changes.
//   Events per burst: egress done, arrival, delivery (not per byte or packet).
//
// Faults (immediate, scheduled at a time, or drawn from the simulator's seed by RandomFaults):
// NIC down/up, per-NIC packet loss probability, latency change, bandwidth change, host crash and
// restart. A burst is lost whole if its source NIC is down at egress or delivery, its destination
// NIC is down at arrival or delivery, or either host crashed meanwhile; link loss drops the first
// lost packet and everything after it in the burst (go-back-N receivers discard the rest).
//
//   sim::Simulator sim(1);
//   sim::Network net(&sim);
//   sim::HostId a = net.AddHost("a");
//   sim::NicSpec spec;
//   spec.name = "erdma_0";
//   sim::NicId nic = net.AddNic(a, spec);
//   net.ScheduleNicDown(nic, 10 * sim::kMillisecond);
//   net.ScheduleNicUp(nic, 20 * sim::kMillisecond);
#ifndef SIM_KERNEL_NETWORK_H_
#define SIM_KERNEL_NETWORK_H_

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "sim/kernel/simulator.h"

namespace sim {

using HostId = int32_t;
using NicId = int32_t;
constexpr int32_t kNoId = -1;

// Gid is a 16-byte RoCE GID. The network gives each NIC two, as rxe does for a netdev with an
// IPv4 address: index 0 is link-local (fe80::<nic id + 1>), index 1 IPv4-mapped
// (::ffff:10.x.y.z, the NIC number in x.y.z), the one RoCE v2 over IPv4 uses.
using Gid = std::array<uint8_t, 16>;
constexpr int kGidsPerNic = 2;

// DeviceLimits are a NIC's verbs-level limits (ibv_query_device / ibv_query_port). The network
// stores them; SimVerbs enforces them.
struct DeviceLimits {
  uint64_t max_mr_size = 64ull << 30;  // 64 GiB, as erdma-like NICs cap one MR
  int max_mr = 1 << 20;
  int max_pd = 1 << 16;
  int max_qp = 1 << 16;
  int max_qp_wr = 8192;
  int max_sge = 16;
  int max_cq = 1 << 16;
  int max_cqe = 1 << 22;
  int max_qp_rd_atom = 16;       // max_dest_rd_atomic a QP may accept
  int max_qp_init_rd_atom = 16;  // max_rd_atomic a QP may initiate
  uint32_t max_inline_data = 256;
  uint32_t max_msg_sz = 1u << 31;  // per-message limit (ibv_port_attr.max_msg_sz)
  uint32_t vendor_id = 0;
  uint32_t vendor_part_id = 0;
};

// NicSpec describes one NIC and its link to the switch.
struct NicSpec {
  std::string name = "mlx5_0";          // device name, unique on its host
  double rate_bps = 200e9;              // line rate in bits per second
  SimTime link_latency = kMicrosecond;  // one-way NIC <-> switch; a path adds both ends
  uint32_t mtu = 4096;                  // largest packet payload on this link
  DeviceLimits device;
};

struct NetworkOptions {
  // A message is carried as bursts of at most this much payload (whole packets); it sets the
  // granularity of bandwidth sharing and the number of events per byte.
  uint32_t max_burst_bytes = 64 << 10;
  // Wire bytes added per packet (headers); 0 makes goodput equal line rate.
  uint32_t packet_overhead_bytes = 0;
  // Wire size of a packet without payload (an RDMA READ request).
  uint32_t control_packet_bytes = 64;
  // Per (source, destination) NIC pair, bursts allowed in flight: at least this many bursts, and at
  // least two bandwidth-delay products.
  uint32_t window_bursts = 4;
};

// Burst is what a flow hands to its egress port: `payload_bytes` cut into `packets` packets.
// `tag` is opaque to the network and comes back with the delivery.
struct Burst {
  uint32_t payload_bytes = 0;
  uint32_t packets = 1;
  uint64_t tag[4] = {0, 0, 0, 0};
};

// DropCause says why packets of a burst did not arrive.
enum class DropCause : uint8_t {
  kNone,
  kSourceNicDown,
  kDestNicDown,
  kHostDown,  // either end's host crashed (or restarted) while the burst was in flight
  kLinkLoss,  // random packet loss; later packets of the burst were discarded with it
};
const char* DropCauseName(DropCause cause);

// Delivery reports the fate of a burst: its first `packets_delivered` packets arrived in order.
struct Delivery {
  uint32_t packets_delivered = 0;
  DropCause cause = DropCause::kNone;
};

// BurstSource is implemented by whatever feeds a flow (a QP's send queue, its READ responder).
class BurstSource {
 public:
  virtual ~BurstSource() = default;
  // PullBurst is called when the flow's egress port can serialize its next burst; it fills
  // *burst and returns true, or returns false if the flow has nothing to send now (it is then
  // idle until KickFlow).
  virtual bool PullBurst(Burst* burst) = 0;
  // OnDelivery is called, from a simulator event, when the burst reached its destination (or
  // was lost). It is not called if the flow was removed meanwhile.
  virtual void OnDelivery(const Burst& burst, const Delivery& delivery) = 0;
};

// FlowId names a flow; ids are not reused while a stale copy could be mistaken for a live flow.
struct FlowId {
  int32_t index = -1;
  uint32_t generation = 0;
  bool valid() const { return index >= 0; }
};

enum class HostEvent { kCrashed, kRestarted };

enum class FaultKind { kNicDown, kNicUp, kLinkLoss, kLatency, kRate, kHostCrash, kHostRestart };

// Fault is one scheduled change. `target` is a NicId (or a HostId for host faults); `value` is the
// loss probability, the latency in ns or the rate in bits/s.
struct Fault {
  SimTime at = 0;
  FaultKind kind = FaultKind::kNicDown;
  int32_t target = kNoId;
  double value = 0;
};

// RandomFaultOptions shapes RandomFaults(). Each fault picks a kind by weight, a target uniformly,
// a start in [start, end) and a duration in [min_duration, max_duration], after which it heals
// (NIC back up, loss 0, latency and rate back to the NIC's original spec, host restarted).
struct RandomFaultOptions {
  int count = 4;
  SimTime start = 0;
  SimTime end = kSecond;
  SimTime min_duration = kMillisecond;
  SimTime max_duration = 100 * kMillisecond;
  double weight_nic_down = 1;
  double weight_link_loss = 1;
  double weight_latency = 1;
  double weight_rate = 1;
  double weight_host_crash = 0;
  double max_loss = 0.01;          // loss drawn uniformly in (0, max_loss]
  double max_latency_factor = 20;  // latency multiplied by a factor in [2, max_latency_factor]
  double min_rate_factor = 0.1;    // rate multiplied by a factor in [min_rate_factor, 0.5]
  std::vector<NicId> nics;         // candidates for NIC faults; empty = all NICs
  std::vector<HostId> hosts;       // candidates for host crashes; empty = all hosts
};

// NicStats counts traffic through one NIC.
struct NicStats {
  uint64_t tx_bursts = 0;
  uint64_t tx_wire_bytes = 0;
  uint64_t rx_bursts = 0;
  uint64_t rx_payload_bytes = 0;  // payload of packets that arrived
  uint64_t lost_bursts = 0;       // bursts sent from this NIC that lost packets
};

class Network {
 public:
  explicit Network(Simulator* sim, NetworkOptions options = NetworkOptions());
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  Simulator* sim() const { return sim_; }
  const NetworkOptions& options() const { return options_; }

  // --- Topology ---
  HostId AddHost(const std::string& name);
  // AddNic adds a NIC (up, no loss) to `host`; its name must be new on that host.
  NicId AddNic(HostId host, const NicSpec& spec);

  int num_hosts() const { return static_cast<int>(hosts_.size()); }
  int num_nics() const { return static_cast<int>(nics_.size()); }
  const std::string& host_name(HostId host) const;
  HostId FindHost(absl::string_view name) const;  // kNoId if absent
  // host_alive is false between CrashHost and RestartHost.
  bool host_alive(HostId host) const;
  // host_incarnation increases at every crash.
  uint64_t host_incarnation(HostId host) const;
  const std::vector<NicId>& host_nics(HostId host) const;
  NicId FindNic(HostId host, absl::string_view name) const;  // kNoId if absent
  HostId nic_host(NicId nic) const;
  // nic_spec reflects faults (rate, latency) in effect now.
  const NicSpec& nic_spec(NicId nic) const;
  // nic_up is the NIC's own state; a NIC of a crashed host is also unusable (see nic_usable).
  bool nic_up(NicId nic) const;
  bool nic_usable(NicId nic) const;
  double nic_loss(NicId nic) const;
  // nic_gid is the NIC's GID at `index` (0 or 1, see Gid).
  const Gid& nic_gid(NicId nic, int index = 0) const;
  NicId FindNicByGid(const Gid& gid) const;  // kNoId if no NIC has it (either entry)
  // PathLatency is the one-way latency between two NICs: latency(a) + latency(b).
  SimTime PathLatency(NicId a, NicId b) const;
  const NicStats& nic_stats(NicId nic) const;

  // --- Faults, taking effect now ---
  void SetNicUp(NicId nic, bool up);
  void SetLinkLoss(NicId nic, double probability);  // per packet, each way through this link
  void SetLinkLatency(NicId nic, SimTime latency);
  void SetRate(NicId nic, double rate_bps);
  // CrashHost kills the host: its NICs stop, bursts to or from it are lost, listeners are told
  // (SimVerbs forgets the host's QPs and MRs). Memory stays owned by whoever allocated it.
  void CrashHost(HostId host);
  // RestartHost brings a crashed host back with all its NICs up and nothing registered.
  void RestartHost(HostId host);
  // Apply applies one fault now.
  void Apply(const Fault& fault);

  // --- Faults, scheduled at absolute simulated times ---
  void ScheduleFault(const Fault& fault);
  void ScheduleNicDown(NicId nic, SimTime at);
  void ScheduleNicUp(NicId nic, SimTime at);
  void ScheduleLinkLoss(NicId nic, double probability, SimTime at);
  void ScheduleLatency(NicId nic, SimTime latency, SimTime at);
  void ScheduleRate(NicId nic, double rate_bps, SimTime at);
  void ScheduleHostCrash(HostId host, SimTime at);
  void ScheduleHostRestart(HostId host, SimTime at);
  // RandomFaults draws a fault schedule from the simulator's rng, schedules it, and returns it
  // (sorted by time, faults and heals) so a runner can print it.
  std::vector<Fault> RandomFaults(const RandomFaultOptions& options);
  // Describe renders a fault for logs ("t=12.5ms nic a/erdma_0 down").
  std::string Describe(const Fault& fault) const;

  // --- Listeners (called synchronously, in registration order, when the change happens) ---
  void AddHostListener(std::function<void(HostId, HostEvent)> listener);
  void AddNicListener(std::function<void(NicId, bool up)> listener);

  // --- Flows (used by SimVerbs) ---
  // AddFlow registers a burst source on `src`'s egress port. The source must outlive the flow.
  FlowId AddFlow(NicId src, BurstSource* source);
  // SetFlowDestination sets where the flow's bursts go (a QP's remote NIC, known at RTR).
  void SetFlowDestination(FlowId flow, NicId dst);
  // KickFlow tells the egress port the flow may have bursts to send; cheap to call often.
  void KickFlow(FlowId flow);
  // RemoveFlow forgets the flow; its bursts in flight still use the wire but are not reported.
  void RemoveFlow(FlowId flow);

  // SerializationTime is the time to clock `wire_bytes` onto a link of `rate_bps` (rounded).
  // Ports account in picoseconds (SerializationPs) so that long runs keep the exact line rate.
  static SimTime SerializationTime(uint64_t wire_bytes, double rate_bps);
  static int64_t SerializationPs(uint64_t wire_bytes, double rate_bps);
  // WireBytes is a burst's size on the wire (payload, per-packet overhead, control minimum).
  uint64_t WireBytes(const Burst& burst) const;

 private:
  struct Host {
    std::string name;
    bool alive = true;
    uint64_t incarnation = 0;
    std::vector<NicId> nics;
  };
  struct Pair;
  struct Nic {
    HostId host = kNoId;
    NicSpec spec;      // current values
    NicSpec baseline;  // as added; heals restore it
    bool up = true;
    double loss = 0;
    std::array<Gid, kGidsPerNic> gids{};
    // Egress: flows with bursts to send, served round-robin; each flow at most once.
    std::deque<FlowId> ring;
    bool egress_busy = false;
    bool kick_pending = false;
    int64_t egress_carry_ps = 0;  // sub-nanosecond rest of the last serialization (exact rates)
    // Ingress: bursts are serialized in arrival order; the port is busy until this time (ps).
    int64_t ingress_free_at_ps = 0;
    NicStats stats;
  };
  // Pair is the path state between a source and a destination NIC.
  struct Pair {
    NicId src = kNoId;
    NicId dst = kNoId;
    uint64_t in_flight_bytes = 0;
    SimTime last_arrival = 0;   // bursts arrive in egress order
    SimTime last_delivery = 0;  // and are delivered in that order
    std::deque<FlowId> parked;  // flows waiting for the window to open
  };
  struct Flow {
    NicId src = kNoId;
    NicId dst = kNoId;
    Pair* pair = nullptr;
    BurstSource* source = nullptr;
    uint32_t generation = 0;
    bool live = false;
    bool in_ring = false;
    bool parked = false;
  };
  // InFlight is a burst between egress start and delivery.
  struct InFlight {
    FlowId flow;
    NicId src = kNoId;
    NicId dst = kNoId;
    Pair* pair = nullptr;
    Burst burst;
    uint64_t wire_bytes = 0;
    SimTime egress_end = 0;
    SimTime path_latency = 0;
    uint64_t src_incarnation = 0;
    uint64_t dst_incarnation = 0;
    DropCause early_drop = DropCause::kNone;  // decided at egress start or arrival
  };

  Flow* LiveFlow(FlowId id);
  Pair* GetPair(NicId src, NicId dst);
  uint64_t WindowBytes(const Pair& pair) const;
  void ScheduleKick(NicId nic);
  void TryTransmit(NicId nic);
  void Transmit(NicId nic, FlowId flow_id, const Burst& burst);
  void OnArrive(uint32_t slot);
  void OnDeliver(uint32_t slot);
  void Unpark(Pair* pair);
  uint32_t DrawDeliveredPackets(NicId src, NicId dst, uint32_t packets);
  void NotifyHost(HostId host, HostEvent event);
  void NotifyNic(NicId nic, bool up);

  Simulator* const sim_;
  const NetworkOptions options_;
  std::vector<Host> hosts_;
  std::vector<Nic> nics_;
  std::map<std::pair<NicId, NicId>, Pair> pairs_;  // node addresses are stable
  std::vector<Flow> flows_;
  std::vector<int32_t> free_flows_;
  std::vector<InFlight> in_flight_;
  std::vector<uint32_t> free_in_flight_;
  std::vector<std::function<void(HostId, HostEvent)>> host_listeners_;
  std::vector<std::function<void(NicId, bool)>> nic_listeners_;
};

}  // namespace sim

#endif  // SIM_KERNEL_NETWORK_H_
