#include "sim/verbs/verbs_lab.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <map>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "mooncake/common/logging.h"
#include "mooncake/net/socket_util.h"
#include "mooncake/transfer/rdma/ib_verbs.h"
#include "sim/verbs/verbs_test_util.h"
#include "sim/verbs/world.h"

namespace sim {
namespace {

constexpr int kRails = 2;
constexpr int kAllAccess =
    IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_READ | IBV_ACCESS_REMOTE_WRITE;

std::string GidHex(const ibv_gid& g) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(g.raw), 16));
}

bool GidFromHex(absl::string_view hex, ibv_gid* g) {
  std::string raw = absl::HexStringToBytes(hex);
  if (raw.size() != 16) return false;
  memcpy(g->raw, raw.data(), 16);
  return true;
}

// ResponderCore is the responder side on any Verbs: the SimLab calls it directly, RunResponder
// serves it to a requester in another guest.
class ResponderCore final : public Responder {
 public:
  explicit ResponderCore(mooncake::Verbs* verbs) : verbs_(verbs) {
    for (int rail = 0; rail < kRails; ++rail) {
      ends_[rail] = testing::OpenEnd(verbs, absl::StrCat("erdma_", rail));
    }
  }
  ~ResponderCore() override {
    for (auto& [qpn, qp] : qps_) verbs_->DestroyQp(qp).IgnoreError();
    for (auto& [id, m] : mrs_) {
      verbs_->DeregMr(m.mr).IgnoreError();
      free(m.memory);
    }
  }

  absl::StatusOr<RemoteMr> RegisterMemory(int rail, uint64_t length, int access) override {
    if (rail < 0 || rail >= kRails) return absl::InvalidArgumentError("no such rail");
    void* memory = aligned_alloc(4096, (length + 4095) / 4096 * 4096);
    if (memory == nullptr) return absl::ResourceExhaustedError("out of memory");
    for (uint64_t i = 0; i < length; ++i) static_cast<char*>(memory)[i] = ResponderByte(i);
    absl::StatusOr<ibv_mr*> mr = verbs_->RegMr(ends_[rail].pd, memory, length, access);
    if (!mr.ok()) {
      free(memory);
      return mr.status();
    }
    const int id = next_mr_++;
    mrs_[id] = Mr{*mr, memory, length};
    return RemoteMr{id, reinterpret_cast<uint64_t>(memory), (*mr)->rkey, length};
  }

  absl::StatusOr<RemoteQp> Connect(const QpRequest& r) override {
    if (r.rail < 0 || r.rail >= kRails) return absl::InvalidArgumentError("no such rail");
    const testing::RcEnd& end = ends_[r.rail];
    ibv_qp* qp = testing::CreateQp(end);
    testing::ConnectOptions o;
    o.mtu = r.mtu;
    o.gid_index = r.gid_index;
    const uint32_t psn = next_psn_;
    next_psn_ += 1000;
    absl::Status s = testing::ToInit(verbs_, qp, kAllAccess);
    if (s.ok()) s = testing::ToRtr(verbs_, qp, r.gid, r.qpn, r.psn, o);
    if (s.ok()) s = testing::ToRts(verbs_, qp, psn, o);
    absl::StatusOr<ibv_gid> gid = verbs_->QueryGid(end.context, 1, r.gid_index);
    if (s.ok() && !gid.ok()) s = gid.status();
    if (!s.ok()) {
      verbs_->DestroyQp(qp).IgnoreError();
      return s;
    }
    qps_[qp->qp_num] = qp;
    return RemoteQp{qp->qp_num, psn, *gid};
  }

  absl::StatusOr<std::string> Read(int mr, uint64_t offset, uint64_t length) override {
    auto it = mrs_.find(mr);
    if (it == mrs_.end() || offset > it->second.length || length > it->second.length - offset) {
      return absl::InvalidArgumentError("no such range");
    }
    return std::string(static_cast<char*>(it->second.memory) + offset, length);
  }

