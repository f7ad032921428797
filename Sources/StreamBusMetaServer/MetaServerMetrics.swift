import CoreMetrics
import NIOConcurrencyHelpers
import Prometheus

/// The metaserver's metrics, recorded through swift-metrics into a registry of its own (so
/// several servers in one test process do not share values) and rendered for `/metrics`.
public final class MetaServerMetrics: Sendable {
  public let registry: PrometheusCollectorRegistry
  private let factory: PrometheusMetricsFactory

  private let raftTerm: CoreMetrics.Gauge
  private let raftCommitIndex: CoreMetrics.Gauge
  private let raftAppliedIndex: CoreMetrics.Gauge
  private let isLeader: CoreMetrics.Gauge
  private let leaderChanges: CoreMetrics.Counter
  private let brokers: CoreMetrics.Gauge
  private let fencedBrokers: CoreMetrics.Gauge
  private let topics: CoreMetrics.Gauge
  private let partitions: CoreMetrics.Gauge
  private let metadataOffset: CoreMetrics.Gauge
  private let heartbeatQueueDepth: CoreMetrics.Gauge
  private let requestCounters = NIOLockedValueBox<[String: CoreMetrics.Counter]>([:])
  private let requestTimers = NIOLockedValueBox<[String: CoreMetrics.Timer]>([:])
  /// The leader id last recorded, to count changes (nil before the first observation).
  private let lastLeaderID = NIOLockedValueBox<UInt64??>(nil)

  public init() {
    let registry = PrometheusCollectorRegistry()
    var factory = PrometheusMetricsFactory(registry: registry)
    // Metadata requests complete in well under a millisecond to a few seconds.
    factory.defaultDurationHistogramBuckets = [
      .microseconds(100), .microseconds(250), .microseconds(500), .milliseconds(1),
      .milliseconds(2), .milliseconds(5), .milliseconds(10), .milliseconds(25),
      .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
      .seconds(1), .seconds(2.5), .seconds(5), .seconds(10),
    ]
    self.registry = registry
    self.factory = factory
    raftTerm = CoreMetrics.Gauge(label: "streambus_metaserver_raft_term", factory: factory)
    raftCommitIndex = CoreMetrics.Gauge(
      label: "streambus_metaserver_raft_commit_index", factory: factory)
    raftAppliedIndex = CoreMetrics.Gauge(
      label: "streambus_metaserver_raft_applied_index", factory: factory)
    isLeader = CoreMetrics.Gauge(label: "streambus_metaserver_is_leader", factory: factory)
    leaderChanges = CoreMetrics.Counter(
      label: "streambus_metaserver_leader_changes_total", factory: factory)
    brokers = CoreMetrics.Gauge(label: "streambus_metaserver_brokers", factory: factory)
    fencedBrokers = CoreMetrics.Gauge(
      label: "streambus_metaserver_fenced_brokers", factory: factory)
    topics = CoreMetrics.Gauge(label: "streambus_metaserver_topics", factory: factory)
    partitions = CoreMetrics.Gauge(label: "streambus_metaserver_partitions", factory: factory)
    metadataOffset = CoreMetrics.Gauge(
      label: "streambus_metaserver_metadata_offset", factory: factory)
    heartbeatQueueDepth = CoreMetrics.Gauge(
      label: "streambus_metaserver_controller_heartbeats_queued", factory: factory)
  }

  /// Raft progress as this node sees it; a leader change is counted when `leaderID` differs
  /// from the previous call's (a node learning of its first leader counts too).
  public func recordRaft(
    term: UInt64, commitIndex: UInt64, appliedIndex: UInt64, leaderID: UInt64?, isLeader: Bool
  ) {
    raftTerm.record(Int64(clamping: term))
    raftCommitIndex.record(Int64(clamping: commitIndex))
    raftAppliedIndex.record(Int64(clamping: appliedIndex))
    self.isLeader.record(isLeader ? 1 : 0)
    let changed = lastLeaderID.withLockedValue { last -> Bool in
      defer { last = .some(leaderID) }
      guard let previous = last else { return leaderID != nil }
      return previous != leaderID && leaderID != nil
    }
    if changed {
      leaderChanges.increment()
    }
  }

  /// Counts of the applied metadata image.
  public func recordImage(
    brokers brokerCount: Int, fencedBrokers fencedCount: Int, topics topicCount: Int,
    partitions partitionCount: Int, offset: Int64
  ) {
    brokers.record(brokerCount)
    fencedBrokers.record(fencedCount)
    topics.record(topicCount)
    partitions.record(partitionCount)
    metadataOffset.record(offset)
  }

  public func recordHeartbeatQueueDepth(_ depth: Int) {
    heartbeatQueueDepth.record(depth)
  }

  /// One API request: counted by api and result code, timed by api.
  public func recordRequest(api: String, errorName: String, durationNanoseconds: Int64) {
    let key = "\(api)\u{0}\(errorName)"
    let counter = requestCounters.withLockedValue { counters -> CoreMetrics.Counter in
      if let existing = counters[key] { return existing }
      let created = CoreMetrics.Counter(
        label: "streambus_metaserver_requests_total",
        dimensions: [("api", api), ("error", errorName)], factory: factory)
      counters[key] = created
      return created
    }
    counter.increment()
    let timer = requestTimers.withLockedValue { timers -> CoreMetrics.Timer in
      if let existing = timers[api] { return existing }
      let created = CoreMetrics.Timer(
        label: "streambus_metaserver_request_duration_seconds", dimensions: [("api", api)],
        preferredDisplayUnit: .seconds, factory: factory)
      timers[api] = created
      return created
    }
    timer.recordNanoseconds(durationNanoseconds)
  }

  /// The Prometheus text exposition of every metric.
  public func render() -> [UInt8] {
    registry.emitToBuffer()
  }
}
