#include "mooncake/standalone/standalone_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/master_wire.h"
#include "mooncake/net/socket_util.h"

namespace mooncake {

struct StandaloneClient::Conn {
  int fd = -1;
  bool broken = false;
  std::map<uint64_t, uint64_t> regions;   // HostBlock id -> region id on this connection
  uint64_t freed_seen = 0;                // HostBlocksFreed() when `regions` was last checked
  HostMemAllocator* allocator = nullptr;  // owns `staging`
  char* staging = nullptr;                // allocated on first use
  ~Conn() {
    if (fd >= 0) close(fd);
    if (staging != nullptr) allocator->Free(staging).IgnoreError();
  }
};

// Lease holds one connection for one call (and counts the call, so Close can wait for it).
class StandaloneClient::Lease {
 public:
  explicit Lease(StandaloneClient* client) : client_(client) {
    absl::MutexLock lock(&client_->mu_);
    auto can_go = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(client_->mu_) {
      return client_->closed_ || !client_->idle_.empty() ||
             client_->open_ < client_->options_.max_connections;
    };
    client_->mu_.Await(absl::Condition(&can_go));
    if (client_->closed_) {
      status_ = MakeError(ErrorCode::INVALID_PARAMS, "the store is closed");
      return;
    }
    ++client_->in_flight_;
    counted_ = true;
    // An idle connection whose server hung up (killed, restarted) is dropped here, not used.
    while (!client_->idle_.empty()) {
      std::unique_ptr<Conn> c = std::move(client_->idle_.back());
      client_->idle_.pop_back();
      pollfd p{c->fd, POLLIN | POLLRDHUP, 0};
      if (poll(&p, 1, 0) == 0) {
        conn_ = std::move(c);
        return;
      }
      --client_->open_;
    }
    ++client_->open_;  // reserved; Open runs without the lock
    client_->mu_.Unlock();
    absl::StatusOr<std::unique_ptr<Conn>> opened = client_->Open();
    client_->mu_.Lock();
    if (opened.ok()) {
      conn_ = *std::move(opened);
    } else {
      --client_->open_;
      status_ = opened.status();
    }
  }
  ~Lease() {
    absl::MutexLock lock(&client_->mu_);
    if (conn_ != nullptr) {
      if (conn_->broken || client_->closed_) {
        conn_.reset();
        --client_->open_;
      } else {
        client_->idle_.push_back(std::move(conn_));
      }
    }
    if (counted_) --client_->in_flight_;
  }
  const absl::Status& status() const { return status_; }
  Conn& conn() { return *conn_; }