  absl::Status KillQp(uint32_t qpn) override {
    auto it = qps_.find(qpn);
    if (it == qps_.end()) return absl::NotFoundError("no such QP");
    absl::Status s = verbs_->DestroyQp(it->second);
    qps_.erase(it);
    return s;
  }

 private:
  struct Mr {
    ibv_mr* mr;
    void* memory;
    uint64_t length;
  };
  mooncake::Verbs* const verbs_;
  testing::RcEnd ends_[kRails];
  std::map<int, Mr> mrs_;
  std::map<uint32_t, ibv_qp*> qps_;
  int next_mr_ = 1;
  uint32_t next_psn_ = 5000;
};

class SimLab final : public VerbsLab {
 public:
  SimLab() : world_(WorldOptionsWithCopies()) {
    requester_ = world_.AddHost("requester", {"erdma_0", "erdma_1"});
    const HostId responder = world_.AddHost("responder", {"erdma_0", "erdma_1"});
    responder_ = std::make_unique<ResponderCore>(world_.verbs(responder));
  }
  const char* name() const override { return "SimVerbs"; }
  mooncake::Verbs* verbs() override { return world_.verbs(requester_); }
  std::string device(int rail) const override { return absl::StrCat("erdma_", rail); }
  Responder* responder() override { return responder_.get(); }
  std::vector<ibv_wc> WaitForCompletions(ibv_cq* cq, size_t count,
                                         absl::Duration timeout) override {
    std::vector<ibv_wc> out;
    world_.RunFor(
        [&] {
          ibv_wc wc[16];
          for (int n; (n = verbs()->PollCq(cq, 16, wc)) > 0;) out.insert(out.end(), wc, wc + n);
          return out.size() >= count;
        },
        absl::ToInt64Nanoseconds(timeout));
    return out;
  }
  absl::Status SetLinkUp(int rail, bool up) override {
    world_.network().SetNicUp(world_.network().FindNic(requester_, device(rail)), up);
    return absl::OkStatus();
  }

 private:
  static WorldOptions WorldOptionsWithCopies() {
    WorldOptions o;
    o.seed = 5;
    o.verbs.copy_data = true;
    o.verbs.local_port_down = SimVerbsOptions::LocalPortDown::kFailAtSend;  // as rxe
    return o;
  }
  World world_;
  HostId requester_ = kNoId;
  std::unique_ptr<ResponderCore> responder_;
};

// Line protocol between the requester and RunResponder: one request line, one reply line
// ("OK ..." or "ERR message").
class LineChannel {
 public:
  explicit LineChannel(int fd) : fd_(fd) {}
  ~LineChannel() { close(fd_); }
  absl::Status Send(const std::string& line) {
    std::string out = line + "\n";
    return mooncake::SendAll(fd_, out.data(), out.size());
  }
  absl::StatusOr<std::string> Receive() {
    std::string line;
    char c;
    for (;;) {
      ssize_t n = recv(fd_, &c, 1, 0);
      if (n <= 0) return absl::UnavailableError("peer closed the lab connection");
      if (c == '\n') return line;
      line.push_back(c);
    }
  }

 private:
  const int fd_;
};

