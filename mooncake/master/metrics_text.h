// Text bodies of the master's HTTP endpoints: Prometheus exposition for /metrics and the segment
// list for /get_all_segments. Pure functions of a metrics snapshot, so they are tested without a
// server.
#ifndef MOONCAKE_MASTER_METRICS_TEXT_H_
#define MOONCAKE_MASTER_METRICS_TEXT_H_

#include <string>
#include <vector>

#include "mooncake/master/master_service.h"
#include "mooncake/master/master_types.h"

namespace mooncake {

// PrometheusText renders `m` in the Prometheus text format (version 0.0.4): gauges as
// mooncake_master_<name>, counters as mooncake_master_<name>_total, each with HELP and TYPE.
std::string PrometheusText(const MasterMetrics& m);

// SegmentListText lists the distinct names of mounted segments, sorted, one per line ("" when none
// is mounted). SGLang's health probe only needs it non-empty once a segment is mounted.
std::string SegmentListText(const std::vector<SegmentStatus>& segments);

}  // namespace mooncake

#endif  // MOONCAKE_MASTER_METRICS_TEXT_H_
