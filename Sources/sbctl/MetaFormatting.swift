import StreamBusMetaClient
import StreamBusMetaProtocol

// Output of the commands answered by the metadata quorum, as pure functions of the
// responses so tests check the documented shapes without a cluster.

/// "a,b,c", or "-" for an empty list.
func idList(_ ids: [Int32]) -> String {
  ids.isEmpty ? "-" : ids.map(String.init).joined(separator: ",")
}

func idArray(_ ids: [Int32]) -> JSONValue {
  .array(ids.map { .integer(Int64($0)) })
}

/// "host:port", with IPv6 hosts in brackets.
func endpointAddress(_ endpoint: MetaEndpoint) -> String {
  endpoint.host.contains(":")
    ? "[\(endpoint.host)]:\(endpoint.port)" : "\(endpoint.host):\(endpoint.port)"
}

/// `fenced`, `shutting-down` or `active`.
func brokerStatus(_ broker: MetaBroker) -> String {
  if broker.fenced { return "fenced" }
  if broker.inControlledShutdown { return "shutting-down" }
  return "active"
}

enum QuorumOutput {
  static func role(of member: QuorumMember, leaderID: Int32, isVoter: Bool) -> String {
    if !isVoter { return "learner" }
    return member.nodeID == leaderID ? "leader" : "voter"
  }

  static func table(_ status: QuorumStatusResponse) -> [String] {
    var lines = [
      "Leader: \(status.leaderID)  Term: \(status.term)  Commit index: \(status.commitIndex)  "
        + "Applied index: \(status.appliedIndex)"
    ]
    var rows = [
      ["NODE", "ROLE", "RAFT-ADDRESS", "API-ADDRESS", "MATCH-INDEX", "LAG", "LAST-CONTACT-MS"]
    ]
    let members =
      status.voters.map { ($0, true) } + status.learners.map { ($0, false) }
    for (member, isVoter) in members {
      rows.append([
        String(member.nodeID), role(of: member, leaderID: status.leaderID, isVoter: isVoter),
        member.raftAddress, member.apiAddress.isEmpty ? "-" : member.apiAddress,
        String(member.matchIndex), String(member.lag),
        member.lastContactMs < 0 ? "-" : String(member.lastContactMs),
      ])
    }
    lines += renderTable(rows)
    return lines
  }

  static func json(_ status: QuorumStatusResponse) -> JSONValue {
    func member(_ member: QuorumMember, isVoter: Bool) -> JSONValue {
      .object([
        ("nodeID", .integer(Int64(member.nodeID))),
        ("role", .string(role(of: member, leaderID: status.leaderID, isVoter: isVoter))),
        ("raftAddress", .string(member.raftAddress)),
        ("apiAddress", member.apiAddress.isEmpty ? .null : .string(member.apiAddress)),
        ("matchIndex", .integer(member.matchIndex)), ("lag", .integer(member.lag)),
        ("lastContactMs", member.lastContactMs < 0 ? .null : .integer(member.lastContactMs)),
      ])
    }
    return .object([
      ("leaderID", .integer(Int64(status.leaderID))), ("term", .integer(status.term)),
      ("commitIndex", .integer(status.commitIndex)),
      ("appliedIndex", .integer(status.appliedIndex)),
      ("voters", .array(status.voters.map { member($0, isVoter: true) })),
      ("learners", .array(status.learners.map { member($0, isVoter: false) })),
    ])
  }
}

enum BrokerOutput {
  static func sorted(_ brokers: [MetaBroker]) -> [MetaBroker] {
    brokers.sorted { $0.brokerID < $1.brokerID }
  }

  static func endpoints(_ broker: MetaBroker) -> String {
    broker.endpoints.isEmpty
      ? "-" : broker.endpoints.map { "\($0.name)=\(endpointAddress($0))" }.joined(separator: ",")
  }

  static func table(_ brokers: [MetaBroker]) -> [String] {
    var rows = [["ID", "STATUS", "RACK", "EPOCH", "DISK-BYTES", "ENDPOINTS"]]
    for broker in sorted(brokers) {
      rows.append([
        String(broker.brokerID), brokerStatus(broker), broker.rack ?? "-", String(broker.epoch),
        String(broker.capacity.diskBytes), endpoints(broker),
      ])
    }
    return renderTable(rows)
  }

  static func json(_ broker: MetaBroker) -> JSONValue {
    .object([
      ("id", .integer(Int64(broker.brokerID))), ("status", .string(brokerStatus(broker))),
      ("address", ReplicaStatusClient.clientAddress(of: broker).map(JSONValue.string) ?? .null),
      ("fenced", .bool(broker.fenced)),
      ("inControlledShutdown", .bool(broker.inControlledShutdown)),
      ("rack", broker.rack.map(JSONValue.string) ?? .null), ("epoch", .integer(broker.epoch)),
      ("incarnationID", .integer(broker.incarnationID)),
      ("diskBytes", .integer(broker.capacity.diskBytes)),
      (
        "endpoints",
        .array(
          broker.endpoints.map {
            .object([
              ("name", .string($0.name)), ("host", .string($0.host)),
              ("port", .integer(Int64($0.port))),
            ])
          })
      ),
    ])
  }