class RemoteResponder final : public Responder {
 public:
  explicit RemoteResponder(int fd) : channel_(fd) {}
  ~RemoteResponder() override {
    channel_.Send("BYE").IgnoreError();
    channel_.Receive().IgnoreError();
  }
  absl::StatusOr<RemoteMr> RegisterMemory(int rail, uint64_t length, int access) override {
    absl::StatusOr<std::vector<std::string>> r =
        Call(absl::StrCat("MR ", rail, " ", length, " ", access));
    if (!r.ok()) return r.status();
    RemoteMr m;
    m.length = length;
    if (r->size() != 3 || !absl::SimpleAtoi((*r)[0], &m.id) ||
        !absl::SimpleAtoi((*r)[1], &m.addr) || !absl::SimpleAtoi((*r)[2], &m.rkey)) {
      return absl::DataLossError("malformed MR reply");
    }
    return m;
  }
  absl::StatusOr<RemoteQp> Connect(const QpRequest& q) override {
    absl::StatusOr<std::vector<std::string>> r =
        Call(absl::StrCat("QP ", q.rail, " ", q.qpn, " ", q.psn, " ", GidHex(q.gid), " ",
                          static_cast<int>(q.mtu), " ", q.gid_index));
    if (!r.ok()) return r.status();
    RemoteQp qp;
    if (r->size() != 3 || !absl::SimpleAtoi((*r)[0], &qp.qpn) ||
        !absl::SimpleAtoi((*r)[1], &qp.psn) || !GidFromHex((*r)[2], &qp.gid)) {
      return absl::DataLossError("malformed QP reply");
    }
    return qp;
  }
  absl::StatusOr<std::string> Read(int mr, uint64_t offset, uint64_t length) override {
    absl::StatusOr<std::vector<std::string>> r =
        Call(absl::StrCat("READ ", mr, " ", offset, " ", length));
    if (!r.ok()) return r.status();
    if (r->size() != 1) return absl::DataLossError("malformed READ reply");
    return absl::HexStringToBytes((*r)[0]);
  }
  absl::Status KillQp(uint32_t qpn) override { return Call(absl::StrCat("KILL ", qpn)).status(); }

 private:
  absl::StatusOr<std::vector<std::string>> Call(const std::string& request) {
    if (absl::Status s = channel_.Send(request); !s.ok()) return s;
    absl::StatusOr<std::string> reply = channel_.Receive();
    if (!reply.ok()) return reply.status();
    if (absl::StartsWith(*reply, "ERR ")) return absl::InternalError(reply->substr(4));
    if (!absl::StartsWith(*reply, "OK")) return absl::DataLossError(*reply);
    std::vector<std::string> words = absl::StrSplit(reply->substr(2), ' ', absl::SkipEmpty());
    return words;
  }
  LineChannel channel_;
};

