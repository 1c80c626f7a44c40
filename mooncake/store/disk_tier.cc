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
    return MakeError(ErrorCode::INVALID_PARAMS, "a disk tier needs a master, an engine and a mount");
  }
  if (options.segment.size == 0) {
    return MakeError(ErrorCode::INVALID_PARAMS,
                     "enable_ssd_offload needs global_segment_size > 0: the SSD tier keeps what "
                     "this process's segment holds");
  }
  std::unique_ptr<DiskTier> tier(new DiskTier(std::move(options)));
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
      [raw](const std::string& request) { return raw->Serve(request); });
  tier->thread_ = std::thread([raw] { raw->Loop(); });
  return tier;
}

DiskTier::~DiskTier() { Stop(); }

void DiskTier::Stop() {
  if (stopped_.exchange(true)) return;
  options_.engine->SetServiceHandler(nullptr);
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
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

void DiskTier::Loop() {
  while (!stop_.HasBeenNotified()) {
    const bool more = SyncOnce();
    if (!more) stop_.WaitForNotificationWithTimeout(options_.sync_interval);
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

absl::StatusOr<std::string> DiskTier::Serve(const std::string& request) {
  absl::StatusOr<std::vector<DiskReadItem>> items = DecodeDiskReadRequest(request);
  if (!items.ok()) return items.status();
  std::string reply(DiskReadReplySize(*items), '\0');
  const uint32_t count = static_cast<uint32_t>(items->size());
  std::memcpy(reply.data(), &count, 4);
  std::vector<uint64_t> offsets(items->size());
  uint64_t off = DiskReadReplyDataOffset(items->size());
  for (size_t k = 0; k < items->size(); ++k) {
    offsets[k] = off;
    off += (*items)[k].length;
  }
  auto read_one = [&](size_t k) {
    const DiskReadItem& it = (*items)[k];
    bool dropped = false;
    absl::StatusOr<DiskObject> held = store_->Find(it.key);
    absl::Status s = held.ok() ? store_->ReadRange(it.key, held->put_id, it.offset, it.length,
                                                   reply.data() + offsets[k], &dropped)
                               : held.status();
    const int32_t code = static_cast<int32_t>(ToErrorCode(s));
    std::memcpy(reply.data() + 4 + 4 * k, &code, 4);
    if (dropped) {
      absl::MutexLock lock(&mu_);
      lost_.push_back({it.key, held->put_id, held->size});
    }
  };
  const size_t threads =
      std::min<size_t>(static_cast<size_t>(std::max(1, options_.read_threads)), items->size());
  if (threads <= 1) {
    for (size_t k = 0; k < items->size(); ++k) read_one(k);
  } else {
    std::atomic<size_t> next{0};
    std::vector<std::thread> pool;
    for (size_t t = 0; t < threads; ++t) {
      pool.emplace_back([&] {
        for (size_t k = next.fetch_add(1); k < items->size(); k = next.fetch_add(1)) read_one(k);
      });
    }
    for (std::thread& t : pool) t.join();
  }
  served_reads_.fetch_add(items->size());
  served_bytes_.fetch_add(off - DiskReadReplyDataOffset(items->size()));
  return reply;
}

}  // namespace mooncake
