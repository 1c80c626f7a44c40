#include "mooncake/store/store_core.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "mooncake/common/error_code.h"
#include "mooncake/common/logging.h"

namespace mooncake {
namespace {

int Code(const absl::Status& s) { return static_cast<int>(ToErrorCode(s)); }
int Code(ErrorCode c) { return static_cast<int>(c); }

uint64_t TotalSize(const std::vector<BufferRef>& parts) {
  uint64_t total = 0;
  for (const BufferRef& b : parts) total += b.size;
  return total;
}

// Appends requests that move `size` bytes between the parts (in order) and the replica.
// A disk replica (address 0) is read from its holder's SSD tier: `key` names the object there.
void AddScatterRequests(bool write, const std::vector<BufferRef>& parts, const ReplicaDesc& replica,
                        uint64_t size, std::vector<DataRequest>* out,
                        const std::string* key = nullptr) {
  uint64_t off = 0;
  for (const BufferRef& b : parts) {
    if (off >= size) break;
    uint64_t n = std::min(b.size, size - off);
    if (n > 0) {
      out->push_back(
          {write, b.ptr, replica.segment_name, replica.address + off, n, replica.segment_instance});
      if (replica.disk && key != nullptr) out->back().disk_key = *key;
    }
    off += n;
  }
}

// The non-empty keys (for the master) and their positions; empty keys keep INVALID_KEY. The
// usual batch has none, and is moved rather than copied.
void NonEmptyKeys(std::vector<std::string>* keys, std::vector<std::string>* valid,
                  std::vector<size_t>* index) {
  index->reserve(keys->size());
  bool any_empty = false;
  for (size_t i = 0; i < keys->size(); ++i) {
    if ((*keys)[i].empty()) {
      any_empty = true;
    } else {
      index->push_back(i);
    }
  }
  if (!any_empty) {
    *valid = std::move(*keys);
    return;
  }
  valid->reserve(index->size());
  for (size_t i : *index) valid->push_back(std::move((*keys)[i]));
}

// SplitKeys: per key a result (INVALID_KEY until answered), the non-empty keys for the master,
// and their positions. With no non-empty key it answers `done` itself and returns false.
struct SplitBatch {
  std::shared_ptr<std::vector<int>> out;
  std::shared_ptr<std::vector<std::string>> valid;
  std::shared_ptr<std::vector<size_t>> index;
};
bool SplitKeys(std::vector<std::string> keys, const std::function<void(std::vector<int>)>& done,
               SplitBatch* b) {
  b->out = std::make_shared<std::vector<int>>(keys.size(), Code(ErrorCode::INVALID_KEY));
  b->valid = std::make_shared<std::vector<std::string>>();
  b->index = std::make_shared<std::vector<size_t>>();
  NonEmptyKeys(&keys, b->valid.get(), b->index.get());
  if (!b->valid->empty()) return true;
  done(std::move(*b->out));
  return false;
}

// The first failure among results [first, last), or OK.
absl::Status FirstError(const std::vector<absl::Status>& results, size_t first, size_t last) {
  for (size_t r = first; r < last; ++r) {
    if (!results[r].ok()) return results[r];
  }
  return absl::OkStatus();
}

}  // namespace

StoreCore::StoreCore(StoreCoreOptions options)
    : options_(std::move(options)), segment_instance_(options_.segment.instance) {
  if (options_.replica_cache_entries > 0) {
    replica_cache_ = std::make_unique<ReplicaCache>(options_.replica_cache_entries);
  }
  MC_CHECK(options_.master != nullptr && options_.data != nullptr && options_.clock != nullptr &&
           options_.timer != nullptr)
      << "StoreCore needs every seam";
}

SegmentDesc StoreCore::segment() const {
  SegmentDesc s = options_.segment;
  s.instance = segment_instance_.load();
  return s;
}

template <typename R>
void StoreCore::CallMaster(std::function<R(MasterClient&)> rpc, std::function<void(R)> done) {
  auto result = std::make_shared<std::optional<R>>();
  options_.master->Call(
      [rpc = std::move(rpc), result](MasterClient& m) { result->emplace(rpc(m)); },
      [result, done = std::move(done)](absl::Status lost) {
        if (lost.ok() && !result->has_value()) {
          lost = MakeError(ErrorCode::RPC_FAIL, "the master channel replied without a result");
        }
        if (!lost.ok()) {
          done(R(lost));
          return;
        }
        done(std::move(**result));
      });
}

// ---------------------------------------------------------------------------------------------
// Segment and liveness

void StoreCore::Mount(std::function<void(absl::Status)> done) {
  if (options_.segment.size == 0) {
    done(absl::OkStatus());
    return;
  }
  CallMaster<absl::Status>([id = options_.client_id,
                            seg = segment()](MasterClient& m) { return m.MountSegment(id, seg); },
                           [this, done = std::move(done)](absl::Status s) {
                             if (s.ok()) {
                               mounted_ = true;
                               mount_epoch_.fetch_add(1);
                             }
                             done(std::move(s));
                           });
}

void StoreCore::Unmount(std::function<void(absl::Status)> done) {
  if (options_.segment.size == 0) {
    done(absl::OkStatus());
    return;
  }
  mounted_ = false;
  CallMaster<absl::Status>(
      [id = options_.client_id, seg = segment()](MasterClient& m) {
        return m.UnmountSegment(id, seg.name, seg.base);
      },
      std::move(done));
}

void StoreCore::Heartbeat(std::function<void(absl::Status)> done) {
  CallMaster<absl::StatusOr<HeartbeatResult>>(
      [id = options_.client_id](MasterClient& m) { return m.Heartbeat(id); },
      [this, done = std::move(done)](absl::StatusOr<HeartbeatResult> hb) {
        if (!hb.ok()) {
          done(hb.status());
          return;
        }
        // After a fence the remount is repeated until one is confirmed, even if the master knows
        // this client again: it may hold the segment under the instance from before the fence
        // (a mount that arrived late), and only the remount replaces it.
        if ((!hb->need_remount && !fenced_for_remount_.load()) || options_.segment.size == 0) {
          done(absl::OkStatus());
          return;
        }
        mounted_ = false;
        // The master will hand the whole segment out again: no write that reached it before
        // (say, before a stall longer than client_ttl) may land in it afterwards. The fence gives
        // the segment a new instance, so writes described for the old one are refused; it runs
        // once per episode, as a remount whose answer was lost may have reached the master
        // (docs/architecture.md, "Invariants").
        if (!fenced_for_remount_.exchange(true)) {
          if (const uint64_t renewed = options_.data->FenceInbound(); renewed != 0) {
            segment_instance_.store(renewed);
          }
        }
        CallMaster<absl::Status>([id = options_.client_id, seg = segment()](
                                     MasterClient& m) { return m.RemountSegment(id, {seg}); },
                                 [this, done](absl::Status s) {
                                   if (s.ok()) {
                                     mounted_ = true;
                                     mount_epoch_.fetch_add(1);
                                     fenced_for_remount_.store(false);
                                     MC_LOG(INFO) << "master had forgotten client "
                                                  << options_.client_id.ToString() << "; segment "
                                                  << options_.segment.name << " remounted";
                                   }
                                   done(std::move(s));
                                 });
      });
}

// ---------------------------------------------------------------------------------------------
// Exist, remove, size

void StoreCore::PerKeyCall(std::vector<std::string> keys, KeyRpc rpc, int (*to_result)(ErrorCode),
                           std::function<void(std::vector<int>)> done) {
  SplitBatch batch;
  if (!SplitKeys(std::move(keys), done, &batch)) return;
  auto out = batch.out;
  auto valid = batch.valid;
  auto index = batch.index;
  CallMaster<absl::StatusOr<std::vector<ErrorCode>>>(
      [valid, rpc = std::move(rpc)](MasterClient& m) { return rpc(m, *valid); },
      [out, index, to_result, done = std::move(done)](absl::StatusOr<std::vector<ErrorCode>> r) {
        for (size_t j = 0; j < index->size(); ++j) {
          (*out)[(*index)[j]] = r.ok() ? to_result((*r)[j]) : Code(r.status());
        }
        done(std::move(*out));
      });
}

void StoreCore::BatchIsExist(std::vector<std::string> keys,
                             std::function<void(std::vector<int>)> done) {
  if (replica_cache_ == nullptr) {
    PerKeyCall(
        std::move(keys),
        [](MasterClient& m, const std::vector<std::string>& valid) {
          return m.BatchExistKey(valid);
        },
        [](ErrorCode c) {
          if (c == ErrorCode::OK) return 1;
          if (c == ErrorCode::OBJECT_NOT_FOUND) return 0;
          return Code(c);
        },
        std::move(done));
    return;
  }
  // The replica lists instead of bare answers: the master leases what it finds either way, and
  // the get that usually follows reads from the cached lists without asking again.
  SplitBatch batch;
  if (!SplitKeys(std::move(keys), done, &batch)) return;
  auto out = batch.out;
  auto valid = batch.valid;
  auto index = batch.index;
  const int64_t t0 = options_.clock->NowNanos();
  CallMaster<absl::StatusOr<ReplicaListResult>>(
      [valid](MasterClient& m) { return m.BatchGetReplicaList(*valid); },
      [this, out, valid, index, t0,
       done = std::move(done)](absl::StatusOr<ReplicaListResult> list) {
        std::vector<std::pair<std::string, ObjectReplicas>> found;
        for (size_t j = 0; j < index->size(); ++j) {
          int& result = (*out)[(*index)[j]];
          if (!list.ok()) {
            result = Code(list.status());
            continue;
          }
          if (j >= list->objects.size()) {
            result = Code(ErrorCode::RPC_FAIL);
            continue;
          }
          ObjectReplicas& obj = list->objects[j];
          if (obj.error == ErrorCode::OK) {
            result = 1;
            found.emplace_back(std::move((*valid)[j]), std::move(obj));
          } else if (obj.error == ErrorCode::OBJECT_NOT_FOUND ||
                     obj.error == ErrorCode::REPLICA_IS_NOT_READY) {
            result = 0;  // absent, or still being written: not readable yet
          } else {
            result = Code(obj.error);
          }
        }
        if (list.ok()) replica_cache_->Put(std::move(found), t0, list->lease_ttl);
        done(std::move(*out));
      });
}

void StoreCore::BatchRemove(std::vector<std::string> keys, bool force,
                            std::function<void(std::vector<int>)> done) {
  if (replica_cache_ != nullptr) replica_cache_->Erase(keys);
  PerKeyCall(
      std::move(keys),
      [force](MasterClient& m, const std::vector<std::string>& valid) {
        return m.BatchRemove(valid, force);
      },
      [](ErrorCode c) { return Code(c); }, std::move(done));
}

void StoreCore::RemoveByRegex(std::string regex, bool force, std::function<void(int64_t)> done) {
  if (replica_cache_ != nullptr) replica_cache_->Clear();
  CallMaster<absl::StatusOr<uint64_t>>(
      [regex = std::move(regex), force](MasterClient& m) { return m.RemoveByRegex(regex, force); },
      [done = std::move(done)](absl::StatusOr<uint64_t> r) {
        done(r.ok() ? static_cast<int64_t>(*r) : Code(r.status()));
      });
}

void StoreCore::RemoveAll(bool force, std::function<void(int64_t)> done) {
  if (replica_cache_ != nullptr) replica_cache_->Clear();
  CallMaster<absl::StatusOr<uint64_t>>([force](MasterClient& m) { return m.RemoveAll(force); },
                                       [done = std::move(done)](absl::StatusOr<uint64_t> r) {
                                         done(r.ok() ? static_cast<int64_t>(*r) : Code(r.status()));
                                       });
}

void StoreCore::GetSize(std::string key, std::function<void(int64_t)> done) {
  if (key.empty()) {
    done(Code(ErrorCode::INVALID_KEY));
    return;
  }
  CallMaster<absl::StatusOr<ReplicaListResult>>(
      [key = std::move(key)](MasterClient& m) { return m.BatchGetReplicaList({key}); },
      [done = std::move(done)](absl::StatusOr<ReplicaListResult> list) {
        if (!list.ok()) return done(Code(list.status()));
        const ObjectReplicas& obj = list->objects[0];
        if (obj.error != ErrorCode::OK) return done(Code(obj.error));
        done(static_cast<int64_t>(obj.size));
      });
}

void StoreCore::BatchGetReplicas(std::vector<std::string> keys,
                                 std::function<void(std::vector<ObjectReplicas>)> done) {
  std::vector<ObjectReplicas> out(keys.size());
  std::vector<std::string> valid;
  std::vector<size_t> index;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].empty()) {
      out[i].error = ErrorCode::INVALID_KEY;
      continue;
    }
    valid.push_back(keys[i]);
    index.push_back(i);
  }
  if (valid.empty()) return done(std::move(out));
  CallMaster<absl::StatusOr<ReplicaListResult>>(
      [valid = std::move(valid)](MasterClient& m) { return m.BatchGetReplicaList(valid); },
      [out = std::move(out), index = std::move(index),
       done = std::move(done)](absl::StatusOr<ReplicaListResult> list) mutable {
        for (size_t j = 0; j < index.size(); ++j) {
          if (!list.ok()) {
            out[index[j]].error = ToErrorCode(list.status());
          } else if (j < list->objects.size()) {
            out[index[j]] = std::move(list->objects[j]);
          }
        }
        done(std::move(out));
      });
}