class RxeLab final : public VerbsLab {
 public:
  explicit RxeLab(int fd) : responder_(std::make_unique<RemoteResponder>(fd)) {}
  const char* name() const override { return "IbVerbs on rxe"; }
  mooncake::Verbs* verbs() override { return &verbs_; }
  std::string device(int rail) const override { return absl::StrCat("erdma_", rail); }
  Responder* responder() override { return responder_.get(); }
  std::vector<ibv_wc> WaitForCompletions(ibv_cq* cq, size_t count,
                                         absl::Duration timeout) override {
    std::vector<ibv_wc> out;
    const absl::Time deadline = absl::Now() + timeout;
    while (out.size() < count && absl::Now() < deadline) {
      ibv_wc wc[16];
      int n = verbs_.PollCq(cq, 16, wc);
      if (n > 0) {
        out.insert(out.end(), wc, wc + n);
      } else {
        absl::SleepFor(absl::Milliseconds(1));
      }
    }
    return out;
  }
  absl::Status SetLinkUp(int rail, bool up) override {
    // tools/roce_vm names each rail's netdev in ROCE_NETDEV<rail>.
    const char* netdev = std::getenv(absl::StrCat("ROCE_NETDEV", rail).c_str());
    if (netdev == nullptr) return absl::FailedPreconditionError("ROCE_NETDEV<rail> is not set");
    const std::string cmd = absl::StrCat("ip link set ", netdev, up ? " up" : " down");
    if (std::system(cmd.c_str()) != 0) return absl::InternalError(absl::StrCat(cmd, " failed"));
    auto context = verbs_.OpenDevice(device(rail));
    if (!context.ok()) return context.status();
    std::string last = "no port state";
    bool done = false;
    for (const absl::Time deadline = absl::Now() + absl::Seconds(20);
         !done && absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(50))) {
      auto port = verbs_.QueryPort(*context, 1);
      if (!port.ok()) {
        last = port.status().ToString();
        continue;
      }
      last = absl::StrCat("port state ", port->state);
      if (!up) {
        done = port->state != IBV_PORT_ACTIVE;
        continue;
      }
      if (port->state != IBV_PORT_ACTIVE) continue;
      auto gid = verbs_.QueryGid(*context, 1, 1);
      if (!gid.ok() || gid->raw[10] != 0xff || gid->raw[11] != 0xff) {
        last = "no IPv4 GID at index 1";
        continue;
      }
      last = PeersResolved(rail);
      done = last.empty();
    }
    absl::Status result =
        done ? absl::OkStatus()
             : absl::DeadlineExceededError(
                   absl::StrCat(device(rail), " not ", up ? "up" : "down", " after 20 s: ", last));
    verbs_.CloseDevice(*context).IgnoreError();
    return result;
  }

 private:
  // PeersResolved pokes every other guest's address on `rail` (ROCE_PEER<j>_IP<rail> but not
  // ROCE_IP<rail>) with a UDP
  // datagram and returns "" once the kernel's ARP table has them all (until then rxe cannot bring
  // a QP to RTR: its neighbour lookup times out), else what is missing.
  static std::string PeersResolved(int rail) {
    std::string arp;
    if (FILE* f = fopen("/proc/net/arp", "r")) {
      char buf[4096];
      for (size_t n; (n = fread(buf, 1, sizeof(buf), f)) > 0;) arp.append(buf, n);
      fclose(f);
    }
    std::string missing;
    const char* self = std::getenv(absl::StrCat("ROCE_IP", rail).c_str());
    for (int j = 0; j < 16; ++j) {
      const char* ip = std::getenv(absl::StrCat("ROCE_PEER", j, "_IP", rail).c_str());
      if (ip == nullptr || (self != nullptr && strcmp(ip, self) == 0)) continue;
      bool complete = false;
      for (absl::string_view line : absl::StrSplit(arp, '\n')) {
        std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
        if (f.size() >= 3 && f[0] == ip && f[2] == "0x2") complete = true;
      }
      if (complete) continue;
      absl::StrAppend(&missing, missing.empty() ? "no ARP entry for " : ", ", ip);
      int fd = socket(AF_INET, SOCK_DGRAM, 0);
      sockaddr_in to{};
      to.sin_family = AF_INET;
      to.sin_port = htons(9);  // discard
      if (fd >= 0 && inet_pton(AF_INET, ip, &to.sin_addr) == 1) {
        sendto(fd, "", 0, 0, reinterpret_cast<sockaddr*>(&to), sizeof(to));
      }
      if (fd >= 0) close(fd);
    }
    return missing;
  }

  mooncake::IbVerbs verbs_;
  std::unique_ptr<RemoteResponder> responder_;
};

}  // namespace

std::unique_ptr<VerbsLab> NewSimLab() { return std::make_unique<SimLab>(); }

