#include "mooncake/store/disk_tier.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"
#include "mooncake/store/disk_read_protocol.h"

namespace mooncake {
namespace {

// Moves up to `limit` entries from the front of `from` to `to`.
void TakeUpTo(std::vector<DiskObjectRef>* from, size_t limit, std::vector<DiskObjectRef>* to) {
  const size_t n = std::min(limit, from->size());
  to->insert(to->end(), std::make_move_iterator(from->begin()),
             std::make_move_iterator(from->begin() + n));
  from->erase(from->begin(), from->begin() + n);
}

std::vector<DiskObjectRef> Refs(const std::vector<DiskObject>& objects) {
  std::vector<DiskObjectRef> out;
  out.reserve(objects.size());
  for (const DiskObject& o : objects) out.push_back({o.key, o.put_id, o.size});
  return out;
}

}  // namespace

DiskTier::DiskTier(DiskTierOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<DiskTier>> DiskTier::Create(DiskTierOptions options) {
  if (options.master == nullptr || options.engine == nullptr || !options.mount_epoch) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     "a disk tier needs a master, an engine and a mount");
  }
  if (options.segment.size == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     "enable_ssd_offload needs global_segment_size > 0: the SSD tier keeps what "
                     "this process's segment holds");
  }
  std::unique_ptr<DiskTier> tier(new DiskTier(std::move(options)));
  tier->readers_ = std::make_unique<ThreadPoolExecutor>(std::max(1, tier->options_.read_threads));
  DiskIo* io = tier->options_.io;
  if (io == nullptr) {
    tier->owned_io_ = NewPosixDiskIo();
    io = tier->owned_io_.get();
  }
  absl::StatusOr<std::unique_ptr<DiskStore>> store = DiskStore::Open(tier->options_.store, io);
  if (!store.ok()) {
    return MakeError(ToErrorCode(store.status()),
                     absl::StrCat("cannot open the SSD tier in ", tier->options_.store.dir, ": ",
                                  store.status().message()));
  }
  tier->store_ = std::move(*store);
  DiskTier* raw = tier.get();
  tier->options_.engine->SetServiceHandler(
      [raw](const std::string& request, ControlReplyStream& reply) {
        return raw->Serve(request, reply);
      });
  tier->thread_ = std::thread([raw] { raw->Loop(); });
  return tier;
}

DiskTier::~DiskTier() { Stop(); }

void DiskTier::Stop() {
  if (stopped_.exchange(true)) return;
  options_.engine->SetServiceHandler(nullptr);
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
  {
    // Requests already being served finish first (they use the readers).
    absl::MutexLock lock(&serve_mu_);
    auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(serve_mu_) { return serving_ == 0; };
    serve_mu_.Await(absl::Condition(&idle));
  }
  readers_.reset();
}

DiskTierStats DiskTier::GetStats() const {
  DiskTierStats st;
  st.store = store_->GetStats();
  st.syncs = syncs_.load();
  st.sync_errors = sync_errors_.load();
  st.tasks = tasks_.load();
  st.served_reads = served_reads_.load();
  st.served_bytes = served_bytes_.load();
  return st;
}

DiskTier::Buffer DiskTier::TakeBuffer(uint64_t n) {
  {
    absl::MutexLock lock(&buffers_mu_);
    for (size_t i = 0; i < free_buffers_.size(); ++i) {
      if (free_buffers_[i].capacity >= n) {
        Buffer b = std::move(free_buffers_[i]);
        free_buffers_.erase(free_buffers_.begin() + static_cast<std::ptrdiff_t>(i));
        return b;
      }
    }
  }
  return Buffer{std::unique_ptr<char[]>(new char[n]), n};
}

void DiskTier::GiveBuffer(Buffer b) {
  absl::MutexLock lock(&buffers_mu_);
  if (free_buffers_.size() < kMaxFreeBuffers) free_buffers_.push_back(std::move(b));
}

