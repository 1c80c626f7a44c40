#include "mooncake/store/store_client.h"

#include <cstdlib>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/grpc_master_client.h"

namespace mooncake {
namespace {

using Op = TransferRequest::Opcode;

int Code(const absl::Status& s) { return static_cast<int>(ToErrorCode(s)); }
int Code(ErrorCode c) { return static_cast<int>(c); }

uint64_t TotalSize(const std::vector<BufferRef>& parts) {
  uint64_t total = 0;
  for (const BufferRef& b : parts) total += b.size;
  return total;
}

// Appends requests that move `size` bytes between the parts (in order) and [remote, remote+size).
void AddScatterRequests(Op op, const std::vector<BufferRef>& parts, SegmentId seg, uint64_t remote,
                        uint64_t size, std::vector<TransferRequest>* out) {
  uint64_t off = 0;
  for (const BufferRef& b : parts) {
    if (off >= size) break;
    uint64_t n = std::min(b.size, size - off);
    if (n > 0) out->push_back({op, b.ptr, seg, remote + off, n});
    off += n;
  }
}

// NonEmptyKeys collects the non-empty keys (for the master) and their positions in `keys`; empty
// keys keep the INVALID_KEY their result was initialized with.
void NonEmptyKeys(const std::vector<std::string>& keys, std::vector<std::string>* valid,
                  std::vector<size_t>* index) {
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].empty()) continue;
    valid->push_back(keys[i]);
    index->push_back(i);
  }
}

}  // namespace

StoreClient::StoreClient(StoreOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<StoreClient>> StoreClient::Create(StoreOptions options) {
  if (absl::Status s = options.config.Validate(); !s.ok()) {
    return MakeError(ErrorCode::INVALID_PARAMS, s.message());
  }
  std::unique_ptr<StoreClient> client(new StoreClient(std::move(options)));
  if (absl::Status s = client->Setup(); !s.ok()) return s;
  return client;
}

absl::Status StoreClient::Setup() {
  const ClientConfig& config = options_.config;
  std::mt19937_64 random(std::random_device{}());
  client_id_ = {random() | 1, random()};
  if (options_.master == nullptr) {
    GrpcMasterClientOptions m;
    m.address = config.master_server_address;
    m.rpc_timeout = options_.rpc_timeout;
    auto master = GrpcMasterClient::Create(m);
    if (!master.ok()) return master.status();
    master_ = std::move(*master);
  } else {
    master_ = std::move(options_.master);
  }
  // Fail fast, with a clear error, if the master is not there.
  if (auto hb = master_->Heartbeat(client_id_); !hb.ok()) {
    return MakeError(ToErrorCode(hb.status()),
                     absl::StrCat("cannot reach mooncake_master at ", config.master_server_address,
                                  ": ", hb.status().message()));
  }
  if (options_.engine != nullptr) {
    engine_ = options_.engine;
  } else {
    TransferEngineOptions e = options_.engine_options;
    e.local_server_name = config.local_hostname;
    e.metadata_server = config.metadata_server;
    e.protocol = config.protocol;
    if (absl::Status s = e.ApplyEnv(); !s.ok()) return s;
    auto engine = TransferEngine::Create(e);
    if (!engine.ok()) return engine.status();
    owned_engine_ = std::move(*engine);
    engine_ = owned_engine_.get();
  }
  if (config.global_segment_size > 0) {
    bool prefault = options_.prefault_segment;
    if (const char* env = std::getenv("MC_PREFAULT_SEGMENT")) prefault = std::string(env) != "0";
    auto mem = engine_->AllocateSharedMemory(config.global_segment_size, prefault);
    if (!mem.ok()) {
      return MakeError(
          ToErrorCode(mem.status()),
          absl::StrCat("cannot allocate the ", FormatByteSize(config.global_segment_size),
                       " segment: ", mem.status().message()));
    }
    segment_memory_ = *mem;
    segment_ = {engine_->segment_name(), reinterpret_cast<uint64_t>(segment_memory_),
                config.global_segment_size};
    if (absl::Status s = master_->MountSegment(client_id_, segment_); !s.ok()) {
      return MakeError(ToErrorCode(s), absl::StrCat("cannot mount segment: ", s.message()));
    }
    mounted_ = true;
  }
  workers_ = std::make_unique<ThreadPoolExecutor>(2);
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  MC_LOG(INFO) << "store client " << client_id_.ToString() << " up: segment "
               << engine_->segment_name() << " (" << FormatByteSize(config.global_segment_size)
               << "), master " << config.master_server_address;
  return absl::OkStatus();
}

StoreClient::~StoreClient() { Close().IgnoreError(); }

absl::Status StoreClient::Close() {
  if (closed_.exchange(true)) return absl::OkStatus();
  stop_.Notify();
  if (heartbeat_.joinable()) heartbeat_.join();
  workers_.reset();  // drains queued async work first
  absl::Status s;
  if (segment_.size > 0 && master_ != nullptr) {
    s = master_->UnmountSegment(client_id_, segment_.name, segment_.base);
    mounted_ = false;
  }
  if (segment_memory_ != nullptr && engine_ != nullptr) {
    engine_->FreeSharedMemory(segment_memory_).IgnoreError();
    segment_memory_ = nullptr;
  }
  owned_engine_.reset();
  return s;
}

absl::Status StoreClient::CheckOpen() const {
  if (closed_.load()) return MakeError(ErrorCode::INVALID_PARAMS, "store is closed");
  return absl::OkStatus();
}

void StoreClient::HeartbeatLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.heartbeat_interval)) {
    auto hb = master_->Heartbeat(client_id_);
    if (!hb.ok()) {
      MC_LOG(WARNING) << "heartbeat to master failed: " << hb.status();
      continue;
    }
    if (hb->need_remount && segment_.size > 0) {
      absl::Status s = master_->RemountSegment(client_id_, {segment_});
      if (s.ok()) {
        MC_LOG(INFO) << "master had forgotten this client; segment " << segment_.name
                     << " remounted";
        mounted_ = true;
      } else {
        mounted_ = false;
        MC_LOG(WARNING) << "remount failed: " << s;
      }
    }
  }
}