// ---------------------------------------------------------------------------------------------
// Put

struct StoreCore::PutOp {
  std::vector<std::string> keys;
  std::vector<std::vector<BufferRef>> buffers;
  std::vector<uint64_t> sizes;
  ReplicateConfig config;
  std::vector<int> out;
  std::function<void(std::vector<int>)> done;
  std::vector<size_t> todo;       // keys for the next put-start
  std::vector<size_t> waiting;    // keys another writer holds (REPLICA_IS_NOT_READY)
  std::vector<uint64_t> put_ids;  // per key, from the latest put-start that allocated it
  std::vector<size_t> unsettled;  // failed keys whose writes may still land
  int64_t wait_deadline_ns = 0;
  absl::Duration wait_interval;
};

void StoreCore::BatchPut(std::vector<std::string> keys, std::vector<std::vector<BufferRef>> buffers,
                         ReplicateConfig config, std::function<void(std::vector<int>)> done) {
  if (keys.size() != buffers.size()) {
    done(std::vector<int>(keys.size(), Code(ErrorCode::INVALID_PARAMS)));
    return;
  }
  auto op = std::make_shared<PutOp>();
  op->out.assign(keys.size(), 0);
  op->sizes.resize(keys.size());
  op->put_ids.resize(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    op->sizes[i] = TotalSize(buffers[i]);
    if (keys[i].empty()) {
      op->out[i] = Code(ErrorCode::INVALID_KEY);
    } else if (op->sizes[i] == 0) {
      op->out[i] = Code(ErrorCode::INVALID_PARAMS);
    } else {
      op->todo.push_back(i);
    }
  }
  op->keys = std::move(keys);
  op->buffers = std::move(buffers);
  op->config = std::move(config);
  op->done = std::move(done);
  op->wait_deadline_ns =
      options_.clock->NowNanos() + absl::ToInt64Nanoseconds(options_.put_wait_timeout);
  op->wait_interval = options_.put_wait_interval;
  PutRound(std::move(op));
}

