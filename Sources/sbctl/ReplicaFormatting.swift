import StreamBusMetaClient
import StreamBusMetaProtocol
import StreamBusProtocol

// `topic describe` and `cluster status` in cluster mode: the metadata quorum's assignment
// (leader, epochs, replicas, ISR) beside what each replica's broker reports about its own log
// (ReplicaStatus). Pure functions of the answers, so tests check the shapes without brokers.

/// What sbctl learned about one replica of a partition.
enum ReplicaState: Equatable, Sendable {
  /// The broker's own ReplicaStatus for the partition (its error code may be set).
  case reported(ReplicaStatusResponse.Partition)
  /// No usable answer: unreachable broker, no address, or the partition missing from it.
  case missing(String)

  /// The partition as the broker reported it without error.
  var status: ReplicaStatusResponse.Partition? {
    guard case .reported(let status) = self, status.errorCode == .none else { return nil }
    return status
  }

  var errorText: String? {
    switch self {
    case .missing(let reason): return reason
    case .reported(let status):
      guard status.errorCode != .none else { return nil }
      return status.errorCode.name + (status.errorMessage.map { ": \($0)" } ?? "")
    }
  }
}

/// Under-replicated: fewer ISR members than replicas. Offline: no leader.
enum PartitionHealth {
  static func isOffline(_ partition: MetaPartition) -> Bool { partition.leader < 0 }

  static func isUnderReplicated(_ partition: MetaPartition) -> Bool {
    Set(partition.isr).intersection(partition.replicas).count < Set(partition.replicas).count
  }

  /// `offline`, `under-replicated`, both comma-separated, or `ok`.
  static func marker(_ partition: MetaPartition) -> String {
    var markers: [String] = []
    if isOffline(partition) { markers.append("offline") }
    if isUnderReplicated(partition) { markers.append("under-replicated") }
    return markers.isEmpty ? "ok" : markers.joined(separator: ",")
  }
}

/// One partition of `topic describe`: its assignment and each replica's state.
struct PartitionReport: Equatable, Sendable {
  var assignment: MetaPartition
  /// By broker id, for every replica of the assignment.
  var replicas: [Int32: ReplicaState]

  /// The leader's high watermark, when the leader answered as leader.
  var highWatermark: Int64? {
    guard let status = replicas[assignment.leader]?.status,
      status.role == .leader || status.role == .standalone
    else { return nil }
    return status.highWatermark
  }

  /// The replica's log end offset as its own broker reported it.
  func logEndOffset(of brokerID: Int32) -> Int64? {
    replicas[brokerID]?.status?.logEndOffset
  }

  /// The leader's view of a follower (its durable end offset at its last fetch).
  func leaderView(of brokerID: Int32) -> ReplicaStatusResponse.Follower? {
    replicas[assignment.leader]?.status?.followers.first { $0.brokerID == brokerID }
  }

  /// Pairs the quorum's assignment with the brokers' answers (broker id → answer).
  static func build(
    topic: DescribeTopicResponse, answers: [Int32: ReplicaStatusClient.Answer]
  ) -> [PartitionReport] {
    topic.partitions.sorted { $0.partition < $1.partition }.map { assignment in
      var replicas: [Int32: ReplicaState] = [:]
      for brokerID in assignment.replicas {
        switch answers[brokerID] {
        case .none:
          replicas[brokerID] = .missing("broker \(brokerID) has no known address")
        case .unavailable(let reason):
          replicas[brokerID] = .missing(reason)
        case .answered(let response):
          let found = response.topics.first { $0.name == topic.name }?.partitions.first {
            $0.partition == assignment.partition
          }
          replicas[brokerID] =
            found.map(ReplicaState.reported)
            ?? .missing(
              "broker \(brokerID) does not host \(topic.name)-\(assignment.partition) yet")
        }
      }
      return PartitionReport(assignment: assignment, replicas: replicas)
    }
  }
}

enum TopicDescribeOutput {
  static let header = [
    "PARTITION", "LEADER", "EPOCH", "PARTITION-EPOCH", "REPLICAS", "ISR", "ADDING", "REMOVING",
    "HW", "LEO", "STATUS",
  ]

  /// `1=120,2=120,3=-`: each replica's log end offset in replica order.
  static func logEndOffsets(_ report: PartitionReport) -> String {
    guard !report.assignment.replicas.isEmpty else { return "-" }
    return report.assignment.replicas.map { brokerID in
      "\(brokerID)=" + (report.logEndOffset(of: brokerID).map(String.init) ?? "-")
    }.joined(separator: ",")
  }