absl::StatusOr<std::unique_ptr<VerbsLab>> NewRxeLab(const std::string& host, int port) {
  absl::StatusOr<int> fd;
  for (int i = 0; i < 600; ++i) {  // the responder guest may still be booting
    fd = mooncake::ConnectTcp(host, port, absl::Seconds(1));
    if (fd.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (!fd.ok()) return fd.status();
  return std::unique_ptr<VerbsLab>(new RxeLab(*fd));
}

bool ServeOne(int fd, ResponderCore* core);

int RunResponder(int port) {
  int bound = 0;
  absl::StatusOr<int> listener = mooncake::ListenTcp("0.0.0.0", port, &bound);
  if (!listener.ok()) {
    MC_LOG(ERROR) << "responder: " << listener.status();
    return 1;
  }
  mooncake::IbVerbs verbs;
  ResponderCore core(&verbs);
  MC_LOG(INFO) << "responder: serving on port " << bound;
  for (;;) {
    // One requester connection at a time (one per test); SHUTDOWN ends the responder, and so does
    // two minutes without a requester.
    pollfd p{*listener, POLLIN, 0};
    if (poll(&p, 1, 120'000) <= 0) {
      MC_LOG(ERROR) << "responder: no requester for two minutes; giving up";
      return 1;
    }
    int fd = accept(*listener, nullptr, nullptr);
    if (fd < 0) return 1;
    if (ServeOne(fd, &core)) return 0;
  }
}

bool ServeOne(int fd, ResponderCore* core_ptr) {
  ResponderCore& core = *core_ptr;
  LineChannel channel(fd);
  for (;;) {
    absl::StatusOr<std::string> line = channel.Receive();
    if (!line.ok()) return false;
    std::vector<std::string> w = absl::StrSplit(*line, ' ', absl::SkipEmpty());
    std::string reply;
    auto fail = [](const absl::Status& s) { return absl::StrCat("ERR ", s.ToString()); };
    if (w.empty()) {
      reply = "ERR empty request";
    } else if (w[0] == "BYE" || w[0] == "SHUTDOWN") {
      channel.Send("OK").IgnoreError();
      return w[0] == "SHUTDOWN";
    } else if (w[0] == "MR" && w.size() == 4) {
      int rail = 0, access = 0;
      uint64_t length = 0;
      absl::SimpleAtoi(w[1], &rail);
      absl::SimpleAtoi(w[2], &length);
      absl::SimpleAtoi(w[3], &access);
      auto mr = core.RegisterMemory(rail, length, access);
      reply =
          mr.ok() ? absl::StrCat("OK ", mr->id, " ", mr->addr, " ", mr->rkey) : fail(mr.status());
    } else if (w[0] == "QP" && w.size() == 7) {
      QpRequest q;
      int mtu = 0;
      absl::SimpleAtoi(w[1], &q.rail);
      absl::SimpleAtoi(w[2], &q.qpn);
      absl::SimpleAtoi(w[3], &q.psn);
      GidFromHex(w[4], &q.gid);
      absl::SimpleAtoi(w[5], &mtu);
      q.mtu = static_cast<ibv_mtu>(mtu);
      absl::SimpleAtoi(w[6], &q.gid_index);
      auto qp = core.Connect(q);
      reply = qp.ok() ? absl::StrCat("OK ", qp->qpn, " ", qp->psn, " ", GidHex(qp->gid))
                      : fail(qp.status());
    } else if (w[0] == "READ" && w.size() == 4) {
      int mr = 0;
      uint64_t offset = 0, length = 0;
      absl::SimpleAtoi(w[1], &mr);
      absl::SimpleAtoi(w[2], &offset);
      absl::SimpleAtoi(w[3], &length);
      auto bytes = core.Read(mr, offset, length);
      reply =
          bytes.ok() ? absl::StrCat("OK ", absl::BytesToHexString(*bytes)) : fail(bytes.status());
    } else if (w[0] == "KILL" && w.size() == 2) {
      uint32_t qpn = 0;
      absl::SimpleAtoi(w[1], &qpn);
      absl::Status s = core.KillQp(qpn);
      reply = s.ok() ? "OK" : fail(s);
    } else {
      reply = absl::StrCat("ERR unknown request: ", *line);
    }
    if (!channel.Send(reply).ok()) return false;
  }
}

absl::Status ShutdownResponder(const std::string& host, int port) {
  absl::StatusOr<int> fd = mooncake::ConnectTcp(host, port, absl::Seconds(5));
  if (!fd.ok()) return fd.status();
  LineChannel channel(*fd);
  if (absl::Status s = channel.Send("SHUTDOWN"); !s.ok()) return s;
  return channel.Receive().status();
}

}  // namespace sim