void StoreCore::PutRound(std::shared_ptr<PutOp> op) {
  if (op->todo.empty()) {
    PutMaybeDone(std::move(op));
    return;
  }
  auto keys = std::make_shared<std::vector<std::string>>();
  auto sizes = std::make_shared<std::vector<uint64_t>>();
  auto put_ids = std::make_shared<std::vector<uint64_t>>();
  for (size_t i : op->todo) {
    keys->push_back(op->keys[i]);
    sizes->push_back(op->sizes[i]);
    put_ids->push_back(NextPutId());
  }
  CallMaster<absl::StatusOr<std::vector<ObjectReplicas>>>(
      [keys, sizes, put_ids, config = op->config](MasterClient& m) {
        return m.BatchPutStart(*keys, *sizes, config, *put_ids);
      },
      [this, op, keys, put_ids](absl::StatusOr<std::vector<ObjectReplicas>> started) {
        std::vector<size_t> todo = std::move(op->todo);
        op->todo.clear();
        if (!started.ok()) {
          // The master may have allocated anyway. Our put ids name exactly those puts, so they
          // can be given back without touching another writer's (else they would wait for
          // put_start_discard_timeout); nothing of ours was written into them.
          for (size_t i : todo) op->out[i] = Code(started.status());
          Revoke(std::move(*keys), std::move(*put_ids), /*quarantine=*/false);
          PutMaybeDone(op);
          return;
        }
        PutWrite(op, std::move(todo), std::move(*started));
      });
}

