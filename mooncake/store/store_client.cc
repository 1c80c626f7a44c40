#include "mooncake/store/store_client.h"

#include <cstdio>
#include <cstdlib>
#include <random>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mooncake/common/auth_token.h"
#include "mooncake/common/byte_size.h"
#include "mooncake/common/clock.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/master/etcd_master_client.h"
#include "mooncake/master/grpc_master_client.h"

namespace mooncake {
namespace {

int Code(const absl::Status& s) { return static_cast<int>(ToErrorCode(s)); }
int Code(ErrorCode c) { return static_cast<int>(c); }

// Await starts an asynchronous core operation and blocks until its callback ran (with the inline
// production seams, before `start` returns).
template <typename T, typename Start>
T Await(Start start) {
  absl::Notification done;
  T result{};
  start([&](T r) {
    result = std::move(r);
    done.Notify();
  });
  done.WaitForNotification();
  return result;
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
  // MC_AUTH_TOKEN, else the engine options' token: for the master as for the data path.
  absl::StatusOr<std::string> env_token = AuthTokenFromEnv();
  if (!env_token.ok()) return env_token.status();
  const std::string auth_token =
      env_token->empty() ? options_.engine_options.auth_token : *env_token;
  if (options_.master == nullptr && absl::StartsWith(config.master_server_address, "etcd://")) {
    EtcdMasterClientOptions m;  // HA masters (docs/ha.md)
    m.address = config.master_server_address;
    m.rpc_timeout = std::min(options_.rpc_timeout, absl::Seconds(2));
    m.auth_token = auth_token;
    auto master = EtcdMasterClient::Create(m);
    if (!master.ok()) return master.status();
    master_ = std::move(*master);
  } else if (options_.master == nullptr) {
    GrpcMasterClientOptions m;
    m.address = config.master_server_address;
    m.rpc_timeout = options_.rpc_timeout;
    m.auth_token = auth_token;
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
    e.auth_token = auth_token;
    auto engine = TransferEngine::Create(e);
    if (!engine.ok()) return engine.status();
    owned_engine_ = std::move(*engine);
    engine_ = owned_engine_.get();
  }
  channel_ = std::make_unique<DirectMasterChannel>(master_.get());
  data_ = std::make_unique<EngineDataPath>(engine_);
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
                config.global_segment_size, engine_->instance()};
  }
  hostname_ = engine_->segment_name();
  StoreCoreOptions core;
  core.client_id = client_id_;
  core.segment = segment_;
  core.master = channel_.get();
  core.data = data_.get();
  core.clock = RealClock::Get();
  core.timer = [](absl::Duration delay, std::function<void()> fn) {
    absl::SleepFor(delay);  // the caller is blocked in a sync call (or an async worker) anyway
    fn();
  };
  core_ = std::make_unique<StoreCore>(std::move(core));
  if (absl::Status s = Await<absl::Status>([&](auto done) { core_->Mount(done); }); !s.ok()) {
    return MakeError(ToErrorCode(s), absl::StrCat("cannot mount segment: ", s.message()));
  }
  if (config.enable_ssd_offload) {
    DiskTierOptions t;
    t.store.dir = config.ssd_offload_path;
    t.store.capacity_bytes = config.offload_total_size_limit;
    t.store.high_watermark = config.offload_high_watermark;
    t.store.evict_slack = config.offload_high_watermark - config.offload_low_watermark;
    t.store.bucket_size_limit = config.offload_bucket_size_limit;
    t.client_id = client_id_;
    t.master = master_.get();
    t.engine = engine_;
    t.segment = segment_;
    StoreCore* core_ptr = core_.get();
    t.mount_epoch = [core_ptr] { return core_ptr->mount_epoch(); };
    auto tier = DiskTier::Create(std::move(t));
    if (!tier.ok()) return tier.status();
    disk_tier_ = std::move(*tier);
  }
  workers_ = std::make_unique<ThreadPoolExecutor>(2);
  heartbeat_ = std::thread([this] { HeartbeatLoop(); });
  MC_LOG(INFO) << "store client " << client_id_.ToString() << " up: segment "
               << engine_->segment_name() << " (" << FormatByteSize(config.global_segment_size)
               << "), master " << config.master_server_address
               << (config.enable_ssd_offload ? ", SSD tier in " + config.ssd_offload_path : "");
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StoreClient>> StoreClient::CreateWhenMasterUp(
    const std::function<StoreOptions()>& options, absl::Duration timeout, const volatile int* stop,
    absl::string_view who) {
  const absl::Time deadline = absl::Now() + timeout;
  auto store = Create(options());
  while (!store.ok() && absl::IsUnavailable(store.status()) && absl::Now() < deadline &&
         (stop == nullptr || !*stop)) {
    fprintf(stderr, "%s: %s; retrying\n", std::string(who).c_str(),
            store.status().ToString().c_str());
    absl::SleepFor(absl::Milliseconds(500));
    store = Create(options());
  }
  return store;
}

StoreClient::~StoreClient() { Close().IgnoreError(); }

StoreClient::Call::Call(StoreClient* client) : client_(client) {
  absl::MutexLock lock(&client_->calls_mu_);
  if (client_->closed_) {
    status_ = MakeError(ErrorCode::INVALID_PARAMS, "store is closed");
    return;
  }
  ++client_->calls_;
}

StoreClient::Call::~Call() {
  if (!status_.ok()) return;
  absl::MutexLock lock(&client_->calls_mu_);
  --client_->calls_;
}

absl::Status StoreClient::Close() {
  {
    absl::MutexLock lock(&calls_mu_);
    if (closed_) return absl::OkStatus();
    closed_ = true;
    // New calls fail from here on; the ones in flight finish first.
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(calls_mu_) { return calls_ == 0; };
    calls_mu_.Await(absl::Condition(&idle));
  }
  stop_.Notify();
  if (heartbeat_.joinable()) heartbeat_.join();
  workers_.reset();                               // drains queued async work first
  if (disk_tier_ != nullptr) disk_tier_->Stop();  // before the segment it copies from goes
  disk_tier_.reset();
  absl::Status s;
  if (segment_.size > 0 && core_ != nullptr) {
    s = Await<absl::Status>([&](auto done) { core_->Unmount(done); });
  }
  if (segment_memory_ != nullptr && engine_ != nullptr) {
    engine_->FreeSharedMemory(segment_memory_).IgnoreError();
    segment_memory_ = nullptr;
  }
  core_.reset();
  data_.reset();
  engine_ = nullptr;
  owned_engine_.reset();
  return s;
}

void StoreClient::HeartbeatLoop() {
  while (!stop_.WaitForNotificationWithTimeout(options_.heartbeat_interval)) {
    absl::Status s = Await<absl::Status>([&](auto done) { core_->Heartbeat(done); });
    if (!s.ok()) MC_LOG(WARNING) << "heartbeat to master failed: " << s;
  }
}

absl::Status StoreClient::RegisterBuffer(void* ptr, uint64_t size) {
  Call call(this);
  if (!call.status().ok()) return call.status();
  return engine_->RegisterLocalMemory(ptr, size, "cpu:0", /*remote_accessible=*/false);
}

absl::Status StoreClient::UnregisterBuffer(void* ptr) {
  Call call(this);
  if (!call.status().ok()) return call.status();
  return engine_->UnregisterLocalMemory(ptr);
}

std::vector<int> StoreClient::BatchIsExist(const std::vector<std::string>& keys) {
  Call call(this);
  if (!call.status().ok()) return std::vector<int>(keys.size(), Code(call.status()));
  return Await<std::vector<int>>([&](auto done) { core_->BatchIsExist(keys, done); });
}

std::vector<int> StoreClient::BatchPut(const std::vector<std::string>& keys,
                                       const std::vector<std::vector<BufferRef>>& buffers,
                                       const ReplicateConfig& config) {
  Call call(this);
  if (!call.status().ok()) return std::vector<int>(keys.size(), Code(call.status()));
  return Await<std::vector<int>>([&](auto done) { core_->BatchPut(keys, buffers, config, done); });
}

std::vector<int64_t> StoreClient::BatchGet(const std::vector<std::string>& keys,
                                           const std::vector<std::vector<BufferRef>>& buffers) {
  Call call(this);
  if (!call.status().ok()) return std::vector<int64_t>(keys.size(), Code(call.status()));
  return Await<std::vector<int64_t>>([&](auto done) { core_->BatchGet(keys, buffers, done); });
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
  Call call(this);
  if (!call.status().ok()) return Code(call.status());
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
  Call call(this);
  if (!call.status().ok()) return call.status();
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
  Call call(this);
  if (!call.status().ok()) return Code(call.status());
  return Await<int64_t>([&](auto done) { core_->GetSize(key, done); });
}

std::vector<ObjectReplicas> StoreClient::BatchGetReplicas(const std::vector<std::string>& keys) {
  Call call(this);
  if (!call.status().ok()) {
    std::vector<ObjectReplicas> out(keys.size());
    for (ObjectReplicas& o : out) o.error = ToErrorCode(call.status());
    return out;
  }
  return Await<std::vector<ObjectReplicas>>(
      [&](auto done) { core_->BatchGetReplicas(keys, done); });
}

StoreHealth StoreClient::HealthCheck() {
  Call call(this);
  if (!call.status().ok()) return StoreHealth::kNotSetUp;
  absl::Status s = Await<absl::Status>([&](auto done) { core_->Heartbeat(done); });
  return s.ok() ? StoreHealth::kHealthy : StoreHealth::kMasterUnreachable;
}

int StoreClient::Remove(const std::string& key, bool force) { return BatchRemove({key}, force)[0]; }

std::vector<int> StoreClient::BatchRemove(const std::vector<std::string>& keys, bool force) {
  Call call(this);
  if (!call.status().ok()) return std::vector<int>(keys.size(), Code(call.status()));
  return Await<std::vector<int>>([&](auto done) { core_->BatchRemove(keys, force, done); });
}

int64_t StoreClient::RemoveByRegex(const std::string& regex, bool force) {
  Call call(this);
  if (!call.status().ok()) return Code(call.status());
  return Await<int64_t>([&](auto done) { core_->RemoveByRegex(regex, force, done); });
}

int64_t StoreClient::RemoveAll(bool force) {
  Call call(this);
  if (!call.status().ok()) return Code(call.status());
  return Await<int64_t>([&](auto done) { core_->RemoveAll(force, done); });
}

}  // namespace mooncake
