#include "mooncake/master/metrics_text.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace mooncake {
namespace {

void Metric(std::string* out, const char* name, const char* type, const char* help,
            uint64_t value) {
  const bool counter = std::string_view(type) == "counter";
  const std::string full = absl::StrCat("mooncake_master_", name, counter ? "_total" : "");
  absl::StrAppend(out, "# HELP ", full, " ", help, "\n# TYPE ", full, " ", type, "\n", full, " ",
                  value, "\n");
}

}  // namespace

std::string PrometheusText(const MasterMetrics& m) {
  std::string out;
  Metric(&out, "clients", "gauge", "Clients the master knows (heartbeating or mounted).",
         m.clients);
  Metric(&out, "segments", "gauge", "Mounted segments.", m.segments);
  Metric(&out, "capacity_bytes", "gauge", "Bytes in mounted segments.", m.capacity_bytes);
  Metric(&out, "allocated_bytes", "gauge", "Bytes allocated to objects and pending releases.",
         m.allocated_bytes);
  Metric(&out, "discarded_bytes", "gauge", "Bytes of discarded puts awaiting release.",
         m.discarded_bytes);
  Metric(&out, "objects", "gauge", "Objects (complete and processing).", m.objects);
  Metric(&out, "processing_objects", "gauge", "Objects between put start and put end.",
         m.processing_objects);
  Metric(&out, "exist_calls", "counter", "Exist calls (batches).", m.exist_calls);
  Metric(&out, "exist_keys", "counter", "Keys asked by exist.", m.exist_keys);
  Metric(&out, "exist_hits", "counter", "Keys found by exist.", m.exist_hits);
  Metric(&out, "get_replica_list_calls", "counter", "Get-replica-list calls (batches).",
         m.get_replica_list_calls);
  Metric(&out, "get_replica_list_keys", "counter", "Keys asked by get-replica-list.",
         m.get_replica_list_keys);
  Metric(&out, "get_replica_list_hits", "counter", "Keys found by get-replica-list.",
         m.get_replica_list_hits);
  Metric(&out, "put_start_calls", "counter", "Put-start calls (batches).", m.put_start_calls);
  Metric(&out, "put_start_keys", "counter", "Keys in put-start calls.", m.put_start_keys);
  Metric(&out, "put_start_ok", "counter", "Keys allocated by put-start.", m.put_start_ok);
  Metric(&out, "put_start_already_exists", "counter", "Put-start keys that already existed.",
         m.put_start_already_exists);
  Metric(&out, "put_start_no_space", "counter", "Put-start keys refused for lack of space.",
         m.put_start_no_space);
  Metric(&out, "put_end_calls", "counter", "Put-end calls (batches).", m.put_end_calls);
  Metric(&out, "put_end_keys", "counter", "Keys in put-end calls.", m.put_end_keys);
  Metric(&out, "put_revoke_calls", "counter", "Put-revoke calls (batches).", m.put_revoke_calls);
  Metric(&out, "put_revoke_keys", "counter", "Keys in put-revoke calls.", m.put_revoke_keys);
  Metric(&out, "remove_keys", "counter", "Keys in remove calls.", m.remove_keys);
  Metric(&out, "removed_objects", "counter", "Objects removed by remove, regex or remove-all.",
         m.removed_objects);
  Metric(&out, "evicted_objects", "counter", "Objects evicted.", m.evicted_objects);
  Metric(&out, "evicted_bytes", "counter", "Bytes of evicted objects.", m.evicted_bytes);
  Metric(&out, "eviction_runs", "counter", "Eviction passes.", m.eviction_runs);
  Metric(&out, "discarded_puts", "counter", "Abandoned puts discarded.", m.discarded_puts);
  Metric(&out, "mount_calls", "counter", "Mount and remount calls.", m.mount_calls);
  Metric(&out, "unmount_calls", "counter", "Unmount calls.", m.unmount_calls);
  Metric(&out, "heartbeat_calls", "counter", "Heartbeats received.", m.heartbeat_calls);
  Metric(&out, "expired_clients", "counter", "Clients dropped after client_ttl without heartbeat.",
         m.expired_clients);
  Metric(&out, "dropped_replicas", "counter", "Replicas lost with an unmounted segment.",
         m.dropped_replicas);
  Metric(&out, "offload_tasks", "counter", "Objects handed to SSD tiers to write.",
         m.offload_tasks);
  Metric(&out, "offload_stored", "counter", "Disk copies reported durable.", m.offload_stored);
  Metric(&out, "offload_recovered", "counter", "Objects recovered from restarted SSD tiers.",
         m.offload_recovered);
  Metric(&out, "offload_lost", "counter", "Disk copies reported lost.", m.offload_lost);
  Metric(&out, "offload_refused", "counter", "SSD tier reports refused (another put, or gone).",
         m.offload_refused);
  Metric(&out, "offload_queue_overflow", "counter",
         "Objects dropped from a full offload queue unwritten.", m.offload_queue_overflow);
  Metric(&out, "evicted_to_disk", "counter",
         "Evictions that freed memory and kept the object on disk.", m.evicted_to_disk);
  Metric(&out, "auth_refusals", "counter",
         "Calls and connections refused for a missing or wrong MC_AUTH_TOKEN.", m.auth_refusals);
  return out;
}

std::string SegmentListText(const std::vector<SegmentStatus>& segments) {
  std::vector<std::string> names;
  names.reserve(segments.size());
  for (const SegmentStatus& s : segments) names.push_back(s.segment.name);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  std::string out;
  for (const std::string& name : names) absl::StrAppend(&out, name, "\n");
  return out;
}

}  // namespace mooncake
