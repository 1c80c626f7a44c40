#include "mooncake/standalone/standalone_server.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/master_wire.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {

struct StandaloneServer::Region {
  StandaloneServer* server = nullptr;
  char* base = nullptr;
  uint64_t length = 0;
  ~Region() {
    server->store_->UnregisterBuffer(base).IgnoreError();
    munmap(base, length);
    server->region_count_.fetch_sub(1);
    server->mapped_bytes_.fetch_sub(length);
  }
};

struct StandaloneServer::Connection {
  std::map<uint64_t, std::shared_ptr<Region>> regions;
  uint64_t next_region = 1;
};

namespace {

// Only this process's uid (or root) may use the store through us.
bool SameUser(int fd) {
  ucred cred;
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == getuid() || cred.uid == 0;
}

std::string StatusOnly(int32_t status) {
  WireWriter w;
  w.I32(status);
  return std::move(w.buf());
}

}  // namespace

StandaloneServer::StandaloneServer(StoreApi* store, int max_connections)
    : store_(store),
      server_(
          "standalone", max_connections, [this](int fd) { Serve(fd); },
          [this](int fd) {
            if (SameUser(fd)) return true;
            refused_.fetch_add(1);
            MC_LOG(WARNING) << "standalone: refused a connection from another user";
            return false;
          }) {}

StandaloneServer::~StandaloneServer() { Stop(); }

absl::Status StandaloneServer::Start(const std::string& socket_name) {
  absl::StatusOr<int> fd = ListenUnixAbstract(socket_name);
  if (!fd.ok()) return fd.status();
  return server_.StartOn(*fd);
}

void StandaloneServer::Stop() { server_.Stop(); }

StandaloneServerStats StandaloneServer::GetStats() const {
  StandaloneServerStats s;
  s.connections = connections_.load();
  s.refused_connections = refused_.load();
  s.calls = calls_.load();
  s.bad_requests = bad_requests_.load();
  s.regions = region_count_.load();
  s.mapped_bytes = mapped_bytes_.load();
  return s;
}

void StandaloneServer::Serve(int fd) {
  connections_.fetch_add(1);
  Connection conn;
  while (!server_.stopping()) {
    StandaloneOp op;
    std::string payload;
    int received_fd = -1;
    absl::Status s = ReadFrame(fd, kMaxStandaloneRequestBytes, &op, &payload, &received_fd);
    if (!s.ok()) {
      if (received_fd >= 0) close(received_fd);
      if (absl::IsInvalidArgument(s) || ToErrorCode(s) == ErrorCode::INVALID_PARAMS) {
        bad_requests_.fetch_add(1);
        MC_LOG(WARNING) << "standalone: closing a connection: " << s.message();
      }
      break;
    }
    std::string reply;
    const bool ok = Handle(conn, op, payload, received_fd, &reply);
    if (received_fd >= 0) close(received_fd);
    if (!ok) {
      bad_requests_.fetch_add(1);
      MC_LOG(WARNING) << "standalone: closing a connection after a malformed request (op "
                      << static_cast<int>(op) << ", " << payload.size() << " bytes)";
      break;
    }
    calls_.fetch_add(1);
    if (!WriteFrame(fd, op, reply).ok()) break;
  }
  // conn's regions are released here: no call of this connection is in flight.
}

absl::StatusOr<std::shared_ptr<StandaloneServer::Region>> StandaloneServer::MapRegion(
    int fd, uint64_t length) {
  struct stat st;
  if (fstat(fd, &st) != 0) return MakeError(ErrorCode::INVALID_PARAMS, "fstat of the memfd");
  const int seals = fcntl(fd, F_GET_SEALS);
  if (seals < 0 || (seals & F_SEAL_SHRINK) == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     "region refused: its memfd is not sealed against shrinking");
  }
  if (length == 0 || static_cast<uint64_t>(st.st_size) < length) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     absl::StrCat("region of ", length, " bytes but the memfd has ", st.st_size));
  }
  absl::MutexLock lock(&mu_);
  auto key = std::make_pair(st.st_dev, st.st_ino);
  auto it = regions_.find(key);
  if (it != regions_.end()) {
    std::shared_ptr<Region> existing = it->second.lock();
    if (existing != nullptr && existing->length >= length) return existing;
  }
  void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (p == MAP_FAILED) {
    return MakeError(
        ErrorCode::NO_AVAILABLE_HANDLE,
        absl::StrCat("mmap of a ", FormatByteSize(length), " region: ", std::strerror(errno)));
  }
  if (absl::Status s = store_->RegisterBuffer(p, length); !s.ok()) {
    munmap(p, length);
    return s;
  }
  auto region = std::make_shared<Region>();
  region->server = this;
  region->base = static_cast<char*>(p);
  region->length = length;
  region_count_.fetch_add(1);
  mapped_bytes_.fetch_add(length);
  regions_[key] = region;
  // Drop expired entries now and then, so the map does not grow with every freed block.
  for (auto e = regions_.begin(); e != regions_.end();) {
    e = e->second.expired() ? regions_.erase(e) : std::next(e);
  }
  return region;
}