 private:
  StandaloneClient* const client_;
  std::unique_ptr<Conn> conn_;
  absl::Status status_;
  bool counted_ = false;
};

StandaloneClient::StandaloneClient(StandaloneClientOptions options, std::string socket_name)
    : options_(std::move(options)), socket_name_(std::move(socket_name)) {}

StandaloneClient::~StandaloneClient() { Close().IgnoreError(); }

absl::StatusOr<std::unique_ptr<StandaloneClient>> StandaloneClient::Connect(
    StandaloneClientOptions options) {
  absl::StatusOr<std::string> name = StandaloneSocketName(options.address);
  if (!name.ok()) return name.status();
  if (options.staging_bytes < (1u << 20)) options.staging_bytes = 1u << 20;
  if (options.max_connections < 1) options.max_connections = 1;
  std::unique_ptr<StandaloneClient> client(new StandaloneClient(std::move(options), *name));
  absl::StatusOr<std::unique_ptr<Conn>> first = client->Open();
  if (!first.ok()) return first.status();
  absl::MutexLock lock(&client->mu_);
  client->idle_.push_back(*std::move(first));
  client->open_ = 1;
  return client;
}

absl::StatusOr<std::unique_ptr<StandaloneClient::Conn>> StandaloneClient::Open() {
  absl::StatusOr<int> fd = ConnectUnixAbstract(socket_name_);
  if (!fd.ok()) {
    return MakeError(
        ErrorCode::RPC_FAIL,
        absl::StrCat("no storage process (mooncake_client) answers at ", options_.address,
                     " on this host (@", socket_name_, "): ", fd.status().message()));
  }
  auto conn = std::make_unique<Conn>();
  conn->fd = *fd;
  conn->allocator = &staging_allocator_;
  conn->freed_seen = HostBlocksFreed();
  timeval tv;
  const int64_t us = absl::ToInt64Microseconds(options_.call_timeout);
  tv.tv_sec = us / 1000000;
  tv.tv_usec = us % 1000000;
  setsockopt(conn->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(conn->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  WireWriter w;
  w.U32(static_cast<uint32_t>(getpid()));
  absl::StatusOr<std::string> reply = Call(*conn, StandaloneOp::kHello, w.buf());
  if (!reply.ok()) return reply.status();
  WireReader r(*reply);
  std::string hostname(r.Str());
  if (!r.ok()) return MakeError(ErrorCode::RPC_FAIL, "malformed hello reply");
  absl::MutexLock lock(&mu_);
  hostname_ = std::move(hostname);
  return conn;
}

absl::StatusOr<std::string> StandaloneClient::Call(Conn& conn, StandaloneOp op,
                                                   absl::string_view payload, int pass_fd) {
  auto fail = [&](const absl::Status& s) {
    conn.broken = true;
    const int err = SocketErrno(s);
    const bool timeout = err == EAGAIN || err == EWOULDBLOCK;
    return MakeError(timeout ? ErrorCode::RPC_TIMEOUT : ErrorCode::RPC_FAIL,
                     absl::StrCat("storage process at ", options_.address, ": ", s.message()));
  };
  if (absl::Status s = WriteFrame(conn.fd, op, payload, pass_fd); !s.ok()) return fail(s);
  StandaloneOp reply_op;
  std::string reply;
  int stray_fd = -1;
  absl::Status s = ReadFrame(conn.fd, kMaxStandaloneRequestBytes, &reply_op, &reply, &stray_fd);
  if (stray_fd >= 0) close(stray_fd);
  if (!s.ok()) return fail(s);
  if (reply_op != op) return fail(absl::DataLossError("reply to another call"));
  WireReader r(reply);
  const int32_t status = r.I32();
  if (!r.ok()) return fail(absl::DataLossError("empty reply"));
  if (status != 0) {
    return MakeError(ErrorCodeFromInt(status).value_or(ErrorCode::INTERNAL_ERROR),
                     absl::StrCat("storage process refused the call (", status, ")"));
  }
  return reply.substr(4);
}

absl::Status StandaloneClient::ForgetFreedBlocks(Conn& conn) {
  const uint64_t freed = HostBlocksFreed();
  if (freed == conn.freed_seen) return absl::OkStatus();
  conn.freed_seen = freed;
  for (auto it = conn.regions.begin(); it != conn.regions.end();) {
    int fd = DupHostBlockFd(it->first);
    if (fd >= 0) {
      close(fd);
      ++it;
      continue;
    }
    WireWriter w;
    w.U64(it->second);
    it = conn.regions.erase(it);
    if (absl::StatusOr<std::string> r = Call(conn, StandaloneOp::kUnmap, w.buf()); !r.ok()) {
      return r.status();
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> StandaloneClient::RegionFor(Conn& conn, const HostBlock& block) {
  auto it = conn.regions.find(block.id);
  if (it != conn.regions.end()) return it->second;
  int fd = DupHostBlockFd(block.id);
  if (fd < 0) return MakeError(ErrorCode::INVALID_PARAMS, "buffer freed during the call");
  WireWriter w;
  w.U64(block.length);
  absl::StatusOr<std::string> reply = Call(conn, StandaloneOp::kMap, w.buf(), fd);
  close(fd);
  if (!reply.ok()) return reply.status();
  WireReader r(*reply);
  const uint64_t region = r.U64();
  if (!r.ok()) return MakeError(ErrorCode::RPC_FAIL, "malformed map reply");
  conn.regions[block.id] = region;
  return region;
}

absl::StatusOr<char*> StandaloneClient::Staging(Conn& conn, uint64_t* region) {
  if (conn.staging == nullptr) {
    absl::StatusOr<void*> p = staging_allocator_.Alloc(options_.staging_bytes);
    if (!p.ok()) return p.status();
    conn.staging = static_cast<char*>(*p);
  }
  std::optional<HostBlock> block = FindHostBlock(conn.staging, options_.staging_bytes);
  if (!block.has_value()) return MakeError(ErrorCode::INTERNAL_ERROR, "staging block lost");
  absl::StatusOr<uint64_t> id = RegionFor(conn, *block);
  if (!id.ok()) return id.status();
  *region = *id;
  return conn.staging;
}

std::vector<int64_t> StandaloneClient::Transfer(bool put, const std::vector<std::string>& keys,
                                                const std::vector<std::vector<BufferRef>>& buffers,
                                                const ReplicateConfig& config) {
  std::vector<int64_t> out(keys.size(), static_cast<int64_t>(ErrorCode::INVALID_PARAMS));
  if (keys.size() != buffers.size() || keys.empty()) return out;
  Lease lease(this);
  if (!lease.status().ok()) {
    std::fill(out.begin(), out.end(), ToPythonCode(lease.status()));
    return out;
  }
  Conn& conn = lease.conn();
  if (absl::Status s = ForgetFreedBlocks(conn); !s.ok()) {
    std::fill(out.begin(), out.end(), ToPythonCode(s));
    return out;
  }
  // A staged piece: `length` bytes of the caller's memory at `caller`, at `staged` in the
  // staging area, holding object bytes from `object_offset`.
  struct Staged {
    size_t key;
    char* caller;
    char* staged;
    uint64_t length;
    uint64_t object_offset;
  };
  std::vector<KeyPieces> request;
  std::vector<size_t> index;
  std::vector<Staged> staged;
  absl::Status failed;  // a transport failure: every key not yet done gets it

  auto flush = [&]() {
    if (request.empty()) return;
    WireWriter w;
    if (put) EncodeReplicateConfig(config, w);
    EncodeKeyPieces(request, w);
    absl::StatusOr<std::string> reply =
        Call(conn, put ? StandaloneOp::kPut : StandaloneOp::kGet, w.buf());
    std::vector<int64_t> rc;
    if (reply.ok()) {
      WireReader r(*reply);
      const uint32_t n = r.Count(8);
      for (uint32_t i = 0; i < n; ++i) rc.push_back(r.I64());
      if (!r.ok() || rc.size() != request.size()) {
        reply = MakeError(ErrorCode::RPC_FAIL, "malformed reply");
        conn.broken = true;
      }
    }
    if (!reply.ok()) {
      failed = reply.status();
      for (size_t i : index) out[i] = ToPythonCode(failed);
    } else {
      for (size_t j = 0; j < index.size(); ++j) out[index[j]] = rc[j];
      if (!put) {
        for (const Staged& s : staged) {
          const int64_t got = out[s.key];
          if (got <= 0 || static_cast<uint64_t>(got) <= s.object_offset) continue;
          const uint64_t n =
              std::min<uint64_t>(s.length, static_cast<uint64_t>(got) - s.object_offset);
          memcpy(s.caller, s.staged, n);
        }
      }
    }
    request.clear();
    index.clear();
    staged.clear();
  };

  uint64_t used = 0;  // of the staging block
  for (size_t i = 0; i < keys.size() && failed.ok(); ++i) {
    const std::vector<BufferRef>& refs = buffers[i];
    if (refs.empty() || keys[i].empty()) {
      out[i] = static_cast<int64_t>(keys[i].empty() ? ErrorCode::INVALID_KEY
                                                    : ErrorCode::INVALID_PARAMS);
      continue;
    }
    uint64_t need = 0;
    bool bad = false;
    std::vector<std::optional<HostBlock>> blocks;
    for (const BufferRef& b : refs) {
      if (b.ptr == nullptr || b.size == 0) bad = true;
      blocks.push_back(bad ? std::nullopt : FindHostBlock(b.ptr, b.size));
      if (!bad && !blocks.back().has_value()) need += b.size;
    }
    if (bad) continue;
    // The staging area this key uses: the connection's block, or a temporary one if too big.
    char* area = nullptr;
    uint64_t area_region = 0;
    void* temporary = nullptr;
    if (need > 0) {
      if (need > options_.staging_bytes) {
        flush();
        used = 0;
        absl::StatusOr<void*> t = staging_allocator_.Alloc(need);
        if (!t.ok()) {
          out[i] = ToPythonCode(t.status());
          continue;
        }
        temporary = *t;
        std::optional<HostBlock> tb = FindHostBlock(temporary, need);
        absl::StatusOr<uint64_t> id = RegionFor(conn, *tb);
        if (!id.ok()) {
          staging_allocator_.Free(temporary).IgnoreError();
          out[i] = ToPythonCode(id.status());
          if (conn.broken) failed = id.status();
          continue;
        }
        area = static_cast<char*>(temporary);
        area_region = *id;
      } else {
        if (used + need > options_.staging_bytes) {
          flush();
          used = 0;
          if (!failed.ok()) break;
        }
        absl::StatusOr<char*> s = Staging(conn, &area_region);
        if (!s.ok()) {
          out[i] = ToPythonCode(s.status());
          if (conn.broken) failed = s.status();
          continue;
        }
        area = *s;
      }
    }
    KeyPieces kp;
    kp.key = keys[i];
    uint64_t object_offset = 0;
    uint64_t area_used = temporary != nullptr ? 0 : used;
    for (size_t j = 0; j < refs.size() && !bad; ++j) {
      const BufferRef& b = refs[j];
      char* p = static_cast<char*>(b.ptr);
      if (blocks[j].has_value()) {
        absl::StatusOr<uint64_t> region = RegionFor(conn, *blocks[j]);
        if (!region.ok()) {
          out[i] = ToPythonCode(region.status());
          if (conn.broken) failed = region.status();
          bad = true;
          break;
        }
        kp.pieces.push_back({*region, static_cast<uint64_t>(p - blocks[j]->base), b.size});
      } else {
        char* dst = area + area_used;
        if (put) memcpy(dst, p, b.size);
        staged.push_back({i, p, dst, b.size, object_offset});
        kp.pieces.push_back({area_region, area_used, b.size});
        area_used += b.size;
      }
      object_offset += b.size;
    }
    if (bad) {
      while (!staged.empty() && staged.back().key == i) staged.pop_back();
      continue;
    }
    request.push_back(std::move(kp));
    index.push_back(i);
    if (temporary != nullptr) {
      flush();
      // The temporary block goes at once; the server drops its mapping on kUnmap.
      conn.regions.erase(FindHostBlock(temporary, 1)->id);
      if (failed.ok()) {
        WireWriter w;
        w.U64(area_region);
        if (absl::StatusOr<std::string> r = Call(conn, StandaloneOp::kUnmap, w.buf()); !r.ok()) {
          failed = r.status();
        }
      }
      staging_allocator_.Free(temporary).IgnoreError();
    } else {
      used = area_used;
    }
  }
  flush();
  if (!failed.ok()) {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (out[i] == static_cast<int64_t>(ErrorCode::INVALID_PARAMS)) out[i] = ToPythonCode(failed);
    }
  }
  return out;
}

std::vector<int> StandaloneClient::BatchPut(const std::vector<std::string>& keys,
                                            const std::vector<std::vector<BufferRef>>& buffers,
                                            const ReplicateConfig& config) {
  std::vector<int64_t> rc = Transfer(true, keys, buffers, config);
  return std::vector<int>(rc.begin(), rc.end());
}

std::vector<int64_t> StandaloneClient::BatchGet(
    const std::vector<std::string>& keys, const std::vector<std::vector<BufferRef>>& buffers) {
  return Transfer(false, keys, buffers, ReplicateConfig());
}

int StandaloneClient::PutBytes(const std::string& key, absl::string_view value,
                               const ReplicateConfig& config) {
  if (value.empty()) return static_cast<int>(ErrorCode::INVALID_PARAMS);
  return BatchPut({key}, {{{const_cast<char*>(value.data()), value.size()}}}, config)[0];
}

absl::StatusOr<std::string> StandaloneClient::GetBytes(const std::string& key) {
  const int64_t size = GetSize(key);
  if (size < 0) return MakeError(static_cast<ErrorCode>(size), absl::StrCat("get ", key));
  std::string value(static_cast<size_t>(size), '\0');
  if (size == 0) return value;
  const int64_t rc = BatchGet({key}, {{{value.data(), value.size()}}})[0];
  if (rc < 0) return MakeError(static_cast<ErrorCode>(rc), absl::StrCat("get ", key));
  value.resize(static_cast<size_t>(rc));
  return value;
}

absl::StatusOr<std::vector<int64_t>> StandaloneClient::CallCodes(StandaloneOp op,
                                                                 const std::string& payload) {
  Lease lease(this);
  if (!lease.status().ok()) return lease.status();
  absl::StatusOr<std::string> reply = Call(lease.conn(), op, payload);
  if (!reply.ok()) return reply.status();
  WireReader r(*reply);
  std::vector<int64_t> values;
  const uint32_t n = r.Count(8);
  for (uint32_t i = 0; i < n; ++i) values.push_back(r.I64());
  if (!r.ok()) {
    lease.conn().broken = true;
    return MakeError(ErrorCode::RPC_FAIL, "malformed reply from the storage process");
  }
  return values;
}

namespace {
template <typename T>
std::vector<T> PerKey(const absl::StatusOr<std::vector<int64_t>>& rc, size_t n) {
  if (!rc.ok() || rc->size() != n) {
    return std::vector<T>(n, rc.ok() ? static_cast<T>(ErrorCode::RPC_FAIL)
                                     : static_cast<T>(ToPythonCode(rc.status())));
  }
  return std::vector<T>(rc->begin(), rc->end());
}
}  // namespace

std::vector<int> StandaloneClient::BatchIsExist(const std::vector<std::string>& keys) {
  WireWriter w;
  EncodeKeys(keys, w);
  return PerKey<int>(CallCodes(StandaloneOp::kExist, w.buf()), keys.size());
}

std::vector<int> StandaloneClient::BatchRemove(const std::vector<std::string>& keys, bool force) {
  WireWriter w;
  EncodeKeys(keys, w);
  w.U8(force ? 1 : 0);
  return PerKey<int>(CallCodes(StandaloneOp::kRemove, w.buf()), keys.size());
}

namespace {
// One i64 result (after the status word) of a call, or the call's error code.
int64_t OneValue(const absl::StatusOr<std::string>& reply) {
  if (!reply.ok()) return ToPythonCode(reply.status());
  WireReader r(*reply);
  const int64_t v = r.I64();
  return r.ok() ? v : static_cast<int64_t>(ErrorCode::RPC_FAIL);
}
}  // namespace

int64_t StandaloneClient::GetSize(const std::string& key) {
  if (key.empty()) return static_cast<int64_t>(ErrorCode::INVALID_KEY);
  Lease lease(this);
  if (!lease.status().ok()) return ToPythonCode(lease.status());
  WireWriter w;
  w.Str(key);
  return OneValue(Call(lease.conn(), StandaloneOp::kSize, w.buf()));
}

int64_t StandaloneClient::RemoveByRegex(const std::string& regex, bool force) {
  Lease lease(this);
  if (!lease.status().ok()) return ToPythonCode(lease.status());
  WireWriter w;
  w.Str(regex);
  w.U8(force ? 1 : 0);
  return OneValue(Call(lease.conn(), StandaloneOp::kRemoveRegex, w.buf()));
}

int64_t StandaloneClient::RemoveAll(bool force) {
  Lease lease(this);
  if (!lease.status().ok()) return ToPythonCode(lease.status());
  WireWriter w;
  w.U8(force ? 1 : 0);
  return OneValue(Call(lease.conn(), StandaloneOp::kRemoveAll, w.buf()));
}

std::vector<ObjectReplicas> StandaloneClient::BatchGetReplicas(
    const std::vector<std::string>& keys) {
  std::vector<ObjectReplicas> out(keys.size());
  auto fail = [&](const absl::Status& s) {
    for (ObjectReplicas& o : out) o.error = ToErrorCode(s);
    return out;
  };
  Lease lease(this);
  if (!lease.status().ok()) return fail(lease.status());
  WireWriter w;
  EncodeKeys(keys, w);
  absl::StatusOr<std::string> reply = Call(lease.conn(), StandaloneOp::kReplicas, w.buf());
  if (!reply.ok()) return fail(reply.status());
  WireReader r(*reply);
  std::vector<ObjectReplicas> objects;
  if (!DecodeObjectReplicas(r, &objects) || objects.size() != keys.size()) {
    lease.conn().broken = true;
    return fail(MakeError(ErrorCode::RPC_FAIL, "malformed reply"));
  }
  return objects;
}

StoreHealth StandaloneClient::HealthCheck() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return StoreHealth::kNotSetUp;
  }
  Lease lease(this);
  if (!lease.status().ok()) return StoreHealth::kMasterUnreachable;
  absl::StatusOr<std::string> reply = Call(lease.conn(), StandaloneOp::kHealth, "");
  if (!reply.ok()) return StoreHealth::kMasterUnreachable;
  WireReader r(*reply);
  const int32_t h = r.I32();
  if (!r.ok() || h < 0 || h > 2) return StoreHealth::kMasterUnreachable;
  return static_cast<StoreHealth>(h);
}

absl::Status StandaloneClient::RegisterBuffer(void* ptr, uint64_t size) {
  if (ptr == nullptr || size == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS, "register_buffer: pointer and size must be > 0");
  }
  if (!FindHostBlock(ptr, size).has_value()) {
    MC_LOG(WARNING) << "register_buffer: this buffer is not from MooncakeHostMemAllocator, so in "
                       "standalone mode its puts and gets are copied through a staging buffer";
  }
  return absl::OkStatus();
}

absl::Status StandaloneClient::UnregisterBuffer(void*) { return absl::OkStatus(); }

std::string StandaloneClient::hostname() const {
  absl::MutexLock lock(&mu_);
  return hostname_;
}

absl::Status StandaloneClient::Close() {
  std::vector<std::unique_ptr<Conn>> idle;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return absl::OkStatus();
    closed_ = true;
    auto quiet = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return in_flight_ == 0; };
    mu_.Await(absl::Condition(&quiet));
    idle.swap(idle_);
    open_ -= static_cast<int>(idle.size());
  }
  return absl::OkStatus();  // idle connections close here; the server releases their regions
}

}  // namespace mooncake