void DiskTier::Loop() {
  while (!stop_.HasBeenNotified()) {
    const bool more = SyncOnce();
    // A master without --enable_offload will not change its mind soon: ask once a second.
    if (!more) {
      stop_.WaitForNotificationWithTimeout(unsupported_ ? absl::Seconds(1)
                                                        : options_.sync_interval);
    }
  }
}

bool DiskTier::SyncOnce() {
  OffloadSyncRequest req;
  req.max_tasks = options_.max_tasks;
  const uint64_t epoch = options_.mount_epoch();
  if (epoch == 0) return false;  // not mounted yet
  if (epoch != reported_epoch_ && recovering_.empty()) {
    recovering_ = Refs(store_->List());  // the master must (re)learn everything held
    reported_epoch_ = epoch;
    MC_LOG(INFO) << "SSD tier: reporting " << recovering_.size() << " objects to the master";
  }
  TakeUpTo(&recovering_, kMaxBatchKeys, &req.recovered);
  {
    absl::MutexLock lock(&mu_);
    TakeUpTo(&stored_, kMaxBatchKeys, &req.stored);
    TakeUpTo(&lost_, kMaxBatchKeys, &req.lost);
  }
  absl::StatusOr<OffloadSyncResult> result = options_.master->OffloadSync(options_.client_id, req);
  syncs_.fetch_add(1);
  unsupported_ = !result.ok() && ToErrorCode(result.status()) == ErrorCode::NOT_SUPPORTED;
  if (!result.ok()) {
    sync_errors_.fetch_add(1);
    if (sync_errors_.load() % 100 == 1) {
      MC_LOG(WARNING) << "SSD tier: sync with the master failed: " << result.status();
    }
    // Tell it all again next time; a full report after a remount starts over anyway.
    recovering_.insert(recovering_.begin(), req.recovered.begin(), req.recovered.end());
    absl::MutexLock lock(&mu_);
    stored_.insert(stored_.begin(), req.stored.begin(), req.stored.end());
    lost_.insert(lost_.begin(), req.lost.begin(), req.lost.end());
    return false;
  }
  if (!result->drop.empty()) {
    std::vector<DiskObject> drop;
    drop.reserve(result->drop.size());
    for (const DiskObjectRef& o : result->drop) drop.push_back({o.key, o.put_id, o.size});
    store_->Remove(drop);
  }
  tasks_.fetch_add(result->tasks.size());
  WriteTasks(result->tasks);
  absl::MutexLock lock(&mu_);
  return result->tasks.size() >= options_.max_tasks || !recovering_.empty() || !stored_.empty() ||
         !lost_.empty();
}

void DiskTier::WriteTasks(const std::vector<OffloadTask>& tasks) {
  const uint64_t base = options_.segment.base, end = base + options_.segment.size;
  size_t i = 0;
  while (i < tasks.size()) {
    std::vector<DiskStore::Item> items;
    uint64_t bytes = 0;
    for (; i < tasks.size(); ++i) {
      const OffloadTask& t = tasks[i];
      if (t.address < base || t.size > end - t.address) {
        MC_LOG(WARNING) << "SSD tier: task for '" << t.key << "' lies outside the own segment";
        absl::MutexLock lock(&mu_);
        lost_.push_back({t.key, t.put_id, t.size});  // so the master stops holding it
        continue;
      }
      if (!items.empty() && bytes + t.size > options_.store.bucket_size_limit) break;
      items.push_back({t.key, t.put_id, reinterpret_cast<const void*>(t.address), t.size});
      bytes += t.size;
    }
    if (items.empty()) continue;
    DiskStore::CommitResult r = store_->Commit(store_->Stage(items));
    absl::MutexLock lock(&mu_);
    for (const DiskObject& o : r.stored) stored_.push_back({o.key, o.put_id, o.size});
    for (const DiskObject& o : r.evicted) lost_.push_back({o.key, o.put_id, o.size});
    // Not stored (a full disk, an I/O error): the master stops holding them in memory.
    for (const DiskObject& o : r.failed) lost_.push_back({o.key, o.put_id, o.size});
  }
}