  static func table(_ topic: DescribeTopicResponse, _ reports: [PartitionReport]) -> [String] {
    var lines = [
      "Topic: \(topic.name)  Partitions: \(topic.partitions.count)  "
        + "Configs: \(MetaTopicOutput.configsText(topic.configs))  TopicID: \(topic.topicID)"
    ]
    var rows = [header]
    for report in reports {
      let partition = report.assignment
      rows.append([
        String(partition.partition), String(partition.leader), String(partition.leaderEpoch),
        String(partition.partitionEpoch), idList(partition.replicas), idList(partition.isr),
        idList(partition.addingReplicas), idList(partition.removingReplicas),
        report.highWatermark.map(String.init) ?? "-", logEndOffsets(report),
        PartitionHealth.marker(partition),
      ])
    }
    lines += renderTable(rows)
    let unanswered = reports.flatMap { report in
      report.assignment.replicas.compactMap { brokerID -> String? in
        guard let error = report.replicas[brokerID]?.errorText else { return nil }
        return "  \(topic.name)-\(report.assignment.partition) on broker \(brokerID): \(error)"
      }
    }
    if !unanswered.isEmpty {
      lines.append("Replicas without status (shown as -):")
      lines += unanswered
    }
    return lines
  }

  static func optionalInteger(_ value: Int64?) -> JSONValue {
    value.map(JSONValue.integer) ?? .null
  }

  static func replicaJSON(_ report: PartitionReport, brokerID: Int32) -> JSONValue {
    let state = report.replicas[brokerID]
    let status = state?.status
    let leaderView = report.leaderView(of: brokerID)
    return .object([
      ("broker", .integer(Int64(brokerID))),
      ("role", status.map { .string($0.role.description) } ?? .null),
      ("inIsr", .bool(report.assignment.isr.contains(brokerID))),
      ("logEndOffset", optionalInteger(status?.logEndOffset)),
      ("durableEndOffset", optionalInteger(status?.durableEndOffset)),
      ("highWatermark", optionalInteger(status?.highWatermark)),
      ("leaderEpoch", optionalInteger(status.map { Int64($0.leaderEpoch) })),
      ("leaderSeenLogEndOffset", optionalInteger(leaderView?.logEndOffset)),
      (
        "lastCaughtUpMs",
        optionalInteger(leaderView.flatMap { $0.lastCaughtUpMs < 0 ? nil : $0.lastCaughtUpMs })
      ),
      ("error", state?.errorText.map(JSONValue.string) ?? .null),
    ])
  }

  static func json(_ topic: DescribeTopicResponse, _ reports: [PartitionReport]) -> JSONValue {
    .object([
      ("name", .string(topic.name)), ("topicID", .integer(topic.topicID)),
      (
        "partitions",
        .array(
          reports.map { report in
            let partition = report.assignment
            return .object([
              ("partition", .integer(Int64(partition.partition))),
              ("leader", .integer(Int64(partition.leader))),
              ("leaderEpoch", .integer(Int64(partition.leaderEpoch))),
              ("partitionEpoch", .integer(Int64(partition.partitionEpoch))),
              ("replicas", idArray(partition.replicas)), ("isr", idArray(partition.isr)),
              ("addingReplicas", idArray(partition.addingReplicas)),
              ("removingReplicas", idArray(partition.removingReplicas)),
              ("highWatermark", optionalInteger(report.highWatermark)),
              ("underReplicated", .bool(PartitionHealth.isUnderReplicated(partition))),
              ("offline", .bool(PartitionHealth.isOffline(partition))),
              (
                "replicaStates",
                .array(partition.replicas.map { replicaJSON(report, brokerID: $0) })
              ),
            ])
          })
      ),
      (
        "configs",
        .object(topic.configs.sorted { $0.key < $1.key }.map { ($0.key, .string($0.value)) })
      ),
    ])
  }
}

/// A partition `cluster status` lists by name: offline, under-replicated, or both.
struct PartitionProblem: Equatable, Sendable {
  var topic: String
  var partition: MetaPartition

  var name: String { "\(topic)-\(partition.partition)" }

  /// Every offline or under-replicated partition, by topic name then partition.
  static func find(in topics: [DescribeTopicResponse]) -> [PartitionProblem] {
    topics.sorted { $0.name < $1.name }.flatMap { topic in
      topic.partitions.sorted { $0.partition < $1.partition }.filter {
        PartitionHealth.isOffline($0) || PartitionHealth.isUnderReplicated($0)
      }.map { PartitionProblem(topic: topic.name, partition: $0) }
    }
  }
}
