#include "sim/kernel/network.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "mooncake/common/logging.h"

namespace sim {

const char* DropCauseName(DropCause cause) {
  switch (cause) {
    case DropCause::kNone:
      return "none";
    case DropCause::kSourceNicDown:
      return "source NIC down";
    case DropCause::kDestNicDown:
      return "destination NIC down";
    case DropCause::kHostDown:
      return "host down";
    case DropCause::kLinkLoss:
      return "link loss";
  }
  return "?";
}

Network::Network(Simulator* sim, NetworkOptions options) : sim_(sim), options_(options) {
  MC_CHECK(options_.max_burst_bytes > 0);
  MC_CHECK(options_.window_bursts > 0);
}

// --- Topology ---

HostId Network::AddHost(const std::string& name) {
  MC_CHECK(FindHost(name) == kNoId) << "duplicate host " << name;
  Host host;
  host.name = name;
  hosts_.push_back(std::move(host));
  return static_cast<HostId>(hosts_.size() - 1);
}

NicId Network::AddNic(HostId host, const NicSpec& spec) {
  MC_CHECK(host >= 0 && host < num_hosts()) << "no host " << host;
  MC_CHECK(FindNic(host, spec.name) == kNoId)
      << "host " << hosts_[host].name << " already has NIC " << spec.name;
  MC_CHECK(spec.rate_bps > 0 && spec.mtu >= 256 && spec.link_latency >= 0) << "bad NIC spec";
  const NicId id = static_cast<NicId>(nics_.size());
  Nic nic;
  nic.host = host;
  nic.spec = spec;
  nic.baseline = spec;
  // fe80::<id + 1>: link-local prefix, the NIC number in the interface identifier.
  const uint32_t n = static_cast<uint32_t>(id) + 1;
  Gid& local = nic.gids[0];
  local[0] = 0xfe;
  local[1] = 0x80;
  local[12] = static_cast<uint8_t>(n >> 24);
  local[13] = static_cast<uint8_t>(n >> 16);
  local[14] = static_cast<uint8_t>(n >> 8);
  local[15] = static_cast<uint8_t>(n);
  // ::ffff:10.<n>: the IPv4-mapped GID.
  Gid& v4 = nic.gids[1];
  v4[10] = 0xff;
  v4[11] = 0xff;
  v4[12] = 10;
  v4[13] = static_cast<uint8_t>(n >> 16);
  v4[14] = static_cast<uint8_t>(n >> 8);
  v4[15] = static_cast<uint8_t>(n);
  nics_.push_back(std::move(nic));
  hosts_[host].nics.push_back(id);
  return id;
}

const std::string& Network::host_name(HostId host) const { return hosts_.at(host).name; }

HostId Network::FindHost(absl::string_view name) const {
  for (size_t i = 0; i < hosts_.size(); ++i) {
    if (hosts_[i].name == name) return static_cast<HostId>(i);
  }
  return kNoId;
}

bool Network::host_alive(HostId host) const { return hosts_.at(host).alive; }

uint64_t Network::host_incarnation(HostId host) const { return hosts_.at(host).incarnation; }

const std::vector<NicId>& Network::host_nics(HostId host) const { return hosts_.at(host).nics; }

NicId Network::FindNic(HostId host, absl::string_view name) const {
  for (NicId id : hosts_.at(host).nics) {
    if (nics_[id].spec.name == name) return id;
  }
  return kNoId;
}

HostId Network::nic_host(NicId nic) const { return nics_.at(nic).host; }

const NicSpec& Network::nic_spec(NicId nic) const { return nics_.at(nic).spec; }

bool Network::nic_up(NicId nic) const { return nics_.at(nic).up; }

bool Network::nic_usable(NicId nic) const {
  const Nic& n = nics_.at(nic);
  return n.up && hosts_[n.host].alive;
}

double Network::nic_loss(NicId nic) const { return nics_.at(nic).loss; }

const Gid& Network::nic_gid(NicId nic, int index) const { return nics_.at(nic).gids.at(index); }

NicId Network::FindNicByGid(const Gid& gid) const {
  for (size_t i = 0; i < nics_.size(); ++i) {
    for (const Gid& g : nics_[i].gids) {
      if (g == gid) return static_cast<NicId>(i);
    }
  }
  return kNoId;
}

SimTime Network::PathLatency(NicId a, NicId b) const {
  return nics_.at(a).spec.link_latency + nics_.at(b).spec.link_latency;
}

const NicStats& Network::nic_stats(NicId nic) const { return nics_.at(nic).stats; }

// --- Faults ---

void Network::SetNicUp(NicId nic, bool up) {
  Nic& n = nics_.at(nic);
  if (n.up == up) return;
  n.up = up;
  sim_->Trace(up ? 0x4e1c0001u : 0x4e1c0000u);
  sim_->Trace(static_cast<uint64_t>(nic));
  MC_LOG(DEBUG) << "sim t=" << sim_->Now() << " NIC " << hosts_[n.host].name << "/" << n.spec.name
                << (up ? " up" : " down");
  NotifyNic(nic, up);
}

void Network::SetLinkLoss(NicId nic, double probability) {
  MC_CHECK(probability >= 0 && probability <= 1) << "loss probability " << probability;
  nics_.at(nic).loss = probability;
  sim_->Trace(0x1055u);
}

void Network::SetLinkLatency(NicId nic, SimTime latency) {
  MC_CHECK(latency >= 0);
  nics_.at(nic).spec.link_latency = latency;
  sim_->Trace(0x1a7u);
}

void Network::SetRate(NicId nic, double rate_bps) {
  MC_CHECK(rate_bps > 0);
  nics_.at(nic).spec.rate_bps = rate_bps;
  sim_->Trace(0x4a7eu);
}

void Network::CrashHost(HostId host) {
  Host& h = hosts_.at(host);
  if (!h.alive) return;
  h.alive = false;
  ++h.incarnation;
  sim_->Trace(0xc4a5u);
  sim_->Trace(static_cast<uint64_t>(host));
  MC_LOG(DEBUG) << "sim t=" << sim_->Now() << " host " << h.name << " crashed";
  NotifyHost(host, HostEvent::kCrashed);
}

void Network::RestartHost(HostId host) {
  Host& h = hosts_.at(host);
  if (h.alive) return;
  h.alive = true;
  for (NicId nic : h.nics) nics_[nic].up = true;
  sim_->Trace(0x4e57u);
  sim_->Trace(static_cast<uint64_t>(host));
  MC_LOG(DEBUG) << "sim t=" << sim_->Now() << " host " << h.name << " restarted";
  NotifyHost(host, HostEvent::kRestarted);
}

void Network::Apply(const Fault& fault) {
  switch (fault.kind) {
    case FaultKind::kNicDown:
      SetNicUp(fault.target, false);
      break;
    case FaultKind::kNicUp:
      SetNicUp(fault.target, true);
      break;
    case FaultKind::kLinkLoss:
      SetLinkLoss(fault.target, fault.value);
      break;
    case FaultKind::kLatency:
      SetLinkLatency(fault.target, static_cast<SimTime>(fault.value));
      break;
    case FaultKind::kRate:
      SetRate(fault.target, fault.value);
      break;
    case FaultKind::kHostCrash:
      CrashHost(fault.target);
      break;
    case FaultKind::kHostRestart:
      RestartHost(fault.target);
      break;
  }
}

void Network::ScheduleFault(const Fault& fault) {
  sim_->ScheduleAt(std::max(fault.at, sim_->Now()), "net.fault", [this, fault] { Apply(fault); });
}

void Network::ScheduleNicDown(NicId nic, SimTime at) {
  ScheduleFault(Fault{at, FaultKind::kNicDown, nic, 0});
}
void Network::ScheduleNicUp(NicId nic, SimTime at) {
  ScheduleFault(Fault{at, FaultKind::kNicUp, nic, 0});
}
void Network::ScheduleLinkLoss(NicId nic, double probability, SimTime at) {
  ScheduleFault(Fault{at, FaultKind::kLinkLoss, nic, probability});
}
void Network::ScheduleLatency(NicId nic, SimTime latency, SimTime at) {
  ScheduleFault(Fault{at, FaultKind::kLatency, nic, static_cast<double>(latency)});
}
void Network::ScheduleRate(NicId nic, double rate_bps, SimTime at) {
  ScheduleFault(Fault{at, FaultKind::kRate, nic, rate_bps});
}
void Network::ScheduleHostCrash(HostId host, SimTime at) {
  ScheduleFault(Fault{at, FaultKind::kHostCrash, host, 0});
}
void Network::ScheduleHostRestart(HostId host, SimTime at) {
  ScheduleFault(Fault{at, FaultKind::kHostRestart, host, 0});
}

std::vector<Fault> Network::RandomFaults(const RandomFaultOptions& o) {
  MC_CHECK(o.end > o.start && o.max_duration >= o.min_duration && o.min_duration >= 0);
  std::vector<NicId> nics = o.nics;
  if (nics.empty()) {
    for (NicId i = 0; i < num_nics(); ++i) nics.push_back(i);
  }
  std::vector<HostId> hosts = o.hosts;
  if (hosts.empty()) {
    for (HostId i = 0; i < num_hosts(); ++i) hosts.push_back(i);
  }
  const double weights[5] = {nics.empty() ? 0 : o.weight_nic_down,
                             nics.empty() ? 0 : o.weight_link_loss,
                             nics.empty() ? 0 : o.weight_latency, nics.empty() ? 0 : o.weight_rate,
                             hosts.empty() ? 0 : o.weight_host_crash};
  double total = 0;
  for (double w : weights) total += std::max(0.0, w);
  std::vector<Fault> faults;
  if (total <= 0) return faults;
  mooncake::Rng& rng = sim_->rng();
  for (int i = 0; i < o.count; ++i) {
    double pick = rng.UniformDouble() * total;
    int kind = 0;
    while (kind < 4 && pick >= std::max(0.0, weights[kind])) pick -= std::max(0.0, weights[kind++]);
    const SimTime at = rng.UniformRange(o.start, o.end - 1);
    const SimTime heal_at = at + rng.UniformRange(o.min_duration, o.max_duration);
    if (kind == 4) {
      const HostId host = hosts[rng.Uniform(hosts.size())];
      faults.push_back(Fault{at, FaultKind::kHostCrash, host, 0});
      faults.push_back(Fault{heal_at, FaultKind::kHostRestart, host, 0});
      continue;
    }
    const NicId nic = nics[rng.Uniform(nics.size())];
    const NicSpec& base = nics_[nic].baseline;
    switch (kind) {
      case 0:
        faults.push_back(Fault{at, FaultKind::kNicDown, nic, 0});
        faults.push_back(Fault{heal_at, FaultKind::kNicUp, nic, 0});
        break;
      case 1:
        faults.push_back(
            Fault{at, FaultKind::kLinkLoss, nic, o.max_loss * (1.0 - rng.UniformDouble())});
        faults.push_back(Fault{heal_at, FaultKind::kLinkLoss, nic, 0});
        break;
      case 2: {
        const double factor = 2 + rng.UniformDouble() * std::max(0.0, o.max_latency_factor - 2);
        faults.push_back(Fault{at, FaultKind::kLatency, nic,
                               std::round(static_cast<double>(base.link_latency) * factor)});
        faults.push_back(
            Fault{heal_at, FaultKind::kLatency, nic, static_cast<double>(base.link_latency)});
        break;
      }
      default: {
        const double factor =
            o.min_rate_factor + rng.UniformDouble() * std::max(0.0, 0.5 - o.min_rate_factor);
        faults.push_back(Fault{at, FaultKind::kRate, nic, base.rate_bps * factor});
        faults.push_back(Fault{heal_at, FaultKind::kRate, nic, base.rate_bps});
        break;
      }
    }
  }
  std::stable_sort(faults.begin(), faults.end(),
                   [](const Fault& a, const Fault& b) { return a.at < b.at; });
  for (const Fault& f : faults) ScheduleFault(f);
  return faults;
}

std::string Network::Describe(const Fault& f) const {
  char when[32];
  std::snprintf(when, sizeof(when), "t=%.3fms ", static_cast<double>(f.at) / kMillisecond);
  std::string out = when;
  if (f.kind == FaultKind::kHostCrash || f.kind == FaultKind::kHostRestart) {
    out += "host " + hosts_.at(f.target).name;
    out += f.kind == FaultKind::kHostCrash ? " crash" : " restart";
    return out;
  }
  const Nic& n = nics_.at(f.target);
  out += "nic " + hosts_[n.host].name + "/" + n.spec.name;
  char value[64];
  switch (f.kind) {
    case FaultKind::kNicDown:
      return out + " down";
    case FaultKind::kNicUp:
      return out + " up";
    case FaultKind::kLinkLoss:
      std::snprintf(value, sizeof(value), " loss %.6f", f.value);
      return out + value;
    case FaultKind::kLatency:
      std::snprintf(value, sizeof(value), " latency %.0fns", f.value);
      return out + value;
    case FaultKind::kRate:
      std::snprintf(value, sizeof(value), " rate %.1fGbps", f.value / 1e9);
      return out + value;
    default:
      return out;
  }
}

void Network::AddHostListener(std::function<void(HostId, HostEvent)> listener) {
  host_listeners_.push_back(std::move(listener));
}

void Network::AddNicListener(std::function<void(NicId, bool)> listener) {
  nic_listeners_.push_back(std::move(listener));
}

void Network::NotifyHost(HostId host, HostEvent event) {
  for (size_t i = 0; i < host_listeners_.size(); ++i) host_listeners_[i](host, event);
}

void Network::NotifyNic(NicId nic, bool up) {
  for (size_t i = 0; i < nic_listeners_.size(); ++i) nic_listeners_[i](nic, up);
}

// --- Flows and the data path ---

SimTime Network::SerializationTime(uint64_t wire_bytes, double rate_bps) {
  return static_cast<SimTime>(std::llround(static_cast<double>(wire_bytes) * 8e9 / rate_bps));
}

int64_t Network::SerializationPs(uint64_t wire_bytes, double rate_bps) {
  return static_cast<int64_t>(std::llround(static_cast<double>(wire_bytes) * 8e12 / rate_bps));
}

uint64_t Network::WireBytes(const Burst& burst) const {
  const uint64_t bytes =
      uint64_t{burst.payload_bytes} + uint64_t{burst.packets} * options_.packet_overhead_bytes;
  return std::max<uint64_t>(bytes, options_.control_packet_bytes);
}

FlowId Network::AddFlow(NicId src, BurstSource* source) {
  MC_CHECK(src >= 0 && src < num_nics() && source != nullptr);
  int32_t index;
  if (!free_flows_.empty()) {
    index = free_flows_.back();
    free_flows_.pop_back();
  } else {
    index = static_cast<int32_t>(flows_.size());
    flows_.emplace_back();
  }
  Flow& f = flows_[index];
  const uint32_t generation = f.generation + 1;
  f = Flow();
  f.src = src;
  f.source = source;
  f.generation = generation;
  f.live = true;
  return FlowId{index, generation};
}

Network::Flow* Network::LiveFlow(FlowId id) {
  if (id.index < 0 || id.index >= static_cast<int32_t>(flows_.size())) return nullptr;
  Flow& f = flows_[id.index];
  return (f.live && f.generation == id.generation) ? &f : nullptr;
}

Network::Pair* Network::GetPair(NicId src, NicId dst) {
  Pair& p = pairs_[{src, dst}];
  p.src = src;
  p.dst = dst;
  return &p;
}

void Network::SetFlowDestination(FlowId id, NicId dst) {
  Flow* f = LiveFlow(id);
  MC_CHECK(f != nullptr) << "no flow " << id.index;
  MC_CHECK(dst >= 0 && dst < num_nics()) << "no NIC " << dst;
  f->dst = dst;
  f->pair = GetPair(f->src, dst);
}

void Network::KickFlow(FlowId id) {
  Flow* f = LiveFlow(id);
  if (f == nullptr || f->dst == kNoId) return;
  if (!f->in_ring && !f->parked) {
    f->in_ring = true;
    nics_[f->src].ring.push_back(id);
  }
  ScheduleKick(f->src);
}

void Network::RemoveFlow(FlowId id) {
  Flow* f = LiveFlow(id);
  if (f == nullptr) return;
  // Stale copies in rings and parked lists carry the old generation and are skipped.
  f->live = false;
  f->source = nullptr;
  free_flows_.push_back(id.index);
}

uint64_t Network::WindowBytes(const Pair& pair) const {
  const Nic& src = nics_[pair.src];
  const uint64_t burst_wire =
      options_.max_burst_bytes +
      uint64_t{options_.packet_overhead_bytes} * (options_.max_burst_bytes / src.spec.mtu + 1);
  const double rtt = 2.0 * static_cast<double>(PathLatency(pair.src, pair.dst));
  const uint64_t bdp = static_cast<uint64_t>(src.spec.rate_bps / 8 * rtt / 1e9);
  return std::max<uint64_t>(uint64_t{options_.window_bursts} * burst_wire, 2 * bdp);
}

void Network::ScheduleKick(NicId nic) {
  Nic& n = nics_[nic];
  if (n.egress_busy || n.kick_pending) return;
  n.kick_pending = true;
  // Deferred so that a source's PullBurst never runs inside the caller's own call stack.
  sim_->Schedule(0, "net.kick", [this, nic] {
    nics_[nic].kick_pending = false;
    TryTransmit(nic);
  });
}

void Network::TryTransmit(NicId nic) {
  Nic& n = nics_[nic];
  if (n.egress_busy) return;
  while (!n.ring.empty()) {
    const FlowId id = n.ring.front();
    n.ring.pop_front();
    Flow* f = LiveFlow(id);
    if (f == nullptr) continue;
    f->in_ring = false;
    if (f->dst == kNoId) continue;
    if (f->pair->in_flight_bytes >= WindowBytes(*f->pair)) {
      f->parked = true;
      f->pair->parked.push_back(id);
      continue;
    }
    Burst burst;
    if (!f->source->PullBurst(&burst)) continue;
    MC_CHECK(burst.packets >= 1) << "a burst has at least one packet";
    Transmit(nic, id, burst);
    // Round-robin: the flow goes to the back and is asked again after the others.
    f = LiveFlow(id);
    if (f != nullptr && !f->in_ring && !f->parked) {
      f->in_ring = true;
      n.ring.push_back(id);
    }
    return;
  }
}

void Network::Transmit(NicId nic, FlowId flow_id, const Burst& burst) {
  Nic& src = nics_[nic];
  Flow& f = flows_[flow_id.index];
  uint32_t slot;
  if (!free_in_flight_.empty()) {
    slot = free_in_flight_.back();
    free_in_flight_.pop_back();
  } else {
    slot = static_cast<uint32_t>(in_flight_.size());
    in_flight_.emplace_back();
  }
  InFlight& x = in_flight_[slot];
  x = InFlight();
  x.flow = flow_id;
  x.src = nic;
  x.dst = f.dst;
  x.pair = f.pair;
  x.burst = burst;
  x.wire_bytes = WireBytes(burst);
  x.path_latency = PathLatency(nic, f.dst);
  x.src_incarnation = hosts_[src.host].incarnation;
  x.dst_incarnation = hosts_[nics_[f.dst].host].incarnation;
  if (!src.up) x.early_drop = DropCause::kSourceNicDown;
  if (!hosts_[src.host].alive) x.early_drop = DropCause::kHostDown;

  // Whole nanoseconds per burst, the rest carried to the next one: the port runs at its exact rate.
  const int64_t serialization_ps =
      src.egress_carry_ps + SerializationPs(x.wire_bytes, src.spec.rate_bps);
  const SimTime serialization = serialization_ps / 1000;
  src.egress_carry_ps = serialization_ps % 1000;
  x.egress_end = sim_->Now() + serialization;
  const SimTime first_packet = SerializationTime(x.wire_bytes / burst.packets, src.spec.rate_bps);
  SimTime arrive = sim_->Now() + first_packet + x.path_latency;
  arrive = std::max(arrive, x.pair->last_arrival);
  x.pair->last_arrival = arrive;
  x.pair->in_flight_bytes += x.wire_bytes;

  src.egress_busy = true;
  ++src.stats.tx_bursts;
  src.stats.tx_wire_bytes += x.wire_bytes;
  sim_->Schedule(serialization, "net.egress_done", [this, nic] {
    nics_[nic].egress_busy = false;
    TryTransmit(nic);
  });
  sim_->ScheduleAt(arrive, "net.arrive", [this, slot] { OnArrive(slot); });
}

void Network::OnArrive(uint32_t slot) {
  InFlight& x = in_flight_[slot];
  Nic& dst = nics_[x.dst];
  if (x.early_drop == DropCause::kNone) {
    if (!hosts_[dst.host].alive) {
      x.early_drop = DropCause::kHostDown;
    } else if (!dst.up) {
      x.early_drop = DropCause::kDestNicDown;
    }
  }
  SimTime deliver = sim_->Now();
  if (x.early_drop == DropCause::kNone) {
    // Ingress serialization in arrival order; the last packet cannot land before it left the
    // source and crossed the path.
    const int64_t start_ps = std::max(sim_->Now() * 1000, dst.ingress_free_at_ps);
    dst.ingress_free_at_ps = start_ps + SerializationPs(x.wire_bytes, dst.spec.rate_bps);
    const SimTime ingress_done = (dst.ingress_free_at_ps + 999) / 1000;
    const SimTime last_packet =
        SerializationTime(x.wire_bytes / x.burst.packets, dst.spec.rate_bps);
    deliver = std::max(ingress_done, x.egress_end + x.path_latency + last_packet);
  }
  deliver = std::max(deliver, x.pair->last_delivery);
  x.pair->last_delivery = deliver;
  sim_->ScheduleAt(deliver, "net.deliver", [this, slot] { OnDeliver(slot); });
}

uint32_t Network::DrawDeliveredPackets(NicId src, NicId dst, uint32_t packets) {
  const double survive = (1.0 - nics_[src].loss) * (1.0 - nics_[dst].loss);
  if (survive >= 1.0) return packets;  // no loss configured: no draw, so the rng is untouched
  if (survive <= 0.0) return 0;
  // Index of the first lost packet, geometric: P(index >= k) = survive^k.
  const double u = 1.0 - sim_->rng().UniformDouble();  // (0, 1]
  const double index = std::floor(std::log(u) / std::log(survive));
  return index >= packets ? packets : static_cast<uint32_t>(index);
}

void Network::OnDeliver(uint32_t slot) {
  const InFlight x = in_flight_[slot];
  free_in_flight_.push_back(slot);

  Nic& src = nics_[x.src];
  Nic& dst = nics_[x.dst];
  DropCause cause = x.early_drop;
  if (cause == DropCause::kNone) {
    if (hosts_[src.host].incarnation != x.src_incarnation || !hosts_[src.host].alive ||
        hosts_[dst.host].incarnation != x.dst_incarnation || !hosts_[dst.host].alive) {
      cause = DropCause::kHostDown;
    } else if (!src.up) {
      cause = DropCause::kSourceNicDown;
    } else if (!dst.up) {
      cause = DropCause::kDestNicDown;
    }
  }
  Delivery delivery;
  if (cause == DropCause::kNone) {
    delivery.packets_delivered = DrawDeliveredPackets(x.src, x.dst, x.burst.packets);
    if (delivery.packets_delivered < x.burst.packets) cause = DropCause::kLinkLoss;
  }
  delivery.cause = cause;
  if (cause != DropCause::kNone) ++src.stats.lost_bursts;
  if (delivery.packets_delivered > 0) {
    ++dst.stats.rx_bursts;
    dst.stats.rx_payload_bytes +=
        uint64_t{x.burst.payload_bytes} * delivery.packets_delivered / x.burst.packets;
  }
  sim_->Trace(delivery.packets_delivered);

  x.pair->in_flight_bytes -= x.wire_bytes;
  Unpark(x.pair);

  Flow* f = LiveFlow(x.flow);
  if (f != nullptr) f->source->OnDelivery(x.burst, delivery);
}

void Network::Unpark(Pair* pair) {
  if (pair->parked.empty() || pair->in_flight_bytes >= WindowBytes(*pair)) return;
  bool any = false;
  while (!pair->parked.empty()) {
    const FlowId id = pair->parked.front();
    pair->parked.pop_front();
    Flow* f = LiveFlow(id);
    if (f == nullptr || !f->parked) continue;
    f->parked = false;
    if (!f->in_ring) {
      f->in_ring = true;
      nics_[f->src].ring.push_back(id);
      any = true;
    }
  }
  if (any) ScheduleKick(pair->src);
}

}  // namespace sim