absl::Status DiskTier::Serve(const std::string& request, ControlReplyStream& reply) {
  {
    absl::MutexLock lock(&serve_mu_);
    if (stopped_.load()) return MakeError(ErrorCode::RPC_FAIL, "the SSD tier is stopping");
    ++serving_;
  }
  absl::Status s = ServeCounted(request, reply);
  absl::MutexLock lock(&serve_mu_);
  --serving_;
  return s;
}

absl::Status DiskTier::ServeCounted(const std::string& request, ControlReplyStream& reply) {
  absl::StatusOr<std::vector<DiskReadItem>> decoded = DecodeDiskReadRequest(request);
  if (!decoded.ok()) return decoded.status();
  const std::vector<DiskReadItem>& items = *decoded;
  const size_t n = items.size();
  if (absl::Status s = reply.Begin(DiskReadReplySize(items)); !s.ok()) return s;
  std::vector<ErrorCode> codes(n, ErrorCode::OK);
  // Reads one item into a pooled buffer (zeros if it fails).
  auto read_one = [&](size_t k) {
    const DiskReadItem& it = items[k];
    Buffer buf = TakeBuffer(it.length);
    bool dropped = false;
    absl::StatusOr<DiskObject> held = store_->Find(it.key);
    absl::Status s = held.ok() ? store_->ReadRange(it.key, held->put_id, it.offset, it.length,
                                                   buf.data.get(), &dropped)
                               : held.status();
    if (!s.ok()) {
      std::memset(buf.data.get(), 0, it.length);
      codes[k] = ToErrorCode(s);
    }
    if (dropped) {
      absl::MutexLock lock(&mu_);
      lost_.push_back({it.key, held->put_id, held->size});
    }
    return buf;
  };
  // Pipeline: the tier's reader threads read ahead (at most kReadAhead items past the one being
  // sent), this thread sends each item as soon as it and those before it are read, so the disk
  // and the socket work at once. Every scheduled read finishes before Serve returns.
  constexpr size_t kReadAhead = 8;
  absl::Mutex mu;
  std::vector<Buffer> bufs(n);
  std::vector<bool> ready(n, false);
  size_t scheduled = 0, in_flight = 0;
  auto schedule = [&] {
    const size_t k = scheduled++;
    {
      absl::MutexLock lock(&mu);
      ++in_flight;
    }
    readers_->Schedule([&, k] {
      Buffer buf = read_one(k);
      absl::MutexLock lock(&mu);
      bufs[k] = std::move(buf);
      ready[k] = true;
      --in_flight;
    });
  };
  while (scheduled < std::min(n, kReadAhead)) schedule();
  absl::Status sent_status;
  uint64_t sent_bytes = 0;
  for (size_t k = 0; k < n && sent_status.ok(); ++k) {
    Buffer buf;
    {
      absl::MutexLock lock(&mu);
      auto is_ready = [&] { return static_cast<bool>(ready[k]); };
      mu.Await(absl::Condition(&is_ready));
      buf = std::move(bufs[k]);
    }
    if (scheduled < n) schedule();
    sent_status = reply.Write(buf.data.get(), items[k].length);
    sent_bytes += items[k].length;
    GiveBuffer(std::move(buf));
  }
  {
    absl::MutexLock lock(&mu);
    auto idle = [&] { return in_flight == 0; };
    mu.Await(absl::Condition(&idle));
  }
  for (Buffer& b : bufs) {
    if (b.data != nullptr) GiveBuffer(std::move(b));
  }
  if (!sent_status.ok()) return sent_status;
  served_reads_.fetch_add(n);
  served_bytes_.fetch_add(sent_bytes);
  const std::string trailer = EncodeDiskReadReplyTrailer(codes);
  return reply.Write(trailer.data(), trailer.size());
}

}  // namespace mooncake