void StoreCore::PutWrite(std::shared_ptr<PutOp> op, std::vector<size_t> todo,
                         std::vector<ObjectReplicas> started) {
  // One transfer for every replica of every key being written.
  auto reqs = std::vector<DataRequest>();
  auto writing = std::make_shared<std::vector<size_t>>();
  auto ranges = std::make_shared<std::vector<std::pair<size_t, size_t>>>();
  for (size_t j = 0; j < todo.size(); ++j) {
    const size_t i = todo[j];
    const ObjectReplicas& obj = started[j];
    if (obj.error == ErrorCode::OBJECT_ALREADY_EXISTS) {
      op->out[i] = 0;  // immutable objects: a complete object under the key is success
      continue;
    }
    if (obj.error == ErrorCode::REPLICA_IS_NOT_READY) {
      op->waiting.push_back(i);  // another writer's put is in flight
      continue;
    }
    if (obj.error != ErrorCode::OK) {
      op->out[i] = Code(obj.error);
      continue;
    }
    writing->push_back(i);
    op->put_ids[i] = obj.put_id;
    const size_t first = reqs.size();
    for (const ReplicaDesc& r : obj.replicas) {
      AddScatterRequests(true, op->buffers[i], r, op->sizes[i], &reqs);
    }
    ranges->emplace_back(first, reqs.size());
  }
  if (writing->empty()) {
    PutMaybeDone(std::move(op));
    return;
  }
  options_.data->Transfer(
      std::move(reqs), [this, op, writing, ranges](std::vector<absl::Status> results) {
        std::vector<size_t> written, failed;
        for (size_t k = 0; k < writing->size(); ++k) {
          const size_t i = (*writing)[k];
          absl::Status s = FirstError(results, (*ranges)[k].first, (*ranges)[k].second);
          if (s.ok()) {
            written.push_back(i);
            continue;
          }
          op->out[i] = Code(s);
          failed.push_back(i);
          for (size_t r = (*ranges)[k].first; r < (*ranges)[k].second; ++r) {
            if (IsUnsettledWrite(results[r])) {
              op->unsettled.push_back(i);
              break;
            }
          }
        }
        PutFinish(op, std::move(written), std::move(failed));
      });
}