  static func json(_ brokers: [MetaBroker]) -> JSONValue {
    .array(sorted(brokers).map(json))
  }
}

enum ClusterOutput {
  /// Brokers as `cluster status` shows them: address, rack, fenced, controlled shutdown.
  static func brokerTable(_ brokers: [MetaBroker]) -> [String] {
    func yesNo(_ value: Bool) -> String { value ? "yes" : "no" }
    var rows = [["ID", "ADDRESS", "RACK", "FENCED", "CONTROLLED-SHUTDOWN", "EPOCH"]]
    for broker in BrokerOutput.sorted(brokers) {
      rows.append([
        String(broker.brokerID), ReplicaStatusClient.clientAddress(of: broker) ?? "-",
        broker.rack ?? "-", yesNo(broker.fenced), yesNo(broker.inControlledShutdown),
        String(broker.epoch),
      ])
    }
    return renderTable(rows)
  }

  /// The offline and under-replicated partitions by name, or one line saying there are none.
  static func problemTable(_ problems: [PartitionProblem]) -> [String] {
    guard !problems.isEmpty else {
      return ["No under-replicated or offline partitions"]
    }
    var rows = [["PARTITION", "STATUS", "LEADER", "REPLICAS", "ISR"]]
    for problem in problems {
      rows.append([
        problem.name, PartitionHealth.marker(problem.partition), String(problem.partition.leader),
        idList(problem.partition.replicas), idList(problem.partition.isr),
      ])
    }
    return renderTable(rows)
  }

  static func table(_ cluster: DescribeClusterResponse, problems: [PartitionProblem]) -> [String] {
    let fenced = cluster.brokers.filter(\.fenced).count
    var lines = [
      "Cluster: \(cluster.clusterID)  Metadata leader: \(cluster.leaderID)  "
        + "Metadata offset: \(cluster.metadataOffset)",
      "Brokers: \(cluster.brokers.count) (\(fenced) fenced)  Topics: \(cluster.topicCount)  "
        + "Partitions: \(cluster.partitionCount)  "
        + "Under-replicated: \(cluster.underReplicatedPartitionCount)  "
        + "Offline: \(cluster.offlinePartitionCount)",
    ]
    if !cluster.brokers.isEmpty {
      lines += brokerTable(cluster.brokers)
    }
    lines += problemTable(problems)
    return lines
  }

  static func problemJSON(_ problem: PartitionProblem) -> JSONValue {
    .object([
      ("topic", .string(problem.topic)),
      ("partition", .integer(Int64(problem.partition.partition))),
      ("leader", .integer(Int64(problem.partition.leader))),
      ("leaderEpoch", .integer(Int64(problem.partition.leaderEpoch))),
      ("replicas", idArray(problem.partition.replicas)), ("isr", idArray(problem.partition.isr)),
    ])
  }

  static func json(_ cluster: DescribeClusterResponse, problems: [PartitionProblem]) -> JSONValue {
    .object([
      ("clusterID", .string(cluster.clusterID)), ("leaderID", .integer(Int64(cluster.leaderID))),
      ("metadataOffset", .integer(cluster.metadataOffset)),
      ("brokers", BrokerOutput.json(cluster.brokers)),
      ("fencedBrokers", .integer(Int64(cluster.brokers.filter(\.fenced).count))),
      ("topics", .integer(Int64(cluster.topicCount))),
      ("partitions", .integer(Int64(cluster.partitionCount))),
      ("underReplicatedPartitions", .integer(Int64(cluster.underReplicatedPartitionCount))),
      ("offlinePartitions", .integer(Int64(cluster.offlinePartitionCount))),
      (
        "underReplicated",
        .array(
          problems.filter { PartitionHealth.isUnderReplicated($0.partition) }.map(problemJSON))
      ),
      (
        "offline",
        .array(problems.filter { PartitionHealth.isOffline($0.partition) }.map(problemJSON))
      ),
    ])
  }
}

enum MetaTopicOutput {
  static func listTable(_ topics: [ListTopicsResponse.Topic]) -> [String] {
    var rows = [["NAME", "PARTITIONS", "REPLICATION-FACTOR"]]
    rows += topics.sorted { $0.name < $1.name }.map {
      [$0.name, String($0.partitions), String($0.replicationFactor)]
    }
    return renderTable(rows)
  }

  static func listJSON(_ topics: [ListTopicsResponse.Topic]) -> JSONValue {
    .array(
      topics.sorted { $0.name < $1.name }.map {
        .object([
          ("name", .string($0.name)), ("partitions", .integer(Int64($0.partitions))),
          ("replicationFactor", .integer(Int64($0.replicationFactor))),
          ("topicID", .integer($0.topicID)),
        ])
      })
  }

  static func configsText(_ configs: [String: String]) -> String {
    let entries = configs.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
    return entries.isEmpty ? "-" : entries.joined(separator: ",")
  }
}