bool StandaloneServer::Translate(const Connection& conn, const KeyPieces& key,
                                 std::vector<BufferRef>* out) const {
  out->clear();
  if (key.pieces.empty()) return false;
  for (const Piece& p : key.pieces) {
    auto it = conn.regions.find(p.region);
    if (it == conn.regions.end()) return false;
    const Region& r = *it->second;
    if (p.length == 0 || p.offset > r.length || p.length > r.length - p.offset) return false;
    out->push_back({r.base + p.offset, p.length});
  }
  return true;
}

bool StandaloneServer::Handle(Connection& conn, StandaloneOp op, absl::string_view payload,
                              int received_fd, std::string* reply) {
  WireReader r(payload);
  WireWriter w;
  auto codes = [&w](const auto& values) {
    w.I32(0);
    w.U32(static_cast<uint32_t>(values.size()));
    for (auto v : values) w.I64(static_cast<int64_t>(v));
  };
  switch (op) {
    case StandaloneOp::kHello: {
      r.U32();  // the client's pid, for logs
      if (!r.ok()) return false;
      w.I32(0);
      w.Str(store_->hostname());
      w.U32(static_cast<uint32_t>(getpid()));
      break;
    }
    case StandaloneOp::kMap: {
      const uint64_t length = r.U64();
      if (!r.ok() || received_fd < 0) return false;
      if (conn.regions.size() >= kMaxRegionsPerConnection) {
        *reply = StatusOnly(static_cast<int32_t>(ErrorCode::INVALID_PARAMS));
        return true;
      }
      absl::StatusOr<std::shared_ptr<Region>> region = MapRegion(received_fd, length);
      if (!region.ok()) {
        MC_LOG(WARNING) << "standalone: " << region.status().message();
        *reply = StatusOnly(ToPythonCode(region.status()));
        return true;
      }
      const uint64_t id = conn.next_region++;
      conn.regions[id] = *std::move(region);
      w.I32(0);
      w.U64(id);
      break;
    }
    case StandaloneOp::kUnmap: {
      const uint64_t id = r.U64();
      if (!r.ok()) return false;
      conn.regions.erase(id);
      w.I32(0);
      break;
    }
    case StandaloneOp::kExist: {
      std::vector<std::string> keys;
      if (!DecodeKeys(r, &keys)) return false;
      codes(store_->BatchIsExist(keys));
      break;
    }
    case StandaloneOp::kPut:
    case StandaloneOp::kGet: {
      ReplicateConfig config;
      if (op == StandaloneOp::kPut) config = DecodeReplicateConfig(r);
      std::vector<KeyPieces> keys;
      if (!DecodeKeyPieces(r, &keys)) return false;
      // Keys with bad pieces fail alone; the rest go to the store as one batch.
      std::vector<int64_t> out(keys.size(), static_cast<int64_t>(ErrorCode::INVALID_PARAMS));
      std::vector<std::string> valid_keys;
      std::vector<std::vector<BufferRef>> buffers;
      std::vector<size_t> index;
      std::vector<BufferRef> refs;
      for (size_t i = 0; i < keys.size(); ++i) {
        if (!Translate(conn, keys[i], &refs)) continue;
        valid_keys.push_back(std::move(keys[i].key));
        buffers.push_back(refs);
        index.push_back(i);
      }
      if (!valid_keys.empty()) {
        if (op == StandaloneOp::kPut) {
          std::vector<int> rc = store_->BatchPut(valid_keys, buffers, config);
          for (size_t j = 0; j < index.size() && j < rc.size(); ++j) out[index[j]] = rc[j];
        } else {
          std::vector<int64_t> rc = store_->BatchGet(valid_keys, buffers);
          for (size_t j = 0; j < index.size() && j < rc.size(); ++j) out[index[j]] = rc[j];
        }
      }
      codes(out);
      break;
    }
    case StandaloneOp::kSize: {
      std::string key(r.Str());
      if (!r.ok()) return false;
      w.I32(0);
      w.I64(store_->GetSize(key));
      break;
    }
    case StandaloneOp::kRemove: {
      std::vector<std::string> keys;
      if (!DecodeKeys(r, &keys)) return false;
      const bool force = r.U8() != 0;
      if (!r.ok()) return false;
      codes(store_->BatchRemove(keys, force));
      break;
    }
    case StandaloneOp::kRemoveRegex: {
      std::string regex(r.Str());
      const bool force = r.U8() != 0;
      if (!r.ok()) return false;
      w.I32(0);
      w.I64(store_->RemoveByRegex(regex, force));
      break;
    }
    case StandaloneOp::kRemoveAll: {
      const bool force = r.U8() != 0;
      if (!r.ok()) return false;
      w.I32(0);
      w.I64(store_->RemoveAll(force));
      break;
    }
    case StandaloneOp::kReplicas: {
      std::vector<std::string> keys;
      if (!DecodeKeys(r, &keys)) return false;
      w.I32(0);
      EncodeObjectReplicas(store_->BatchGetReplicas(keys), w);
      break;
    }
    case StandaloneOp::kHealth:
      w.I32(0);
      w.I32(static_cast<int32_t>(store_->HealthCheck()));
      break;
    default:
      return false;
  }
  *reply = std::move(w.buf());
  return true;
}

}  // namespace mooncake