void StoreCore::PutFinish(std::shared_ptr<PutOp> op, std::vector<size_t> written,
                          std::vector<size_t> failed) {
  if (!failed.empty()) {
    // Every write has finished (DataPath contract), so the space may be handed out again, except
    // where a write could not be settled: that space stays reserved. The put ids make sure only
    // our puts are revoked: if the master dropped one meanwhile, the key may belong to another
    // writer's put by now.
    std::vector<std::string> settled_keys, unsettled_keys;
    std::vector<uint64_t> settled_ids, unsettled_ids;
    for (size_t i : failed) {
      const bool unsettled =
          std::find(op->unsettled.begin(), op->unsettled.end(), i) != op->unsettled.end();
      (unsettled ? unsettled_keys : settled_keys).push_back(op->keys[i]);
      (unsettled ? unsettled_ids : settled_ids).push_back(op->put_ids[i]);
    }
    op->unsettled.clear();
    if (!settled_keys.empty()) Revoke(std::move(settled_keys), std::move(settled_ids), false);
    if (!unsettled_keys.empty()) Revoke(std::move(unsettled_keys), std::move(unsettled_ids), true);
  }
  if (written.empty()) {
    PutMaybeDone(std::move(op));
    return;
  }
  auto end = std::make_shared<std::vector<std::string>>();
  auto end_ids = std::make_shared<std::vector<uint64_t>>();
  for (size_t i : written) {
    end->push_back(op->keys[i]);
    end_ids->push_back(op->put_ids[i]);
  }
  CallMaster<absl::StatusOr<std::vector<ErrorCode>>>(
      [end, end_ids](MasterClient& m) { return m.BatchPutEnd(*end, *end_ids); },
      [this, op, written = std::move(written)](absl::StatusOr<std::vector<ErrorCode>> ended) {
        for (size_t k = 0; k < written.size(); ++k) {
          const size_t i = written[k];
          if (!ended.ok()) {
            op->out[i] = Code(ended.status());
          } else if ((*ended)[k] == ErrorCode::OBJECT_ALREADY_EXISTS) {
            op->out[i] = 0;  // our put was dropped, but another writer completed the object
          } else if ((*ended)[k] != ErrorCode::OK) {
            op->out[i] = Code((*ended)[k]);
          }
        }
        PutMaybeDone(op);
      });
}