absl::Status StoreClient::RegisterBuffer(void* ptr, uint64_t size) {
  if (absl::Status s = CheckOpen(); !s.ok()) return s;
  return engine_->RegisterLocalMemory(ptr, size, "cpu:0", /*remote_accessible=*/false);
}

absl::Status StoreClient::UnregisterBuffer(void* ptr) {
  if (absl::Status s = CheckOpen(); !s.ok()) return s;
  return engine_->UnregisterLocalMemory(ptr);
}

absl::StatusOr<SegmentId> StoreClient::Segment(const std::string& name) {
  return engine_->OpenSegment(name);
}

int StoreClient::Closeness(const std::string& segment_name) {
  if (segment_name == engine_->segment_name()) return 0;
  auto id = Segment(segment_name);
  if (!id.ok()) return 3;
  auto route = engine_->RouteTo(*id);
  if (route.ok() &&
      (*route == TransferEngine::Route::kShm || *route == TransferEngine::Route::kLocal)) {
    return 1;
  }
  return 2;
}

std::vector<int> StoreClient::BatchIsExist(const std::vector<std::string>& keys) {
  std::vector<int> out(keys.size(), Code(ErrorCode::INVALID_KEY));
  if (absl::Status s = CheckOpen(); !s.ok()) return std::vector<int>(keys.size(), Code(s));
  std::vector<std::string> valid;
  std::vector<size_t> index;
  NonEmptyKeys(keys, &valid, &index);
  if (valid.empty()) return out;
  auto r = master_->BatchExistKey(valid);
  for (size_t j = 0; j < index.size(); ++j) {
    if (!r.ok()) {
      out[index[j]] = Code(r.status());
    } else if ((*r)[j] == ErrorCode::OK) {
      out[index[j]] = 1;
    } else if ((*r)[j] == ErrorCode::OBJECT_NOT_FOUND) {
      out[index[j]] = 0;
    } else {
      out[index[j]] = Code((*r)[j]);
    }
  }
  return out;
}

std::vector<int> StoreClient::BatchPut(const std::vector<std::string>& keys,
                                       const std::vector<std::vector<BufferRef>>& buffers,
                                       const ReplicateConfig& config) {
  if (absl::Status s = CheckOpen(); !s.ok()) return std::vector<int>(keys.size(), Code(s));
  if (keys.size() != buffers.size()) {
    return std::vector<int>(keys.size(), Code(ErrorCode::INVALID_PARAMS));
  }
  std::vector<int> out(keys.size(), 0);
  std::vector<std::string> start_keys;
  std::vector<uint64_t> sizes;
  std::vector<size_t> index;
  for (size_t i = 0; i < keys.size(); ++i) {
    uint64_t size = TotalSize(buffers[i]);
    if (keys[i].empty()) {
      out[i] = Code(ErrorCode::INVALID_KEY);
    } else if (size == 0) {
      out[i] = Code(ErrorCode::INVALID_PARAMS);
    } else {
      start_keys.push_back(keys[i]);
      sizes.push_back(size);
      index.push_back(i);
    }
  }
  if (start_keys.empty()) return out;
  auto started = master_->BatchPutStart(start_keys, sizes, config);
  if (!started.ok()) {
    for (size_t i : index) out[i] = Code(started.status());
    return out;
  }
  // One transfer batch for every replica of every key.
  std::vector<TransferRequest> reqs;
  std::vector<std::pair<size_t, size_t>> req_range(start_keys.size());  // [first, last) per key
  std::vector<bool> writing(start_keys.size(), false);
  for (size_t j = 0; j < start_keys.size(); ++j) {
    const ObjectReplicas& obj = (*started)[j];
    const size_t i = index[j];
    if (obj.error == ErrorCode::OBJECT_ALREADY_EXISTS) {
      out[i] = 0;  // immutable objects: putting an existing key is success
      continue;
    }
    if (obj.error != ErrorCode::OK) {
      out[i] = Code(obj.error);
      continue;
    }
    writing[j] = true;
    req_range[j].first = reqs.size();
    for (const ReplicaDesc& r : obj.replicas) {
      auto seg = Segment(r.segment_name);
      if (!seg.ok()) {
        out[i] = Code(seg.status());
        break;
      }
      AddScatterRequests(Op::kWrite, buffers[i], *seg, r.address, sizes[j], &reqs);
    }
    req_range[j].second = reqs.size();
  }
  std::vector<absl::Status> results = engine_->Transfer(reqs);
  std::vector<std::string> end_keys, revoke_keys;
  std::vector<size_t> end_index;
  for (size_t j = 0; j < start_keys.size(); ++j) {
    if (!writing[j]) continue;
    const size_t i = index[j];
    absl::Status first;
    for (size_t r = req_range[j].first; r < req_range[j].second && first.ok(); ++r) {
      first = results[r];
    }
    if (out[i] == 0 && first.ok()) {
      end_keys.push_back(start_keys[j]);
      end_index.push_back(i);
    } else {
      if (out[i] == 0) out[i] = Code(first);
      revoke_keys.push_back(start_keys[j]);
    }
  }
  if (!revoke_keys.empty()) {
    auto revoked = master_->BatchPutRevoke(revoke_keys);
    if (!revoked.ok()) MC_LOG(WARNING) << "put revoke failed: " << revoked.status();
  }
  if (!end_keys.empty()) {
    auto ended = master_->BatchPutEnd(end_keys);
    for (size_t k = 0; k < end_index.size(); ++k) {
      if (!ended.ok()) {
        out[end_index[k]] = Code(ended.status());
      } else if ((*ended)[k] != ErrorCode::OK) {
        out[end_index[k]] = Code((*ended)[k]);
      }
    }
  }
  return out;
}

std::vector<int64_t> StoreClient::BatchGet(const std::vector<std::string>& keys,
                                           const std::vector<std::vector<BufferRef>>& buffers) {
  if (absl::Status s = CheckOpen(); !s.ok()) return std::vector<int64_t>(keys.size(), Code(s));
  if (keys.size() != buffers.size()) {
    return std::vector<int64_t>(keys.size(), Code(ErrorCode::INVALID_PARAMS));
  }
  std::vector<int64_t> out(keys.size(), 0);
  std::vector<std::string> query;
  std::vector<size_t> index;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].empty()) {
      out[i] = Code(ErrorCode::INVALID_KEY);
    } else {
      query.push_back(keys[i]);
      index.push_back(i);
    }
  }
  if (query.empty()) return out;
  const int64_t t0 = RealClock::Get()->NowNanos();
  auto list = master_->BatchGetReplicaList(query);
  if (!list.ok()) {
    for (size_t i : index) out[i] = Code(list.status());
    return out;
  }
  std::vector<TransferRequest> reqs;
  std::vector<std::pair<size_t, size_t>> req_range(query.size());
  std::vector<bool> reading(query.size(), false);
  for (size_t j = 0; j < query.size(); ++j) {
    const ObjectReplicas& obj = list->objects[j];
    const size_t i = index[j];
    if (obj.error != ErrorCode::OK) {
      out[i] = Code(obj.error);
      continue;
    }
    if (obj.replicas.empty()) {
      out[i] = Code(ErrorCode::INVALID_REPLICA);
      continue;
    }
    if (TotalSize(buffers[i]) < obj.size) {
      out[i] = Code(ErrorCode::INVALID_PARAMS);  // the caller's buffer cannot hold the object
      continue;
    }
    // Closest replica: own segment, then same host, then the network.
    const ReplicaDesc* best = nullptr;
    int best_rank = 99;
    for (const ReplicaDesc& r : obj.replicas) {
      int rank = Closeness(r.segment_name);
      if (rank < best_rank) {
        best_rank = rank;
        best = &r;
      }
    }
    auto seg = Segment(best->segment_name);
    if (!seg.ok()) {
      out[i] = Code(seg.status());
      continue;
    }
    reading[j] = true;
    req_range[j].first = reqs.size();
    AddScatterRequests(Op::kRead, buffers[i], *seg, best->address, obj.size, &reqs);
    req_range[j].second = reqs.size();
    out[i] = static_cast<int64_t>(obj.size);
  }
  std::vector<absl::Status> results = engine_->Transfer(reqs);
  const bool lease_expired =
      RealClock::Get()->NowNanos() - t0 > absl::ToInt64Nanoseconds(list->lease_ttl);
  for (size_t j = 0; j < query.size(); ++j) {
    if (!reading[j]) continue;
    const size_t i = index[j];
    for (size_t r = req_range[j].first; r < req_range[j].second; ++r) {
      if (!results[r].ok()) {
        out[i] = Code(results[r]);
        break;
      }
    }
    // The object may have been evicted and its space reused while we read: do not trust bytes
    // that arrived after the lease ended.
    if (out[i] > 0 && lease_expired) out[i] = Code(ErrorCode::LEASE_EXPIRED);
  }
  return out;
}