void StoreCore::Revoke(std::vector<std::string> keys, std::vector<uint64_t> put_ids,
                       bool quarantine) {
  auto k = std::make_shared<std::vector<std::string>>(std::move(keys));
  auto ids = std::make_shared<std::vector<uint64_t>>(std::move(put_ids));
  CallMaster<absl::StatusOr<std::vector<ErrorCode>>>(
      [k, ids, quarantine](MasterClient& m) { return m.BatchPutRevoke(*k, *ids, quarantine); },
      [](absl::StatusOr<std::vector<ErrorCode>> r) {
        if (!r.ok()) MC_LOG(WARNING) << "put revoke failed: " << r.status();
      });
}

uint64_t StoreCore::NextPutId() {
  // splitmix64 of (client id, counter): distinct per client and call; the top bit set keeps the
  // ids apart from the ones a master picks itself.
  uint64_t x = options_.client_id.high ^ (options_.client_id.low * 0x9e3779b97f4a7c15ULL) ^
               put_counter_.fetch_add(1, std::memory_order_relaxed) * 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x | (uint64_t{1} << 63);
}

void StoreCore::PutMaybeDone(std::shared_ptr<PutOp> op) {
  if (!op->waiting.empty()) {
    PutAwaitOthers(std::move(op));
    return;
  }
  op->done(std::move(op->out));
}

void StoreCore::PutAwaitOthers(std::shared_ptr<PutOp> op) {
  if (options_.clock->NowNanos() >= op->wait_deadline_ns) {
    // The other writer neither finished nor gave up in time: the object is not readable yet.
    for (size_t i : op->waiting) op->out[i] = Code(ErrorCode::REPLICA_IS_NOT_READY);
    op->waiting.clear();
    op->done(std::move(op->out));
    return;
  }
  const absl::Duration delay = op->wait_interval;
  op->wait_interval = std::min(op->wait_interval * 2, absl::Milliseconds(50));
  options_.timer(delay, [this, op] {
    // Try again: the other put became COMPLETE (OBJECT_ALREADY_EXISTS), or was revoked or
    // discarded (we write it), or is still in flight (wait more).
    op->todo = std::move(op->waiting);
    op->waiting.clear();
    PutRound(op);
  });
}

// ---------------------------------------------------------------------------------------------
// Get

struct StoreCore::GetOp {
  std::vector<int64_t> out;
  std::vector<std::vector<BufferRef>> buffers;
  std::function<void(std::vector<int64_t>)> done;
  // Per non-empty key: its position in `out`, the key, its replica list, and the lease that
  // list carries (from no later than lease_start, for lease_ns).
  std::vector<size_t> index;
  std::vector<std::string> keys;
  std::vector<ObjectReplicas> objects;
  std::vector<int64_t> lease_start;
  std::vector<int64_t> lease_ns;
};

void StoreCore::BatchGet(std::vector<std::string> keys, std::vector<std::vector<BufferRef>> buffers,
                         std::function<void(std::vector<int64_t>)> done) {
  if (keys.size() != buffers.size()) {
    done(std::vector<int64_t>(keys.size(), Code(ErrorCode::INVALID_PARAMS)));
    return;
  }
  auto op = std::make_shared<GetOp>();
  op->out.assign(keys.size(), 0);
  op->buffers = std::move(buffers);
  op->done = std::move(done);
  const int64_t now = options_.clock->NowNanos();
  auto misses = std::make_shared<std::vector<std::string>>();
  auto miss_index = std::make_shared<std::vector<size_t>>();
  // Lists the exist call just brought back serve this read (replica_cache.h).
  std::vector<std::optional<ReplicaCache::Entry>> cached;
  if (replica_cache_ != nullptr) cached = replica_cache_->Take(keys, now);
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].empty()) {
      op->out[i] = Code(ErrorCode::INVALID_KEY);
      continue;
    }
    op->index.push_back(i);
    op->keys.push_back(keys[i]);
    op->objects.emplace_back();
    op->lease_start.push_back(now);
    op->lease_ns.push_back(0);
    if (!cached.empty() && cached[i].has_value()) {
      op->objects.back() = std::move(cached[i]->replicas);
      op->lease_start.back() = cached[i]->lease_start_ns;
      op->lease_ns.back() = cached[i]->lease_ns;
      continue;
    }
    miss_index->push_back(op->keys.size() - 1);
    misses->push_back(std::move(keys[i]));
  }
  if (op->keys.empty()) {
    op->done(std::move(op->out));
    return;
  }
  if (misses->empty()) {
    GetRead(std::move(op));
    return;
  }
  // The lease is counted from before the request left: never later than the master's grant.
  CallMaster<absl::StatusOr<ReplicaListResult>>(
      [misses](MasterClient& m) { return m.BatchGetReplicaList(*misses); },
      [this, op, miss_index](absl::StatusOr<ReplicaListResult> list) {
        for (size_t j = 0; j < miss_index->size(); ++j) {
          ObjectReplicas& obj = op->objects[(*miss_index)[j]];
          if (!list.ok()) {
            obj.error = ToErrorCode(list.status());
          } else if (j < list->objects.size()) {
            obj = std::move(list->objects[j]);
            op->lease_ns[(*miss_index)[j]] = absl::ToInt64Nanoseconds(list->lease_ttl);
          } else {
            obj.error = ErrorCode::RPC_FAIL;  // the master answered fewer keys than asked
          }
        }
        GetRead(op);
      });
}

void StoreCore::GetRead(std::shared_ptr<GetOp> op) {
  std::vector<DataRequest> reqs;
  auto reading = std::make_shared<std::vector<size_t>>();  // positions in op->keys
  auto ranges = std::make_shared<std::vector<std::pair<size_t, size_t>>>();
  for (size_t j = 0; j < op->keys.size(); ++j) {
    const ObjectReplicas& obj = op->objects[j];
    const size_t i = op->index[j];
    if (obj.error != ErrorCode::OK) {
      op->out[i] = Code(obj.error);
      continue;
    }
    if (obj.replicas.empty()) {
      op->out[i] = Code(ErrorCode::INVALID_REPLICA);
      continue;
    }
    if (TotalSize(op->buffers[i]) < obj.size) {
      op->out[i] = Code(ErrorCode::INVALID_PARAMS);  // the buffer cannot hold the object
      continue;
    }
    // Closest replica: own segment, then same host, then the network; a memory replica before
    // the disk copy (docs/ssd_tier.md).
    const ReplicaDesc* best = &obj.replicas[0];
    int best_rank = 99;
    for (const ReplicaDesc& r : obj.replicas) {
      const int rank = options_.data->Closeness(r.segment_name) + (r.disk ? 10 : 0);
      if (rank < best_rank) {
        best_rank = rank;
        best = &r;
      }
    }
    reading->push_back(j);
    const size_t first = reqs.size();
    AddScatterRequests(false, op->buffers[i], *best, obj.size, &reqs, &op->keys[j]);
    ranges->emplace_back(first, reqs.size());
    op->out[i] = static_cast<int64_t>(obj.size);
  }
  if (reading->empty()) {
    op->done(std::move(op->out));
    return;
  }
  options_.data->Transfer(
      std::move(reqs), [this, op, reading, ranges](std::vector<absl::Status> results) {
        // The object may have been evicted and its space reused after the lease ended: bytes
        // that arrived later are not trusted.
        const int64_t now = options_.clock->NowNanos();
        for (size_t k = 0; k < reading->size(); ++k) {
          const size_t j = (*reading)[k];
          const size_t i = op->index[j];
          absl::Status s = FirstError(results, (*ranges)[k].first, (*ranges)[k].second);
          if (!s.ok()) {
            op->out[i] = Code(s);
          } else if (now - op->lease_start[j] > op->lease_ns[j]) {
            op->out[i] = Code(ErrorCode::LEASE_EXPIRED);
          }
        }
        op->done(std::move(op->out));
      });
}

}  // namespace mooncake