void StoreClient::BatchPutAsync(std::vector<std::string> keys,
                                std::vector<std::vector<BufferRef>> buffers, ReplicateConfig config,
                                std::function<void(std::vector<int>)> done) {
  workers_->Schedule([this, keys = std::move(keys), buffers = std::move(buffers),
                      config = std::move(config),
                      done = std::move(done)] { done(BatchPut(keys, buffers, config)); });
}

void StoreClient::BatchGetAsync(std::vector<std::string> keys,
                                std::vector<std::vector<BufferRef>> buffers,
                                std::function<void(std::vector<int64_t>)> done) {
  workers_->Schedule([this, keys = std::move(keys), buffers = std::move(buffers),
                      done = std::move(done)] { done(BatchGet(keys, buffers)); });
}

int StoreClient::PutBytes(const std::string& key, absl::string_view value,
                          const ReplicateConfig& config) {
  if (value.empty()) return Code(ErrorCode::INVALID_PARAMS);
  // Copy into private memory so the temporary registration cannot overlap the caller's.
  std::string copy(value);
  if (absl::Status s = engine_->RegisterLocalMemory(copy.data(), copy.size(), "cpu:0", false);
      !s.ok()) {
    return Code(s);
  }
  int rc = BatchPut({key}, {{{copy.data(), copy.size()}}}, config)[0];
  engine_->UnregisterLocalMemory(copy.data()).IgnoreError();
  return rc;
}

absl::StatusOr<std::string> StoreClient::GetBytes(const std::string& key) {
  int64_t size = GetSize(key);
  if (size < 0) return MakeError(static_cast<ErrorCode>(size), absl::StrCat("get ", key));
  std::string value(static_cast<size_t>(size), '\0');
  if (absl::Status s = engine_->RegisterLocalMemory(value.data(), value.size(), "cpu:0", false);
      !s.ok()) {
    return s;
  }
  int64_t rc = BatchGet({key}, {{{value.data(), value.size()}}})[0];
  engine_->UnregisterLocalMemory(value.data()).IgnoreError();
  if (rc < 0) return MakeError(static_cast<ErrorCode>(rc), absl::StrCat("get ", key));
  value.resize(static_cast<size_t>(rc));
  return value;
}

int64_t StoreClient::GetSize(const std::string& key) {
  if (absl::Status s = CheckOpen(); !s.ok()) return Code(s);
  if (key.empty()) return Code(ErrorCode::INVALID_KEY);
  auto list = master_->BatchGetReplicaList({key});
  if (!list.ok()) return Code(list.status());
  const ObjectReplicas& obj = list->objects[0];
  if (obj.error != ErrorCode::OK) return Code(obj.error);
  return static_cast<int64_t>(obj.size);
}

int StoreClient::Remove(const std::string& key, bool force) { return BatchRemove({key}, force)[0]; }

std::vector<int> StoreClient::BatchRemove(const std::vector<std::string>& keys, bool force) {
  if (absl::Status s = CheckOpen(); !s.ok()) return std::vector<int>(keys.size(), Code(s));
  std::vector<int> out(keys.size(), Code(ErrorCode::INVALID_KEY));
  std::vector<std::string> valid;
  std::vector<size_t> index;
  NonEmptyKeys(keys, &valid, &index);
  if (valid.empty()) return out;
  auto r = master_->BatchRemove(valid, force);
  for (size_t j = 0; j < index.size(); ++j)
    out[index[j]] = r.ok() ? Code((*r)[j]) : Code(r.status());
  return out;
}

int64_t StoreClient::RemoveByRegex(const std::string& regex, bool force) {
  if (absl::Status s = CheckOpen(); !s.ok()) return Code(s);
  auto r = master_->RemoveByRegex(regex, force);
  return r.ok() ? static_cast<int64_t>(*r) : Code(r.status());
}

int64_t StoreClient::RemoveAll(bool force) {
  if (absl::Status s = CheckOpen(); !s.ok()) return Code(s);
  auto r = master_->RemoveAll(force);
  return r.ok() ? static_cast<int64_t>(*r) : Code(r.status());
}

}  // namespace mooncake
